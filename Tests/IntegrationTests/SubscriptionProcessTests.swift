// Subscriptions on the real executables with a clock the test controls (`--test-clock-file`):
// a year of each scenario and a direct sale, and renewals and plan changes paid while
// services are SIGKILLed.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestDomain
import NestScenarios
import NestTestKit
import Testing

private let day = TestClock.dayMs
private let start: Int64 = 1_800_000_000_000
private func commission(_ amount: Int64) -> Int64 { MoneyMath.commission(amount, bps: 500) }

@Suite("Subscriptions as processes", .serialized, .timeLimit(.minutes(6)))
struct SubscriptionProcessTests {
  @Test(
    "a year of each scenario and a direct sale: monthly auto-renewals, an upgrade, a downgrade, a renewal refused after a revocation, expiry, release"
  )
  func year() async throws {
    let platform = try await NestTestPlatform.start(
      .processes(),
      settings: [
        .entitlement: ["term.interval.ms": "50", "renewal.lead.ms": "\(3 * day)", "expiry.grace.ms": "\(7 * day)"]
      ], clockStartingAt: start)
    let clock = try #require(platform.clock)
    let market = platform.marketplace
    let prices = market.prices
    var subscriptions: [(ScenarioKind, ScenarioParties, ScenarioSetup, String)] = []
    for kind in ScenarioKind.all {
      let parties = ScenarioParties(kind, run: "year")
      let setup = try await market.setUp(kind, parties: parties)
      let order = try await market.buy(parties.customer, product: setup.productID, autoRenew: true)
      _ = try await market.waitForOrder(order.id)
      subscriptions.append((kind, parties, setup, try await market.instance(of: order).id))
    }
    func ends(_ expected: Int64) async throws -> Bool {
      try await eventually(timeout: .seconds(60)) {
        for (_, _, _, id) in subscriptions where try await market.instance(id).expiresAtUnixMs != expected {
          return false
        }
        return true
      }
    }

    // Term k runs from day 30k to 30(k+1); auto-renew places each renewal 3 days before.
    for term in 0..<10 {
      let end = start + Int64(30 * (term + 1)) * day
      if term == 2 {
        // Halfway through the third term: an upgrade to "pro", for the 15 days left.
        try clock.set(start + 75 * day)
        for (_, parties, _, id) in subscriptions {
          let upgrade = try await market.change(parties.customer, instance: id, plan: "pro")
          _ = try await market.waitForOrder(upgrade.id)
        }
      }
      if term == 5 {
        // In the sixth term: back to "monthly" from the next renewal.
        try clock.set(start + 165 * day)
        for (_, parties, _, id) in subscriptions {
          let downgrade = try await market.change(parties.customer, instance: id, plan: "monthly")
          #expect(downgrade.price?.amount?.amountMinor == 0)
        }
      }
      try clock.set(end - 3 * day)
      #expect(try await ends(end + 30 * day), "renewal of term \(term)")
    }

    // The distributors lose their authorizations (the direct sale's product is delisted): the
    // renewal of the eleventh term is refused, the instance expires and is released.
    for (kind, parties, setup, _) in subscriptions {
      if let authorization = setup.authorization {
        try await platform.entitlement(as: .isv, parties.isv) {
          _ = try await $0.revokeDistribution(
            .with {
              $0.authorizationID = authorization.id
              $0.reason = "year over"
            })
        }
      } else {
        #expect(kind == .direct)
        try await platform.catalog(as: .isv, parties.isv) {
          _ = try await $0.delistFromMarketplace(.with { $0.productID = setup.productID })
        }
      }
    }
    let lastEnd = start + 330 * day
    try clock.set(lastEnd - 3 * day)
    for (kind, _, _, id) in subscriptions {
      #expect(
        try await eventually { try await market.instance(id).subscription?.status == .renewFailed }, "\(kind)")
    }
    try clock.set(lastEnd)
    for (kind, _, _, id) in subscriptions {
      #expect(try await eventually { try await market.instance(id).status == .expired }, "\(kind)")
    }
    try clock.set(lastEnd + 7 * day)
    for (kind, _, _, id) in subscriptions {
      #expect(try await eventually { try await market.instance(id).status == .released }, "\(kind)")
    }

    // Eleven paid terms: eight on "monthly" (the first, two renewals, then five after the
    // downgrade) and three on "pro", plus the upgrade's half term.
    for (kind, parties, _, _) in subscriptions {
      let monthly = kind.b == nil ? prices.aPrice : prices.bPrice
      let pro = monthly * prices.proFactor
      let delta = (pro - monthly) * 15 / 30
      let sales = Array(repeating: monthly, count: 8) + Array(repeating: pro, count: 3) + [delta]
      #expect(try await market.balance(.customer, parties.customer) == -sales.reduce(0, +), "\(kind)")
      let net = sales.reduce(0) { $0 + $1 - commission($1) }
      let wholesale = prices.wholesale
      switch kind {
      case .direct:
        #expect(try await market.balance(.isv, parties.isv) == net, "\(kind)")
      case .scenario3:
        #expect(try await market.balance(.distributor, parties.distributor) == net - 11 * wholesale, "\(kind)")
        #expect(try await market.balance(.isv, parties.isv) == 11 * (wholesale - commission(wholesale)), "\(kind)")
      default:
        #expect(try await market.balance(.distributor, parties.distributor) == net, "\(kind)")
        let owed = try await platform.settlement(as: .isv, parties.isv) {
          try await $0.listObligations(.with { $0.distributorID = parties.distributor }).obligations
        }
        #expect(owed.map { $0.amount?.amountMinor ?? 0 }.reduce(0, +) == 11 * wholesale, "\(kind)")
      }
    }
    let reconcile = try await market.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    await platform.stop()
  }

  @Test("renewals and plan changes paid while services are SIGKILLed: each term extended once, each sold once")
  func chaos() async throws {
    let platform = try await NestTestPlatform.start(.processes(), clockStartingAt: start)
    let market = platform.marketplace
    let prices = market.prices
    let parties = ScenarioParties(.scenario3, run: "chaos")
    let setup = try await market.setUp(.scenario3, parties: parties)
    let count = 16
    var instances: [String] = []
    for index in 0..<count {
      let order = try await market.buy("cust-chaos-\(index)", product: setup.productID)
      _ = try await market.waitForOrder(order.id)
      instances.append(try await market.instance(of: order).id)
    }

    let failures = NIOLockedValueBox<[String]>([])
    /// `body` until it succeeds, retrying what a SIGKILL leaves a call with.
    @Sendable func retrying<R: Sendable>(_ what: String, _ body: () async throws -> R) async -> R? {
      let deadline = ContinuousClock.now + .seconds(120)
      while ContinuousClock.now < deadline {
        do {
          return try await body()
        } catch let error as RPCError
          where [.unavailable, .deadlineExceeded, .cancelled, .unknown].contains(error.code)
        {
          try? await Task.sleep(for: .milliseconds(50))
        } catch {
          failures.withLockedValue { $0.append("\(what): \(error)") }
          return nil
        }
      }
      failures.withLockedValue { $0.append("\(what): still failing") }
      return nil
    }

    var random = SystemRandomNumberGenerator()
    let schedule = (0..<3).map { _ in
      (
        [NestServiceName.entitlement, .order, .settlement].randomElement(using: &random)!,
        Int.random(in: 20...300, using: &random)
      )
    }
    // The outbox retries what a kill made fail after a backoff of the services' (test) time:
    // while the orders are paid, that time moves on ten seconds every 50 ms.
    let clock = try #require(platform.clock)
    let ticker = Task {
      while !Task.isCancelled {
        try? clock.advance(by: 10_000)
        try? await Task.sleep(for: .milliseconds(50))
      }
    }
    async let kills: Void = {
      for (service, before) in schedule {
        try? await Task.sleep(for: .milliseconds(before))
        await platform.stop(service, kill: true)
        try? await Task.sleep(for: .milliseconds(200))
        try? await platform.start(service)
      }
    }()
    await withTaskGroup(of: Void.self) { group in
      for (index, instance) in instances.enumerated() {
        group.addTask {
          let customer = "cust-chaos-\(index)"
          @Sendable func orders(
            _ body:
              @Sendable (any Nest_Order_V1_MarketplaceOrderService.ClientProtocol) async throws
              -> Nest_Order_V1_Order
          ) async throws -> Nest_Order_V1_Order {
            try await platform.orders(as: .customer, customer, body)
          }
          guard
            let renewal = await retrying(
              "renew \(index)",
              {
                try await orders {
                  try await $0.createRenewalOrder(
                    .with {
                      $0.clientToken = "renew-\(index)"
                      $0.instanceID = instance
                    }
                  ).order ?? .init()
                }
              })
          else { return }
          _ = await retrying("pay renewal \(index)") {
            try await orders {
              try await $0.payOrder(
                .with {
                  $0.clientToken = "pay-renew-\(index)"
                  $0.orderID = renewal.id
                  $0.paymentReference = "psp-renew-\(index)"
                }
              ).order ?? .init()
            }
          }
          guard index % 2 == 0 else { return }
          // The change waits for the renewal to be applied (one open order per instance).
          _ = try? await eventually(timeout: .seconds(120)) {
            do {
              return try await orders { try await $0.getOrder(.with { $0.orderID = renewal.id }).order ?? .init() }
                .status == .fulfilled
            } catch {
              return false  // a service is down for a moment: ask again
            }
          }
          guard
            let change = await retrying(
              "change \(index)",
              {
                try await orders {
                  try await $0.createChangeOrder(
                    .with {
                      $0.clientToken = "change-\(index)"
                      $0.instanceID = instance
                      $0.quantity = 2
                    }
                  ).order ?? .init()
                }
              })
          else { return }
          _ = await retrying("pay change \(index)") {
            try await orders {
              try await $0.payOrder(
                .with {
                  $0.clientToken = "pay-change-\(index)"
                  $0.orderID = change.id
                  $0.paymentReference = "psp-change-\(index)"
                }
              ).order ?? .init()
            }
          }
        }
      }
    }
    await kills
    ticker.cancel()
    print(
      "subscription chaos: killed \(schedule.map(\.0.rawValue)) while \(count) renewals and \(count / 2) changes were paid"
    )
    for service in NestServiceName.allCases where platform.processes?.pid(service) == nil {
      try await platform.start(service)
    }
    #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0.prefix(5) })")

    // Everything delivered; each instance renewed once (one term more), half of them at two
    // units; each order sold once.
    // Then a minute at each look, until everything is delivered.
    let settled = try await eventually(timeout: .seconds(120)) {
      try clock.advance(by: 60_000)
      let all = try await platform.orders(as: .operator, "op") {
        try await $0.listOrders(.with { $0.page = .with { $0.pageSize = 500 } }).orders
      }
      return all.allSatisfy { $0.status == .fulfilled && $0.delivery?.pending == 0 }
    }
    #expect(settled)
    for (index, id) in instances.enumerated() {
      let instance = try await market.instance(id)
      #expect(instance.expiresAtUnixMs == start + 60 * day, "instance \(index)")  // one term more, once
      #expect(instance.quantity == (index % 2 == 0 ? 2 : 1), "instance \(index)")
      #expect(instance.subscription?.orderIds.count == (index % 2 == 0 ? 3 : 2), "instance \(index)")
    }
    let reconcile = try await market.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies.prefix(5))")
    // A sale per customer order, renewal and change, and one per linked order of each.
    let changes = count / 2
    #expect(reconcile.saleCount == UInt64(2 * (2 * count + changes)))
    let changeOrders = try await platform.orders(as: .operator, "op") {
      try await $0.listOrders(.with { $0.kind = .change }).orders
    }
    #expect(changeOrders.count == changes)
    for index in 0..<count {
      // A change costs one more unit for every day left of the term (renewed ahead: more
      // than one month), as of when it was priced.
      let change = changeOrders.first { $0.buyer?.accountID == "cust-chaos-\(index)" }
      if let snapshot = change?.change {
        let expected = MoneyMath.prorate(
          prices.bPrice, remaining: snapshot.termEndsAtUnixMs - snapshot.pricedAtUnixMs, period: 30 * day)
        #expect(change?.price?.amount?.amountMinor == expected, "change of customer \(index)")
      }
      let paid = 2 * prices.bPrice + (change?.price?.amount?.amountMinor ?? 0)
      #expect(try await market.balance(.customer, "cust-chaos-\(index)") == -paid, "customer \(index)")
    }
    await platform.stop()
  }
}
