// One signed call to a partner's endpoint, as webhooks and fulfilment make it: the host
// checked against the operator's address guard (and resolved) first, an HTTP POST of JSON
// through AsyncHTTPClient signed as Standard Webhooks says, no redirect followed, the whole
// attempt bounded by a timeout, and only a bounded part of the answer read (an endless body
// is not).
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NestDomain

/// Why a call did not succeed, as its owner is shown it.
public struct CallFailure: Error, Sendable, Equatable, CustomStringConvertible {
  public let reason: String
  public init(_ reason: String) { self.reason = reason }
  public var description: String { self.reason }
}

public final class SignedPoster: Sendable {
  let timeout: Duration
  let addressGuard: AddressGuard
  let userAgent: String
  private let http: HTTPClient

  /// A connection that cannot be made fails the attempt at once: callers retry with their
  /// own backoff, rather than the client's pool retrying until the deadline.
  public init(timeout: Duration, addressGuard: AddressGuard, userAgent: String) {
    self.timeout = timeout
    self.addressGuard = addressGuard
    self.userAgent = userAgent
    var configuration = HTTPClient.Configuration(
      redirectConfiguration: .disallow,
      timeout: .init(connect: .milliseconds(timeout.milliseconds), read: .milliseconds(timeout.milliseconds)))
    configuration.connectionPool.retryConnectionEstablishment = false
    self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
  }

  public func shutdown() async {
    try? await self.http.shutdown()
  }

  /// POSTs `body` to `url` with `webhook-id` `id`, signed with each of `secrets`. A 2xx
  /// answer's body (at most `answerLimit` bytes: a longer one is a failure), else why not.
  public func post(url text: String, id: String, secrets: [String], body: [UInt8], answerLimit: Int = 0) async
    -> Result<[UInt8], CallFailure>
  {
    guard let url = URLComponents(string: text) else { return .failure(CallFailure("the URL does not parse")) }
    // Resolved here first: a host without an address fails the attempt at once.
    do {
      try await self.addressGuard.check(url, field: "url", resolvable: true)
    } catch {
      return .failure(CallFailure(error.violations.first?.description ?? error.message))
    }
    // webhook-timestamp is the wall clock's: receivers check it against theirs.
    let timestamp = Int64(Date().timeIntervalSince1970)
    var request = HTTPClientRequest(url: text)
    request.method = .POST
    request.headers.add(name: "content-type", value: "application/json")
    request.headers.add(name: "user-agent", value: self.userAgent)
    request.headers.add(name: "webhook-id", value: id)
    request.headers.add(name: "webhook-timestamp", value: "\(timestamp)")
    request.headers.add(
      name: "webhook-signature",
      value: WebhookRules.signatureHeader(secrets: secrets, id: id, timestamp: timestamp, body: body))
    request.body = .bytes(ByteBuffer(bytes: body))
    let timeout = self.timeout.milliseconds
    do {
      let response = try await self.http.execute(request, timeout: .milliseconds(timeout))
      let success = (200..<300).contains(response.status.code)
      // An error's first bytes are kept for the reason; a success's up to the limit. A short
      // answer is read to its end, so that the connection can be used again; a long one is
      // not (an endless one would never end).
      let keep = max(success ? answerLimit : 0, 256)
      var answer: [UInt8] = []
      var tooLong = false
      for try await chunk in response.body {
        answer.append(contentsOf: chunk.readableBytesView.prefix(keep + 1 - answer.count))
        if answer.count > keep {
          tooLong = true
          break
        }
      }
      guard success else {
        let redirect = (300..<400).contains(response.status.code) ? " (redirects are not followed)" : ""
        let detail = String(decoding: answer.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .failure(CallFailure("HTTP \(response.status.code)\(redirect)" + (detail.isEmpty ? "" : ": \(detail)")))
      }
      guard answerLimit > 0 else { return .success([]) }
      if tooLong || answer.count > answerLimit {
        return .failure(CallFailure("the answer is longer than \(answerLimit) bytes"))
      }
      return .success(answer)
    } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
      return .failure(CallFailure("timed out after \(timeout) ms"))
    } catch {
      return .failure(CallFailure("\(error)"))
    }
  }
}
