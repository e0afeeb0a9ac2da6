// `nestctl demo --year`: one scenario-3 subscription through a year, on a platform the demo
// starts with a simulated clock (the services read the time from a file the demo moves, as the
// tests do): monthly auto-renewals, an upgrade with proration, a downgrade at the next
// renewal, the distributor's authorization revoked, the renewal refused, expiry and release.
// After each step: the orders it made (with their linked orders) and every balance, checked
// against the price list's arithmetic at the end.
import ArgumentParser
import Foundation
import NestDomain
import NestProto
import NestScenarios
import NestServiceKit

struct YearDemo {
  static let day = BillingPeriods.dayMs
  /// 2027-01-01T00:00:00Z.
  static let start: Int64 = 1_798_761_600_000

  let marketplace: Marketplace
  let clock: TestClock
  let run: String

  var prices: PriceList { self.marketplace.prices }
  func money(_ amount: Int64) -> String { MoneyFormat.string(amount, self.prices.currency) }

  /// The settings the platform runs with for the year: terms looked at every 100 ms.
  static let entitlementArguments = [
    "--term-interval-ms", "100", "--renewal-lead-ms", "\(3 * day)", "--expiry-grace-ms", "\(7 * day)",
  ]

  func walk() async throws -> Int {
    let parties = ScenarioParties(.scenario3, run: self.run)
    let setup = try await self.marketplace.setUp(.scenario3, parties: parties)
    print("== a year of one scenario-3 subscription (simulated clock from \(date(Self.start)))")
    print(
      "  B \(setup.b?.id ?? "") at \(self.money(self.prices.bPrice))/month (pro \(self.money(self.prices.bPrice * self.prices.proFactor))), wholesale \(self.money(self.prices.wholesale))/month"
    )
    var seen: Set<String> = []
    let bought = try await self.marketplace.buy(parties.customer, product: setup.productID, autoRenew: true)
    _ = try await self.marketplace.waitForOrder(bought.id)
    let instance = try await self.marketplace.instance(of: bought).id
    try await self.report("day 0: bought monthly, auto-renew on", parties, &seen, instance)

    func instanceNow() async throws -> Nest_Entitlement_V1_ServiceInstance {
      try await self.marketplace.instance(instance)
    }
    func until(_ what: String, _ condition: @escaping (Nest_Entitlement_V1_ServiceInstance) -> Bool) async throws {
      guard try await eventually(timeout: .seconds(60), { condition(try await instanceNow()) }) else {
        throw ValidationError("the platform did not reach: \(what)")
      }
    }
    var sales: [(amount: Int64, wholesale: Int64)] = [(self.prices.bPrice, self.prices.wholesale)]
    for term in 0..<10 {
      let end = Self.start + Int64(30 * (term + 1)) * Self.day
      if term == 2 {
        try self.clock.set(Self.start + 75 * Self.day)
        let upgrade = try await self.marketplace.change(parties.customer, instance: instance, plan: "pro")
        _ = try await self.marketplace.waitForOrder(upgrade.id)
        sales.append((upgrade.price?.amount?.amountMinor ?? 0, 0))
        try await self.report("day 75: upgrade to pro, half the month left", parties, &seen, instance)
      }
      if term == 5 {
        try self.clock.set(Self.start + 165 * Self.day)
        let downgrade = try await self.marketplace.change(parties.customer, instance: instance, plan: "monthly")
        _ = try await self.marketplace.waitForOrder(downgrade.id)
        try await self.report("day 165: downgrade to monthly, from the next renewal", parties, &seen, instance)
      }
      try self.clock.set(end - 3 * Self.day)
      try await until("renewal of term \(term + 1)") { $0.expiresAtUnixMs == end + 30 * Self.day }
      let plan = term >= 2 && term < 5 ? self.prices.bPrice * self.prices.proFactor : self.prices.bPrice
      sales.append((plan, self.prices.wholesale))
      try await self.report("day \((end - Self.start) / Self.day - 3): auto-renewed", parties, &seen, instance)
    }
    try await self.marketplace.platform.entitlement(as: .isv, parties.isv) {
      _ = try await $0.revokeDistribution(
        .with {
          $0.authorizationID = setup.authorization?.id ?? ""
          $0.reason = "the year is over"
        })
    }
    let last = Self.start + 330 * Self.day
    try self.clock.set(last - 3 * Self.day)
    try await until("renewal refused") { $0.subscription?.status == .renewFailed }
    try await self.report("day 327: authorization revoked, renewal refused", parties, &seen, instance)
    try self.clock.set(last)
    try await until("expired") { $0.status == .expired }
    try await self.report("day 330: term over, not serving", parties, &seen, instance)
    try self.clock.set(last + 7 * Self.day)
    try await until("released") { $0.status == .released }
    try await self.report("day 337: grace period over, released", parties, &seen, instance)

    var failures = 0
    print("  checked against the price list (\(sales.count) sales):")
    for (kind, account, want) in self.prices.balances(.scenario3, parties: parties, sales: sales) {
      let got = try await self.marketplace.balance(kind, account)
      if got != want { failures += 1 }
      print(
        "    \(statusName(kind).lowercased()) \(account): \(self.money(got))  \(got == want ? "ok" : "EXPECTED \(self.money(want))")"
      )
    }
    return failures
  }

  /// The orders made since the last step, the instance, and the balances.
  func report(_ step: String, _ parties: ScenarioParties, _ seen: inout Set<String>, _ instanceID: String) async throws
  {
    let orders = try await self.marketplace.platform.orders(as: .operator, self.marketplace.operatorID) {
      try await $0.listOrders(.with { $0.buyerID = parties.customer }).orders
        + (try await $0.listOrders(.with { $0.buyerID = parties.distributor }).orders)
    }
    let instance = try await self.marketplace.instance(instanceID)
    let subscription = instance.subscription ?? .init()
    print(
      "  \(step): \(statusName(instance.status)), \(statusName(subscription.status)), plan \(subscription.plan?.planID ?? "") x \(instance.quantity), term to \(date(instance.expiresAtUnixMs))\(subscription.statusReason.isEmpty ? "" : " (\(subscription.statusReason))")"
    )
    for order in orders.reversed() where !seen.contains(order.id) {
      seen.insert(order.id)
      let parent = order.parentOrderID.isEmpty ? "" : " for \(order.parentOrderID)"
      print(
        "    order \(order.id) \(statusName(order.kind)) \(statusName(order.status)) \(order.buyer?.accountID ?? "") -> \(order.seller?.accountID ?? ""): \(self.money(order.price?.amount?.amountMinor ?? 0))\(parent)"
      )
    }
    var line: [String] = []
    for (kind, account) in [
      (Nest_Settlement_V1_AccountKind.customer, parties.customer), (.distributor, parties.distributor),
      (.isv, parties.isv),
    ] {
      line.append("\(statusName(kind).lowercased()) \(self.money(try await self.marketplace.balance(kind, account)))")
    }
    print("    balances: " + line.joined(separator: ", "))
  }
}
