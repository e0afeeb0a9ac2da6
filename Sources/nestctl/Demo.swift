// `nestctl demo`: the four distribution scenarios and a direct sale, walked as the parties
// would (ISV, distributor, customer, operator) against a running platform, printing what each
// step produced and checking every balance against the price list. Exits non-zero if any
// figure disagrees. The walks are NestScenarios' Marketplace, which the tests use too.
import ArgumentParser
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestScenarios
import NestServiceKit

struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo", abstract: "Walk all four scenarios and a direct sale; check the money.")

  @Flag(help: "Start the platform (as `nestctl up`) for the demo and stop it afterwards.") var spawn = false
  @Flag(
    help:
      "Instead: one scenario-3 subscription through a year, on a platform started for it with a simulated clock (implies --spawn)."
  )
  var year = false
  @Option(help: "With --spawn: the first of four consecutive ports; 0 for any free ones.") var basePort: Int = 7101
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    var connection = self.connection
    var spawned: LocalPlatform? = nil
    var secret: String? = nil
    var clock: TestClock? = nil
    if self.spawn || self.year {
      var arguments: [NestServiceName: [String]] = [:]
      if self.year {
        // The services read the time from a file the demo moves (as the tests do).
        let file = URL(fileURLWithPath: connection.dataDir).standardizedFileURL.appendingPathComponent("clock")
        try FileManager.default.createDirectory(
          at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        clock = try TestClock(startingAt: YearDemo.start, file: file)
        for service in NestServiceName.allCases { arguments[service] = ["--test-clock-file", file.path] }
        arguments[.entitlement, default: []] += YearDemo.entitlementArguments
      }
      let platform = try LocalPlatform.local(
        dataDir: connection.dataDir, host: "127.0.0.1", basePort: self.basePort, extraArguments: arguments)
      spawned = platform
      do {
        try await platform.start()
      } catch {
        platform.stop()
        throw ValidationError("\(error)")
      }
      print(platform.table + "\n")
      connection.catalogAddress = "\(platform.addresses[.catalog]!)"
      connection.entitlementAddress = "\(platform.addresses[.entitlement]!)"
      connection.orderAddress = "\(platform.addresses[.order]!)"
      connection.settlementAddress = "\(platform.addresses[.settlement]!)"
      connection.eventsAddress = "\(platform.addresses[.events]!)"
      // The platform this demo started signs with its own secret, whatever the environment says.
      secret = try platform.secret()
    }
    defer { spawned?.stop() }
    let remote = try await connection.platform(secret: secret)
    let demo = Demo(
      marketplace: Marketplace(remote, operatorID: "demo-operator"),
      run: String(UUID().uuidString.prefix(6)).lowercased())
    var failures = 0
    do {
      try await reportingErrors {
        if let clock {
          failures += try await YearDemo(marketplace: demo.marketplace, clock: clock, run: demo.run).walk()
        } else {
          for kind in ScenarioKind.all { failures += try await demo.walk(kind) }
        }
        failures += try await demo.reconcile()
      }
    } catch {
      await remote.close()
      throw error
    }
    await remote.close()
    print(failures == 0 ? "\nall figures agree" : "\n\(failures) figure(s) disagree")
    if failures > 0 { throw ExitCode(1) }
  }
}

struct Demo {
  static let quantity: UInt32 = 2
  static let periods: UInt32 = 3

  let marketplace: Marketplace
  let run: String

  var prices: PriceList { self.marketplace.prices }

  func money(_ amount: Int64) -> String { MoneyFormat.string(amount, self.prices.currency) }

  /// One scenario from publishing to a confirmed statement; the number of figures that disagree.
  func walk(_ kind: ScenarioKind) async throws -> Int {
    let parties = ScenarioParties(kind, run: self.run)
    print("== \(kind.name)")
    // Scenario 3's ISV hears of it all through a webhook.
    let receiver = kind == .scenario3 ? try DemoReceiver() : nil
    defer { receiver?.close() }
    var subscribed = false
    if let receiver { subscribed = try await self.subscribe(receiver, isv: parties.isv) }
    let setup = try await self.marketplace.setUp(kind, parties: parties)
    if let receiver, subscribed {
      _ = try await self.registerFulfilment(receiver, isv: parties.isv, service: setup.a.id)
    }
    print(
      "  ISV \(parties.isv) publishes A \(setup.a.id) (\(statusName(setup.a.type)), \(setup.a.listedOnMarketplace ? "listed" : "not listed"))"
    )
    if let authorization = setup.authorization, let b = setup.b {
      print(
        "  distributor \(parties.distributor) applies; ISV approves \(authorization.id): \(statusName(authorization.status)), wholesale \(self.money(self.prices.wholesale))"
      )
      print("  distributor publishes B \(b.id) (\(statusName(b.type))) at \(self.money(self.prices.bPrice))/month")
    }
    let order = try await self.marketplace.buy(
      parties.customer, product: setup.productID, quantity: Self.quantity, periods: Self.periods)
    let fulfilled = try await self.marketplace.waitForOrder(order.id)
    let paid = fulfilled.order ?? .init()
    print(
      "  customer \(parties.customer) buys \(Self.quantity) x \(Self.periods) months: order \(paid.id) \(statusName(paid.status)), \(statusName(paid.scenario?.scenario ?? .unspecified)), \(self.money(paid.price?.amount?.amountMinor ?? 0))"
    )
    for link in fulfilled.linkedOrders {
      print(
        "  linked order \(link.id): \(link.buyer?.accountID ?? "") buys A for \(self.money(link.price?.amount?.amountMinor ?? 0))"
      )
    }
    // Deployed by the platform, or by the provider's fulfilment endpoint (which may take a
    // moment).
    var instance = Nest_Entitlement_V1_ServiceInstance()
    _ = try await eventually(timeout: .seconds(30)) {
      instance = try await self.marketplace.instance(of: paid)
      return instance.status != .created && instance.status != .deploying
    }
    switch instance.access {
    case .logonURL(let url)?:
      let facts = instance.providerFacts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
      print(
        "  instance \(instance.id): \(statusName(instance.status)), logon URL \(url)"
          + (facts.isEmpty ? "" : " (from the provider: \(facts.joined(separator: ", ")))"))
    case .license(let license)?:
      print(
        "  instance \(instance.id): \(statusName(instance.status)), license \(license.licenseID) (\(license.algorithm))"
      )
    case nil: print("  instance \(instance.id): no access")
    }
    print("  resources owned and paid by \(instance.resourceOwner?.accountID ?? "")")

    var failures = 0
    let unit = kind.b == nil ? self.prices.aPrice : self.prices.bPrice
    let quantity = Int64(Self.quantity)
    var sales = [
      (amount: paid.price?.amount?.amountMinor ?? 0, wholesale: self.prices.wholesale * quantity * Int64(Self.periods))
    ]

    // A renewal: one more month on the plan at the price in force.
    let renewal = try await self.marketplace.renew(parties.customer, instance: instance.id)
    _ = try await self.marketplace.waitForOrder(renewal.id)
    let renewed = try await self.marketplace.instance(instance.id)
    let renewalAmount = renewal.price?.amount?.amountMinor ?? 0
    failures += self.check(
      "  renewal \(renewal.id): 1 month, \(self.money(renewalAmount)), term to \(date(renewed.expiresAtUnixMs))",
      got: renewalAmount, want: unit * quantity)
    sales.append((renewalAmount, self.prices.wholesale * quantity))

    // An upgrade to "pro": the difference for every day left of the term.
    let upgrade = try await self.marketplace.change(parties.customer, instance: instance.id, plan: "pro")
    _ = try await self.marketplace.waitForOrder(upgrade.id)
    let change = upgrade.change ?? .init()
    let left = change.termEndsAtUnixMs - change.pricedAtUnixMs
    let prorated =
      MoneyMath.prorate(
        unit * (self.prices.proFactor - 1) * quantity, remaining: left, period: change.periodMs) ?? -1
    let upgradeAmount = upgrade.price?.amount?.amountMinor ?? 0
    failures += self.check(
      "  upgrade \(upgrade.id) to pro: \(self.money(upgradeAmount)) for the \(days(left)) left (one month is \(days(change.periodMs)))",
      got: upgradeAmount, want: prorated)
    sales.append((upgradeAmount, 0))  // the wholesale price is per unit and month, whatever the plan

    // A trial by another customer: free, and the instance says so.
    let trialCustomer = "trial-\(parties.customer)"
    let trial = try await self.marketplace.buy(trialCustomer, product: setup.productID, trial: true)
    _ = try await self.marketplace.waitForOrder(trial.id)
    let trialInstance = try await self.marketplace.instance(of: trial)
    let trialBalance = try await self.marketplace.balance(.customer, trialCustomer)
    failures += self.check(
      "  trial \(trial.id) for \(trialCustomer): \(statusName(trialInstance.subscription?.status ?? .unspecified)) until \(date(trialInstance.expiresAtUnixMs)), balance \(self.money(trialBalance))",
      got: trialBalance, want: 0)

    for (kind, account, want) in self.prices.balances(kind, parties: parties, sales: sales) {
      let got = try await self.marketplace.balance(kind, account)
      if got != want { failures += 1 }
      print(
        "  balance \(statusName(kind).lowercased()) \(account): \(self.money(got))  \(got == want ? "ok" : "EXPECTED \(self.money(want))")"
      )
    }
    if kind.offline {
      let wholesale = sales.reduce(0) { $0 + $1.wholesale }
      let statement = try await self.marketplace.settleOffline(
        isv: parties.isv, distributor: parties.distributor, reference: "bank-\(self.run)")
      let total = statement.totals.first?.amountMinor ?? 0
      if total != wholesale { failures += 1 }
      print(
        "  offline: \(parties.distributor) owes \(parties.isv) \(self.money(total)) (\(total == wholesale ? "ok" : "EXPECTED \(self.money(wholesale))")); statement \(statement.id) \(statusName(statement.status))"
      )
    }
    // Scenario 3: a security release of A, followed down the chain to the customer.
    if kind == .scenario3 {
      failures += try await self.securityRelease(setup, instance: instance, automatic: trialInstance)
    }
    if let receiver, subscribed { try await self.showReceived(receiver, isv: parties.isv) }
    return failures
  }

  /// Prints `line` with "ok", or with what was expected; 1 when it disagrees.
  func check(_ line: String, got: Int64, want: Int64) -> Int {
    print("\(line)  \(got == want ? "ok" : "EXPECTED \(self.money(want))")")
    return got == want ? 0 : 1
  }

  func reconcile() async throws -> Int {
    let result = try await self.marketplace.reconcile()
    print(
      "\n== Reconcile: \(result.ok ? "ok" : "DISCREPANCIES"): \(result.transactionCount) transactions, \(result.ordersChecked) paid orders checked"
    )
    for discrepancy in result.discrepancies { print("  \(statusName(discrepancy.kind)): \(discrepancy.description)") }
    return result.discrepancies.count
  }
}
