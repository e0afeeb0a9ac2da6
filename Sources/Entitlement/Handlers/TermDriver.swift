// Terms that time moves: a configured lead time before an instance's term ends, auto-renew has
// marketplace-order place and pay the renewal order (PlaceRenewal); at the end an instance not
// renewed stops serving (EXPIRED, its license invalid); a grace period later it is released.
// Every step is a state change made in one transaction from the state it starts from, so a
// step that ran (before a restart, or in a round that overlapped) is never made twice; the
// renewal order is keyed by instance and term end, so it is placed once per term.
import GRDB
import GRPCCore
import Logging
import NestDomain
public import NestProto
import NestServiceKit
public import ServiceLifecycle

/// Places the auto-renewal of an instance's term (marketplace-order's PlaceRenewal).
public protocol RenewalPlacer: Sendable {
  func placeRenewal(instanceID: String, termEndsAtUnixMs: Int64) async throws
}

/// PlaceRenewal over RPC, as the entitlement service.
public struct RPCRenewalPlacer: RenewalPlacer {
  let orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol

  public init(orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol) {
    self.orders = orders
  }

  public func placeRenewal(instanceID: String, termEndsAtUnixMs: Int64) async throws {
    _ = try await self.orders.placeRenewal(
      .with {
        $0.clientToken = "auto-renew:\(instanceID):\(termEndsAtUnixMs)"
        $0.instanceID = instanceID
        $0.termEndsAtUnixMs = termEndsAtUnixMs
      })
  }
}

public final class TermDriver: Service, Sendable {
  public struct Timing: Sendable {
    /// How long before a term ends auto-renew places the renewal.
    public var lead: Int64
    /// How long after a term ends an instance not renewed is released.
    public var grace: Int64
    /// How often the driver looks.
    public var interval: Duration
    /// How long before an instance's term or an authorization ends its parties are told
    /// (`instance.expiring`, `authorization.expiring`), once per end.
    public var notice: Int64

    public init(
      lead: Int64 = 3 * 24 * 3600 * 1000, grace: Int64 = 7 * 24 * 3600 * 1000, interval: Duration = .seconds(60),
      notice: Int64 = 30 * 24 * 3600 * 1000
    ) {
      self.lead = lead
      self.grace = grace
      self.interval = interval
      self.notice = notice
    }
  }

  let store: EntitlementStore
  let placer: any RenewalPlacer
  let logger: Logger
  let clock: NestClock
  let timing: Timing
  private let wakeups = Wakeups()

  public init(store: EntitlementStore, placer: any RenewalPlacer, timing: Timing, logger: Logger, clock: NestClock) {
    self.store = store
    self.placer = placer
    self.timing = timing
    self.logger = logger
    self.clock = clock
  }

  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    await self.wakeups.run(every: self.timing.interval) { await self.round() }
  }

  /// One look at every term that needs a step now.
  public func round() async {
    do {
      var seen: Set<String> = []
      while !Task.isCancelled {
        let now = self.clock.nowUnixMs()
        let instances = try await self.store.database.read {
          try EntitlementStore.instancesWithTermEndingBy(
            now + self.timing.lead, releasingBy: now - self.timing.grace, limit: 200, in: $0)
        }
        let due = instances.filter { !seen.contains($0.id) }.compactMap { instance in
          SubscriptionRules.due(instance, now: now, lead: self.timing.lead, grace: self.timing.grace).map {
            (instance, $0)
          }
        }
        seen.formUnion(instances.map(\.id))
        for (instance, step) in due { try await self.take(step, on: instance) }
        if instances.count < 200 { break }  // one more page only when the page was full
      }
      try await self.announceExpiries()
    } catch is CancellationError {
      // Shutting down: the next start looks again.
    } catch {
      self.logger.error("term round failed", metadata: ["error": "\(error)"])
    }
  }

  /// Tells the parties of each term and authorization ending within the notice period, once
  /// per end (a renewal's new end is told again when it comes near).
  func announceExpiries() async throws {
    let now = self.clock.nowUnixMs()
    let horizon = now + self.timing.notice
    try await self.store.database.write { db in
      for instance in try EntitlementStore.instancesExpiring(after: now, by: horizon, limit: 500, in: db)
      where try EntitlementStore.announce(expiryOf: "instance/\(instance.id)", at: instance.expiresAtUnixMs, in: db) {
        try EventLog.record([EntitlementEvents.expiring(instance, now: now)], in: db)
      }
      for authorization in try EntitlementStore.authorizationsExpiring(after: now, by: horizon, limit: 500, in: db)
      where try EntitlementStore.announce(
        expiryOf: "authorization/\(authorization.id)", at: authorization.terms?.validUntilUnixMs ?? 0, in: db)
      {
        try EventLog.record([EntitlementEvents.expiring(authorization, now: now)], in: db)
      }
    }
  }

  private func take(_ step: SubscriptionRules.Due, on instance: Nest_Entitlement_V1_ServiceInstance) async throws {
    switch step {
    case .expire:
      try await self.change(instance.id) { instance, now in
        guard SubscriptionRules.due(instance, now: now, lead: self.timing.lead, grace: self.timing.grace) == .expire
        else { return false }
        InstanceRules.record(&instance, .expired, actor: "entitlement", reason: "term ended", now: now)
        if var subscription = instance.subscription, SubscriptionRules.allows(subscription.status, .expire) {
          try SubscriptionRules.apply(.expire, to: &subscription, reason: "term ended")
          instance.subscription = subscription
        }
        return true
      }
    case .release:
      try await self.change(instance.id) { instance, now in
        guard SubscriptionRules.due(instance, now: now, lead: self.timing.lead, grace: self.timing.grace) == .release
        else { return false }
        InstanceRules.record(&instance, .released, actor: "entitlement", reason: "grace period ended", now: now)
        if var subscription = instance.subscription {
          try SubscriptionRules.apply(.release, to: &subscription)
          instance.subscription = subscription
        }
        return true
      }
    case .placeRenewal:
      // RENEWING once the order is placed (not before: a failed attempt leaves the status
      // as it was, or RENEW_FAILED with the latest reason); placing it again for the same
      // term end is the same order.
      let termEnd = instance.expiresAtUnixMs
      do {
        try await self.placer.placeRenewal(instanceID: instance.id, termEndsAtUnixMs: termEnd)
      } catch let error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
        // marketplace-order is away: the next round asks again.
        self.logger.notice("auto-renew deferred", metadata: ["instance": "\(instance.id)", "error": "\(error)"])
        return
      } catch let error as RPCError {
        let reason = error.message
        try await self.change(instance.id) { instance, now in
          guard instance.expiresAtUnixMs == termEnd, var subscription = instance.subscription,
            subscription.status != .renewFailed || subscription.statusReason != reason,
            SubscriptionRules.allows(subscription.status, .renewalFailed)
          else { return false }
          try SubscriptionRules.apply(.renewalFailed, to: &subscription, reason: reason)
          instance.subscription = subscription
          instance.updatedAtUnixMs = now
          return true
        }
        return
      }
      try await self.change(instance.id) { instance, now in
        // Not if the renewal was applied already (the term moved on).
        guard instance.expiresAtUnixMs == termEnd, var subscription = instance.subscription,
          subscription.status != .renewing, SubscriptionRules.allows(subscription.status, .renewalPlaced)
        else { return false }
        try SubscriptionRules.apply(.renewalPlaced, to: &subscription)
        instance.subscription = subscription
        instance.updatedAtUnixMs = now
        return true
      }
    }
  }

  /// Changes one instance in one transaction, if `step` says it did; whether it did.
  @discardableResult
  private func change(
    _ id: String, _ step: @escaping @Sendable (inout Nest_Entitlement_V1_ServiceInstance, Int64) throws -> Bool
  ) async throws -> Bool {
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      guard var instance = try EntitlementStore.instance(id, in: db), try step(&instance, now) else { return false }
      try EntitlementStore.update(instance, in: db)
      return true
    }
  }
}
