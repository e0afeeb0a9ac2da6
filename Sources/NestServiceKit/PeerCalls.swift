// Calls between services, set in one place: every peer call has the same timeout and, for
// UNAVAILABLE (the peer is not reachable, or said GOAWAY before processing the call), the
// same short retry policy, which GRPCCore applies: one more attempt shortly after, enough for
// a connection replaced under a call; longer outages are the callers' to wait out (the
// outbox retries with its own backoff; a customer's call fails UNAVAILABLE, safe to retry). Every receiving RPC is idempotent (on a
// client token, an order id or a record id), so a retried call never does anything twice.
// Each call carries a token of the calling service's own identity, short-lived and signed
// again before it expires.
public import GRPCCore
import NIOConcurrencyHelpers
public import NestAuth
import NestProto

public enum PeerCallPolicy {
  /// The service config of every peer client.
  public static func serviceConfig(timeout: Duration) -> ServiceConfig {
    ServiceConfig(methodConfig: [
      MethodConfig(
        names: [MethodConfig.Name(service: "")], timeout: timeout,
        executionPolicy: .retry(
          RetryPolicy(
            maxAttempts: 2, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200), backoffMultiplier: 2,
            retryableStatusCodes: [.unavailable])))
    ])
  }
}

/// A service's own token for its calls to other services: role `service`, subject its
/// identity, valid for `lifetime` and signed anew once less than `renewBefore` is left.
public final class ServiceTokens: Sendable {
  private let tokens: NestTokens
  private let subject: String
  private let lifetime: Duration
  private let renewBefore: Duration
  private let current = NIOLockedValueBox<(token: String, renewAt: ContinuousClock.Instant)?>(nil)

  public init(
    tokens: NestTokens, subject: String, lifetime: Duration = .seconds(300), renewBefore: Duration = .seconds(60)
  ) {
    precondition(renewBefore < lifetime)
    self.tokens = tokens
    self.subject = subject
    self.lifetime = lifetime
    self.renewBefore = renewBefore
  }

  /// A token with more than `renewBefore` left.
  public func token() async throws -> String {
    let now = ContinuousClock.now
    if let (token, renewAt) = self.current.withLockedValue({ $0 }), now < renewAt { return token }
    let token = try await self.tokens.sign(subject: self.subject, role: .service, lifetime: self.lifetime)
    self.current.withLockedValue { $0 = (token, now + self.lifetime - self.renewBefore) }
    return token
  }
}
