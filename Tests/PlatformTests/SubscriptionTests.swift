// Subscriptions on the platform in-process, with a clock the test moves: auto-renew, a
// prorated upgrade, a downgrade at the next renewal, a renewal refused after a revocation,
// expiry and release; trials and their conversion; deprecated plans; every balance against
// the arithmetic of the money rules.
import Foundation
import GRPCCore
import NestDomain
import NestTestKit
import Testing

let day = TestClock.dayMs
/// 2027-01-15, a fixed start so that every figure below is the same on every run.
let start: Int64 = 1_800_000_000_000

/// Entitlement's term driver looks every 20 ms; renewals 3 days ahead; 7 days' grace.
let termSettings: [NestServiceName: [String: String]] = [
  .entitlement: ["term.interval.ms": "20", "renewal.lead.ms": "\(3 * day)", "expiry.grace.ms": "\(7 * day)"]
]

func commission(_ amount: Int64) -> Int64 { MoneyMath.commission(amount, bps: 500) }

@Suite("Subscriptions", .serialized, .timeLimit(.minutes(3)))
struct SubscriptionTests {
  @Test("scenario 3 over three terms: auto-renewals, a prorated upgrade, a downgrade, a revocation, expiry, release")
  func scenario3() async throws {
    let platform = try await NestTestPlatform.start(settings: termSettings, clockStartingAt: start)
    let clock = try #require(platform.clock)
    let market = platform.marketplace
    let prices = market.prices
    let parties = ScenarioParties(.scenario3, run: "sub")
    let setup = try await market.setUp(.scenario3, parties: parties)
    let bought = try await market.buy(parties.customer, product: setup.productID, autoRenew: true)
    _ = try await market.waitForOrder(bought.id)
    let instance = try await market.instance(of: bought)
    #expect(instance.subscription?.status == .active)
    #expect(instance.subscription?.autoRenew == true)
    #expect(instance.expiresAtUnixMs == start + 30 * day)
    // The customer sees its plan and price, never the wholesale price under it.
    #expect(instance.subscription?.plan?.unitPrice?.amountMinor == prices.bPrice)
    #expect(instance.subscription?.plan?.wholesaleUnitPrice == nil)

    func current() async throws -> Nest_Entitlement_V1_ServiceInstance { try await market.instance(instance.id) }

    // Three days before the term ends, auto-renew places and pays the renewal; the term is
    // extended from its end, once.
    try clock.set(start + 27 * day)
    #expect(try await eventually { try await current().expiresAtUnixMs == start + 60 * day })
    var now = try await current()
    #expect(now.subscription?.status == .active)
    #expect(now.subscription?.termStartedAtUnixMs == start + 30 * day)

    // An upgrade 10 days into the 30-day term: the difference for the 20 days left. While it
    // is open, another change (or a renewal) of the instance is refused.
    try clock.set(start + 40 * day)
    let created = try await platform.orders(as: .customer, parties.customer) {
      try await $0.createChangeOrder(
        .with {
          $0.instanceID = instance.id
          $0.planID = "pro"
        }
      ).order ?? .init()
    }
    let second = await #expect(throws: RPCError.self) {
      _ = try await market.change(parties.customer, instance: instance.id, quantity: 3)
    }
    #expect(second?.code == .failedPrecondition)
    let upgrade = try await market.pay(created)
    let proPrice = prices.bPrice * prices.proFactor
    let delta = (proPrice - prices.bPrice) * 20 / 30
    #expect(upgrade.kind == .change)
    #expect(upgrade.price?.amount?.amountMinor == delta)
    #expect(upgrade.change?.immediate == true)
    _ = try await market.waitForOrder(upgrade.id)
    now = try await current()
    #expect(now.subscription?.plan?.planID == "pro")
    #expect(now.expiresAtUnixMs == start + 60 * day)

    // The downgrade costs nothing and waits for the next renewal.
    try clock.set(start + 50 * day)
    let downgrade = try await market.change(parties.customer, instance: instance.id, plan: "monthly")
    #expect(downgrade.status == .paid)
    #expect(downgrade.price?.amount?.amountMinor == 0)
    _ = try await market.waitForOrder(downgrade.id)
    now = try await current()
    #expect(now.subscription?.plan?.planID == "pro")
    #expect(now.subscription?.pendingChange?.plan?.planID == "monthly")

    // The next renewal is on the monthly plan at its price.
    try clock.set(start + 57 * day)
    #expect(try await eventually { try await current().expiresAtUnixMs == start + 90 * day })
    now = try await current()
    #expect(now.subscription?.plan?.planID == "monthly")
    #expect(now.subscription?.pendingChange == nil)

    // The ISV revokes the distributor: the next auto-renewal is refused, with the reason.
    try await platform.entitlement(as: .isv, parties.isv) {
      _ = try await $0.revokeDistribution(
        .with {
          $0.authorizationID = setup.authorization?.id ?? ""
          $0.reason = "contract ended"
        })
    }
    try clock.set(start + 87 * day)
    #expect(try await eventually { try await current().subscription?.status == .renewFailed })
    now = try await current()
    #expect(now.subscription?.statusReason.contains("authorization") == true, "\(now.subscription?.statusReason ?? "")")
    // A renewal by hand is refused for the same reason.
    let refused = await #expect(throws: RPCError.self) {
      _ = try await market.renew(parties.customer, instance: instance.id)
    }
    #expect(refused?.code == .failedPrecondition)

    // At the end of the term it stops serving; after the grace period it is released.
    try clock.set(start + 90 * day)
    #expect(try await eventually { try await current().status == .expired })
    #expect(try await current().subscription?.status == .expired)
    try clock.set(start + 97 * day)
    #expect(try await eventually { try await current().status == .released })
    #expect(try await current().subscription?.status == .ended)

    // Three paid terms of B on the monthly plan, each with its linked order for A, and the
    // upgrade (no wholesale difference: the same wholesale price per month and unit).
    let wholesale = prices.wholesale
    let customer = -(3 * prices.bPrice + delta)
    let distributor = 3 * (prices.bPrice - commission(prices.bPrice) - wholesale) + (delta - commission(delta))
    let isv = 3 * (wholesale - commission(wholesale))
    #expect(try await market.balance(.customer, parties.customer) == customer)
    #expect(try await market.balance(.distributor, parties.distributor) == distributor)
    #expect(try await market.balance(.isv, parties.isv) == isv)

    let orders = try await platform.orders(as: .distributor, parties.distributor) {
      try await $0.listOrders(.init()).orders
    }
    let renewals = orders.filter { $0.kind == .renewal }
    #expect(renewals.count == 2)
    #expect(renewals.allSatisfy { $0.paymentReference == "auto-renew:\(instance.id)" && $0.status == .fulfilled })
    #expect(orders.filter { $0.kind == .linked }.count == 3)
    let reconcile = try await market.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    await platform.stop()
  }

  @Test("a trial: free, once per customer and product, converted by auto-renew at its end; without it, it expires")
  func trial() async throws {
    let platform = try await NestTestPlatform.start(settings: termSettings, clockStartingAt: start)
    let clock = try #require(platform.clock)
    let market = platform.marketplace
    let prices = market.prices
    let parties = ScenarioParties(.direct, run: "trial")
    let setup = try await market.setUp(.direct, parties: parties)

    let trial = try await market.buy(parties.customer, product: setup.productID, trial: true, autoRenew: true)
    #expect(trial.status == .paid)
    #expect(trial.trial)
    #expect(trial.price?.amount?.amountMinor == 0)
    _ = try await market.waitForOrder(trial.id)
    let instance = try await market.instance(of: trial)
    #expect(instance.subscription?.status == .trial)
    #expect(instance.expiresAtUnixMs == start + Int64(prices.trialDays) * day)

    let again = await #expect(throws: RPCError.self) {
      _ = try await market.buy(parties.customer, product: setup.productID, trial: true)
    }
    #expect(again?.code == .failedPrecondition)

    // Another customer's trial without auto-renew ends at its end.
    let other = try await market.buy("cust-trial-only", product: setup.productID, trial: true)
    _ = try await market.waitForOrder(other.id)
    let otherInstance = try await market.instance(of: other)

    // Three days before the trial ends it converts: a paid term from the trial's end.
    try clock.set(start + Int64(prices.trialDays) * day - 3 * day)
    let trialEnd = start + Int64(prices.trialDays) * day
    #expect(try await eventually { try await market.instance(instance.id).expiresAtUnixMs == trialEnd + 30 * day })
    let converted = try await market.instance(instance.id)
    #expect(converted.subscription?.status == .active)
    #expect(converted.subscription?.trial == false)

    try clock.set(trialEnd)
    #expect(try await eventually { try await market.instance(otherInstance.id).status == .expired })
    #expect(try await market.instance(otherInstance.id).subscription?.status == .expired)

    // The ISV lists A again with "pro" only: "monthly" stays, deprecated. No new sale of it,
    // but the converted instance renews on it at its price.
    try await platform.catalog(as: .isv, parties.isv) {
      _ = try await $0.listOnMarketplace(
        .with {
          $0.serviceID = setup.a.id
          $0.plans = [prices.plans(prices.aPrice)[1]]
        })
    }
    let deprecated = await #expect(throws: RPCError.self) {
      _ = try await market.buy("cust-late", product: setup.productID)
    }
    #expect(deprecated?.code == .failedPrecondition)
    let renewal = try await market.renew(parties.customer, instance: instance.id)
    #expect(renewal.price?.amount?.amountMinor == prices.aPrice)
    _ = try await market.waitForOrder(renewal.id)
    #expect(try await market.instance(instance.id).expiresAtUnixMs == trialEnd + 60 * day)

    // Two paid terms of A, nothing for the trials.
    #expect(try await market.balance(.customer, parties.customer) == -2 * prices.aPrice)
    #expect(try await market.balance(.customer, "cust-trial-only") == 0)
    #expect(try await market.balance(.isv, parties.isv) == 2 * (prices.aPrice - commission(prices.aPrice)))
    let reconcile = try await market.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    await platform.stop()
  }

  @Test("a trial holds one of the authorization's places like any instance")
  func trialTakesAPlace() async throws {
    let platform = try await NestTestPlatform.start(clockStartingAt: start)
    let market = platform.marketplace
    let parties = ScenarioParties(.scenario2, run: "place")
    let setup = try await market.setUp(.scenario2, parties: parties, maxInstances: 1)
    let trial = try await market.buy(parties.customer, product: setup.productID, trial: true)
    _ = try await market.waitForOrder(trial.id)
    let full = await #expect(throws: RPCError.self) {
      _ = try await market.buy("cust-second", product: setup.productID)
    }
    #expect(full?.code == .failedPrecondition)
    await platform.stop()
  }

  @Test(
    "scenarios 1, 2 and 4: a renewal owes the distributor's wholesale offline again; an upgrade owes its difference")
  func offlineRenewalsAndChanges() async throws {
    let platform = try await NestTestPlatform.start(clockStartingAt: start)
    let clock = try #require(platform.clock)
    let market = platform.marketplace
    let prices = market.prices
    for kind in [ScenarioKind.scenario1, .scenario2, .scenario4] {
      let parties = ScenarioParties(kind, run: "offline")
      let setup = try await market.setUp(kind, parties: parties)
      let bought = try await market.buy(parties.customer, product: setup.productID)
      _ = try await market.waitForOrder(bought.id)
      let instance = try await market.instance(of: bought)
      let renewal = try await market.renew(parties.customer, instance: instance.id)
      _ = try await market.waitForOrder(renewal.id)
      // Two units from now on, 15 days before the (second) term ends.
      let termEnd = try await market.instance(instance.id).expiresAtUnixMs
      try clock.set(termEnd - 15 * day)
      let upgrade = try await market.change(parties.customer, instance: instance.id, quantity: 2)
      _ = try await market.waitForOrder(upgrade.id)
      // One more unit for the 15 days left of a 30-day term.
      let delta = prices.bPrice * 15 / 30
      #expect(upgrade.price?.amount?.amountMinor == delta, "\(kind)")
      let wholesaleDelta = prices.wholesale * 15 / 30
      let obligations = try await platform.settlement(as: .isv, parties.isv) {
        try await $0.listObligations(.with { $0.distributorID = parties.distributor }).obligations
      }
      #expect(
        obligations.map { $0.amount?.amountMinor ?? 0 }.sorted()
          == [wholesaleDelta, prices.wholesale, prices.wholesale].sorted(), "\(kind)")
      #expect(try await market.instance(instance.id).quantity == 2)
    }
    let reconcile = try await market.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    await platform.stop()
  }
}
