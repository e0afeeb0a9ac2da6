// Pushes the feed to the webhooks: each due delivery POSTed (AsyncHTTPClient) as the event's
// proto3 JSON, as the webhook's owner may read it, signed as Standard Webhooks says; at least
// once, in order per subject (a webhook's next event of a subject waits for the one before),
// retried with capped exponential backoff until a 2xx answer, and a webhook that fails for
// the whole retry window disabled (its owner gets a "webhook.disabled" event). Attempts run
// concurrently, each bounded by the timeout; a slow receiver holds only its own slots.
import Foundation
import GRDB
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NestDomain
import NestProto
import NestServiceKit
public import NestWebhooks
public import ServiceLifecycle

public final class WebhookDispatcher: Service, Sendable {
  public struct Policy: Sendable {
    /// Of each delivery; a webhook failing for its retry window is disabled.
    public var retry: EndpointRetryPolicy
    /// How long events are kept in the feed.
    public var retention: Duration

    public init(retry: EndpointRetryPolicy, retention: Duration) {
      self.retry = retry
      self.retention = retention
    }
  }

  let store: EventsStore
  let logger: Logger
  let clock: NestClock
  let addressGuard: AddressGuard
  let policy: Policy
  /// Attempts at once, and at once per webhook.
  let concurrency = 32
  let perWebhook = 4
  private let poster: SignedPoster
  private let wakeups = Wakeups()
  /// Attempts that ended, waiting to be recorded, and the recorder's wake-ups.
  private let outcomes = NIOLockedValueBox<[(EventsStore.DueDelivery, String?)]>([])
  private let recordings = Wakeups()
  private let inFlight = NIOLockedValueBox<[String: String]>([:])  // delivery id -> webhook id
  private let lastSweep = NIOLockedValueBox<Int64>(0)

  public init(store: EventsStore, logger: Logger, clock: NestClock, addressGuard: AddressGuard, policy: Policy) {
    self.store = store
    self.logger = logger
    self.clock = clock
    self.addressGuard = addressGuard
    self.policy = policy
    // Redirects are not followed: a receiver answers for itself, and a redirect could point
    // anywhere (a private address).
    self.poster = SignedPoster(timeout: policy.retry.timeout, addressGuard: addressGuard, userAgent: "nest-events/0.1")
  }

  /// New deliveries were queued: look now.
  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    let (due, continuation) = AsyncStream<EventsStore.DueDelivery>.makeStream()
    // Graceful shutdown cancels the attempts in flight too: they are not recorded, and are
    // made again at the next start (a receiver recognizes a repeat by webhook-id).
    await cancelWhenGracefulShutdown {
      await withDiscardingTaskGroup { group in
        group.addTask {
          await self.wakeups.run(every: .milliseconds(250)) { await self.findDue(continuation) }
          continuation.finish()
        }
        group.addTask {
          await self.recordings.run(every: .milliseconds(250)) { await self.recordOutcomes() }
        }
        for await delivery in due {
          group.addTask { await self.attempt(delivery) }
        }
      }
    }
    await self.poster.shutdown()
  }

  /// Hands the deliveries due now to `continuation`, within the concurrency limits.
  func findDue(_ continuation: AsyncStream<EventsStore.DueDelivery>.Continuation) async {
    let now = self.clock.nowUnixMs()
    await self.sweep(now: now)
    let flying = self.inFlight.withLockedValue { $0 }
    let room = self.concurrency - flying.count
    guard room > 0 else { return }
    let found: [EventsStore.DueDelivery]
    do {
      found = try await self.store.database.read {
        try EventsStore.due(now: now, limit: room, excluding: Set(flying.keys), in: $0)
      }
    } catch {
      self.logger.error("cannot read the deliveries due", metadata: ["error": "\(error)"])
      return
    }
    var perWebhook: [String: Int] = [:]
    for webhook in flying.values { perWebhook[webhook, default: 0] += 1 }
    for delivery in found {
      let webhook = delivery.webhook.webhook.id
      guard perWebhook[webhook, default: 0] < self.perWebhook else { continue }
      perWebhook[webhook, default: 0] += 1
      self.inFlight.withLockedValue { $0[delivery.delivery.id] = webhook }
      continuation.yield(delivery)
    }
  }

  /// Once a minute: the pending-delivery gauges, and events past the retention forgotten.
  func sweep(now: Int64) async {
    guard
      self.lastSweep.withLockedValue({ last in
        defer { if now - last >= 60_000 { last = now } }
        return now - last >= 60_000
      })
    else { return }
    do {
      let (pending, oldest) = try await self.store.database.read { try EventsStore.pendingDeliveries(in: $0) }
      Gauge(label: "nest_webhook_deliveries_pending").record(pending)
      Gauge(label: "nest_webhook_oldest_pending_age_seconds").record(
        oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0)
      let forgotten = try await self.store.database.write {
        try EventsStore.forget(receivedBefore: now - self.policy.retention.milliseconds, in: $0)
      }
      if forgotten > 0 { self.logger.info("events past retention removed", metadata: ["count": "\(forgotten)"]) }
    } catch {
      self.logger.error("cannot sweep the feed", metadata: ["error": "\(error)"])
    }
  }

  /// One attempt at one delivery; its outcome is recorded with the others that end about
  /// the same time (one commit for them all), and only then is the delivery out of flight.
  func attempt(_ due: EventsStore.DueDelivery) async {
    let failure = await self.post(due)
    guard !Task.isCancelled else { return }
    let dimensions = [("outcome", failure == nil ? "delivered" : "failed")]
    Counter(label: "nest_webhook_delivery_attempts_total", dimensions: dimensions).increment()
    self.outcomes.withLockedValue { $0.append((due, failure)) }
    self.recordings.signal()
  }

  /// Records the outcomes of the attempts that have ended, in one transaction.
  func recordOutcomes() async {
    let outcomes = self.outcomes.withLockedValue { outcomes in
      defer { outcomes = [] }
      return outcomes
    }
    guard !outcomes.isEmpty else { return }
    let now = self.clock.nowUnixMs()
    do {
      try await self.store.database.write { db in
        for (due, failure) in outcomes { try self.record(due, failure: failure, now: now, in: db) }
      }
    } catch {
      // Not recorded: the deliveries are attempted again (at least once).
      self.logger.error("cannot record webhook deliveries", metadata: ["error": "\(error)"])
    }
    self.inFlight.withLockedValue { inFlight in
      for (due, _) in outcomes { inFlight.removeValue(forKey: due.delivery.id) }
    }
    self.wakeups.signal()
  }

  /// One attempt's outcome: DELIVERED, or the next attempt scheduled with backoff (and the
  /// webhook disabled once it has failed for the whole window).
  func record(_ due: EventsStore.DueDelivery, failure: String?, now: Int64, in db: Database) throws {
    guard var delivery = try EventsStore.delivery(due.delivery.id, in: db), delivery.status == .pending,
      var stored = try EventsStore.webhook(due.webhook.webhook.id, in: db)
    else { return }
    delivery.attempts += 1
    delivery.lastAttemptAtUnixMs = now
    if let failure {
      delivery.lastError = failure
      delivery.nextAttemptAtUnixMs = self.policy.retry.nextAttempt(afterFailures: Int(delivery.attempts), now: now)
      if stored.failingSinceUnixMs == 0 { stored.failingSinceUnixMs = now }
      try EventsStore.save(delivery, in: db)
      if stored.webhook.status == .active,
        self.policy.retry.exhausted(failingSince: stored.failingSinceUnixMs, now: now)
      {
        try self.disable(
          &stored, reason: "every attempt failed for \(self.policy.retry.retryWindow); last: \(failure)", now: now,
          in: db)
      }
    } else {
      delivery.status = .delivered
      delivery.lastError = ""
      delivery.deliveredAtUnixMs = now
      delivery.nextAttemptAtUnixMs = 0
      stored.failingSinceUnixMs = 0
      try EventsStore.save(delivery, in: db)
    }
    try EventsStore.save(stored, in: db)
  }

  /// The webhook DISABLED, its pending deliveries FAILED, and its owner told.
  func disable(_ stored: inout EventsStore.StoredWebhook, reason: String, now: Int64, in db: Database) throws {
    stored.webhook.status = .disabled
    stored.webhook.disabledReason = reason
    stored.webhook.updatedAtUnixMs = now
    try EventsStore.save(stored, in: db)
    try EventsStore.failPending(webhookID: stored.webhook.id, in: db)
    let webhook = stored.webhook
    var event = try EventLog.numbered(
      EventDraft(
        "webhook.disabled", subject: "webhook/\(webhook.id)", parties: [webhook.owner ?? .init()],
        payload: .webhook(
          .with {
            $0.webhookID = webhook.id
            $0.url = webhook.url
            $0.reason = reason
          }), at: now), in: db)
    event.source = "events"
    try EventsStore.insert(event, now: now, in: db)
    self.logger.warning("webhook disabled", metadata: ["webhook": "\(webhook.id)", "reason": "\(reason)"])
  }

  /// POSTs the delivery; nil when the receiver answered 2xx, else what went wrong.
  func post(_ due: EventsStore.DueDelivery) async -> String? {
    let webhook = due.webhook.webhook
    let body: [UInt8]
    do {
      body = try due.event.redacted(forRole: (webhook.owner ?? .init()).role.rawValue).jsonUTF8()
    } catch {
      return "cannot encode the event: \(error)"
    }
    let outcome = await self.poster.post(
      url: webhook.url, id: due.event.id, secrets: due.webhook.secrets(now: self.clock.nowUnixMs()), body: body)
    if case .failure(let failure) = outcome { return failure.reason }
    return nil
  }
}
