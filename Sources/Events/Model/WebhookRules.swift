// The events service's rules: the event types there are, who may read an event, what a
// webhook URL may be, how a failed delivery waits, when a webhook is given up on, and how a
// delivery is signed (Standard Webhooks: HMAC-SHA256 over "id.timestamp.body"). Pure.
import Crypto
import Foundation
public import NestDomain
public import NestProto

public typealias Event = Nest_Events_V1_Event
public typealias Webhook = Nest_Events_V1_Webhook
public typealias WebhookDelivery = Nest_Events_V1_WebhookDelivery

public enum EventTypes {
  /// Every event type the services record (Event.type in nest/events/v1/events.proto).
  public static let all: Set<String> = [
    "service.published", "service.offline",
    "authorization.applied", "authorization.approved", "authorization.rejected", "authorization.granted",
    "authorization.revoked", "authorization.expiring", "authorization.expired",
    "order.paid", "order.fulfilled", "order.renewed", "order.changed", "order.refunded", "order.cancelled",
    "instance.deployed", "instance.deploy_failed", "instance.suspended", "instance.resumed", "instance.expired",
    "instance.released", "instance.renewed", "instance.changed", "instance.upgraded", "instance.renew_failed",
    "instance.expiring",
    "permission_request.requested", "permission_request.decided",
    "obligation.recorded", "obligation.settled", "obligation.disputed", "obligation.cancelled",
    "statement.issued", "statement.settled", "statement.disputed",
    "webhook.disabled",
  ]

  /// The violations of a list of types (`field`), each unknown one named.
  public static func check(_ types: [String], field: String) throws(DomainError) {
    let unknown = types.filter { !Self.all.contains($0) }
    guard unknown.isEmpty else {
      throw .invalid(
        unknown.map {
          .init(field: field, description: "\"\($0)\" is not an event type (see nest.events.v1.Event.type)")
        })
    }
  }
}

public enum EventVisibility {
  /// Whether the caller (`role`, `accountID`) may read an event of `parties`: the operator
  /// reads every event; a party, the events that name it.
  public static func mayRead(
    role: Nest_Common_V1_Role, accountID: String, parties: [Nest_Common_V1_Party]
  ) -> Bool {
    role == .operator || parties.contains { $0.role == role && $0.accountID == accountID }
  }
}

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
