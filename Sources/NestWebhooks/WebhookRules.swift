// What a partner's endpoint (a webhook, a fulfilment endpoint) may be, how a failed call
// waits, when an endpoint is given up on, and how a call is signed (Standard Webhooks:
// HMAC-SHA256 over "id.timestamp.body"). Pure.
import Crypto
public import Foundation
public import NestDomain

public enum WebhookRules {
  public static let maxURLLength = 2048

  /// The URL as a webhook may have it: http or https, a host, no credentials. The address
  /// check (private ranges) is the dispatcher's, which resolves the host.
  public static func check(url text: String) throws(DomainError) -> URLComponents {
    func refuse(_ why: String) -> DomainError { .invalid([.init(field: "url", description: why)]) }
    guard !text.isEmpty else { throw refuse("is required") }
    guard text.utf8.count <= Self.maxURLLength else { throw refuse("is longer than \(Self.maxURLLength) bytes") }
    guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else {
      throw refuse("is not a URL")
    }
    guard scheme == "http" || scheme == "https" else { throw refuse("must be http:// or https://, not \(scheme)://") }
    guard let host = url.host, !host.isEmpty else { throw refuse("has no host") }
    guard url.user == nil && url.password == nil else { throw refuse("must not carry credentials") }
    return url
  }

  /// How long a delivery waits after its `attempts`-th failure: doubling from `initial`,
  /// capped at `maximum`.
  public static func backoff(attempts: Int, initial: Duration, maximum: Duration) -> Int64 {
    let initialMs = initial.milliseconds
    let shift = min(max(attempts - 1, 0), 30)
    return min(initialMs << shift, maximum.milliseconds)
  }

  /// Whether a webhook failing since `failingSince` has failed for the whole window.
  public static func exhausted(failingSince: Int64, now: Int64, window: Duration) -> Bool {
    failingSince > 0 && now - failingSince >= window.milliseconds
  }

  /// A new signing secret: "whsec_" and base64 of 32 random bytes.
  public static func newSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    return "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
  }

  /// The Standard Webhooks signature of one delivery under one secret: "v1," and base64 of
  /// HMAC-SHA256(key, "<id>.<timestamp>.<body>"), the key being the secret's base64 part.
  public static func signature(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String {
    let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst("whsec_".count)) : secret
    let key = SymmetricKey(data: Data(base64Encoded: encoded) ?? Data(encoded.utf8))
    var message = Data("\(id).\(timestamp).".utf8)
    message.append(contentsOf: body)
    let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
    return "v1," + Data(mac).base64EncodedString()
  }

  /// The `webhook-signature` header: one signature per secret in force, space-separated.
  public static func signatureHeader(secrets: [String], id: String, timestamp: Int64, body: [UInt8]) -> String {
    secrets.map { Self.signature(secret: $0, id: id, timestamp: timestamp, body: body) }.joined(separator: " ")
  }
}

extension Duration {
  /// Whole milliseconds.
  public var milliseconds: Int64 {
    let (seconds, attoseconds) = self.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
  }
}
