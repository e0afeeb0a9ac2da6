// How calls to a partner's endpoint are made again, and what the operator may forbid, as
// both webhooks (events service) and fulfilment calls (entitlement) read them from their
// settings.
public import NestServiceKit

/// Each attempt bounded by `timeout`; a failed one waits from `initialBackoff`, doubling, to
/// at most `maximumBackoff`; a call (or an endpoint) failing for `retryWindow` is given up.
public struct EndpointRetryPolicy: Sendable {
  public var timeout: Duration
  public var initialBackoff: Duration
  public var maximumBackoff: Duration
  public var retryWindow: Duration

  public init(timeout: Duration, initialBackoff: Duration, maximumBackoff: Duration, retryWindow: Duration) {
    self.timeout = timeout
    self.initialBackoff = initialBackoff
    self.maximumBackoff = maximumBackoff
    self.retryWindow = retryWindow
  }

  /// When the next attempt is due after the `attempts`-th failure at `now`.
  public func nextAttempt(afterFailures attempts: Int, now: Int64) -> Int64 {
    now + WebhookRules.backoff(attempts: attempts, initial: self.initialBackoff, maximum: self.maximumBackoff)
  }

  /// Whether something failing since `failingSince` has failed for the whole window.
  public func exhausted(failingSince: Int64, now: Int64) -> Bool {
    WebhookRules.exhausted(failingSince: failingSince, now: now, window: self.retryWindow)
  }

  /// From the settings `<prefix>.timeout.ms` (10 s), `<prefix>.backoff.initial.ms` (1 s),
  /// `<prefix>.backoff.max.ms` (1 hour) and `<prefix>.retry.window.ms` (24 hours).
  public static func read(_ prefix: String, from settings: SettingsReader) async throws(ConfigurationError)
    -> EndpointRetryPolicy
  {
    EndpointRetryPolicy(
      timeout: .milliseconds(try await settings.int("\(prefix).timeout.ms", default: 10_000, in: 100...120_000)),
      initialBackoff: .milliseconds(
        try await settings.int("\(prefix).backoff.initial.ms", default: 1_000, in: 1...3_600_000)),
      maximumBackoff: .milliseconds(
        try await settings.int("\(prefix).backoff.max.ms", default: 3_600_000, in: 1...86_400_000)),
      retryWindow: .milliseconds(
        try await settings.int("\(prefix).retry.window.ms", default: 86_400_000, in: 1...(30 * 86_400_000))))
  }
}

extension AddressGuard {
  /// The setting `<prefix>.private.addresses`: deny (the default) or allow endpoints on
  /// loopback, private and link-local addresses.
  public static func read(_ prefix: String, from settings: SettingsReader) async throws(ConfigurationError)
    -> AddressGuard
  {
    AddressGuard(
      allowPrivate: try await settings.choice(
        "\(prefix).private.addresses", default: "deny", among: ["deny", "allow"]) == "allow")
  }
}
