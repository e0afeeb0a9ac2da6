// `nestctl demo`: the four distribution scenarios and a direct sale, walked as the parties
// would (ISV, distributor, customer, operator) against a running platform, printing what each
// step produced and checking every balance against the price list. Exits non-zero if any
// figure disagrees.
import ArgumentParser
import Foundation
import GRPCCore
import NestProto
import NestServiceKit
import NestTransport

struct DemoCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo", abstract: "Walk all four scenarios and a direct sale; check the money.")

  @Flag(help: "Start the platform (as `nestctl up`) for the demo and stop it afterwards.") var spawn = false
  @Option(help: "With --spawn: the first of four consecutive ports.") var basePort: Int = 7101
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    var connection = self.connection
    var platform: Platform? = nil
    if self.spawn {
      let spawned = Platform(dataDir: connection.dataDir, host: "127.0.0.1", basePort: self.basePort)
      try await spawned.start()
      print(spawned.table + "\n")
      for service in NestServiceName.allCases {
        let address = "\(spawned.address(service))"
        switch service {
        case .catalog: connection.catalogAddress = address
        case .entitlement: connection.entitlementAddress = address
        case .order: connection.orderAddress = address
        case .settlement: connection.settlementAddress = address
        }
      }
      platform = spawned
    }
    defer { platform?.stop() }
    let demo = Demo(connection: connection, run: String(UUID().uuidString.prefix(6)).lowercased())
    var failures = 0
    try await reportingErrors {
      for scenario in Demo.Scenario.all { failures += try await demo.walk(scenario) }
      failures += try await demo.reconcile()
    }
    print(failures == 0 ? "\nall figures agree" : "\n\(failures) figure(s) disagree")
    if failures > 0 { throw ExitCode(1) }
  }
}

struct Demo {
  struct Scenario {
    var name: String
    var a: Nest_Common_V1_ServiceType
    var aListed: Bool
    var b: Nest_Common_V1_ServiceType?

    static let all = [
      Scenario(name: "scenario 1", a: .private, aListed: false, b: .private),
      Scenario(name: "scenario 2", a: .private, aListed: false, b: .fullyManaged),
      Scenario(name: "scenario 3", a: .fullyManaged, aListed: true, b: .fullyManaged),
      Scenario(name: "scenario 4", a: .fullyManaged, aListed: false, b: .fullyManaged),
      Scenario(name: "direct sale", a: .fullyManaged, aListed: true, b: nil),
    ]
  }

  // The price list.
  static let aPrice: Int64 = 4_900
  static let bPrice: Int64 = 7_999
  static let wholesale: Int64 = 3_333
  static let quantity: UInt32 = 2
  static let periods: UInt32 = 3
  static let bps: Int64 = 500

  let connection: ConnectionOptions
  let run: String

  func party(_ scenario: Scenario, _ role: String) -> String {
    "\(role)-\(scenario.name.replacingOccurrences(of: " ", with: "-"))-\(self.run)"
  }

  func calls<Client, R: Sendable>(
    _ service: NestServiceName, _ role: Nest_Common_V1_Role, _ subject: String,
    _ wrap: @escaping (GRPCClient<NestClientTransport>) -> Client, _ body: (Client) async throws -> R
  ) async throws -> R {
    let token = try await self.connection.mint(role, subject)
    return try await self.connection.withClient(service, token: token) { try await body(wrap($0)) }
  }

  func catalog<R: Sendable>(
    _ role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Catalog_V1_CatalogService.Client<NestClientTransport>) async throws -> R
  ) async throws -> R { try await self.calls(.catalog, role, subject, { .init(wrapping: $0) }, body) }

  func entitlement<R: Sendable>(
    _ role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Entitlement_V1_EntitlementService.Client<NestClientTransport>) async throws -> R
  ) async throws -> R { try await self.calls(.entitlement, role, subject, { .init(wrapping: $0) }, body) }

  func orders<R: Sendable>(
    _ role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Order_V1_MarketplaceOrderService.Client<NestClientTransport>) async throws -> R
  ) async throws -> R { try await self.calls(.order, role, subject, { .init(wrapping: $0) }, body) }

  func settlement<R: Sendable>(
    _ role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Settlement_V1_SettlementService.Client<NestClientTransport>) async throws -> R
  ) async throws -> R { try await self.calls(.settlement, role, subject, { .init(wrapping: $0) }, body) }

  static func money(_ amount: Int64) -> Nest_Common_V1_Money {
    .with {
      $0.currency = "USD"
      $0.amountMinor = amount
    }
  }

  func publish(
    _ role: Nest_Common_V1_Role, _ owner: String, type: Nest_Common_V1_ServiceType, base: String?, price: Int64?
  ) async throws -> Nest_Catalog_V1_Service {
    try await self.catalog(role, owner) { catalog in
      let sets: [Nest_Catalog_V1_ParameterSet] = [
        .with {
          $0.name = "standard"; $0.parameters = ["region": "eu-1"]
        }
      ]
      let created: Nest_Catalog_V1_Service
      if let base {
        created = try await catalog.createDerivedService(
          .with {
            $0.baseServiceID = base
            $0.name = "Analytics Plus"
            $0.type = type
            $0.parameterSets = sets
          }
        ).service!
      } else {
        created = try await catalog.createService(
          .with {
            $0.name = "Analytics"
            $0.type = type
            $0.deploymentPackage = .with {
              $0.artifactRef = "oci://registry.example/\(owner)/analytics:1.0"
              $0.checksumSha256 = String(repeating: "ab", count: 32)
            }
            $0.parameterSets = sets
          }
        ).service!
      }
      let versions = try await catalog.getService(.with { $0.serviceID = created.id }).versions
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.id
          $0.versionID = versions[0].id
        })
      if base == nil { _ = try await catalog.enableDistribution(.with { $0.serviceID = created.id }) }
      if let price {
        _ = try await catalog.listOnMarketplace(
          .with {
            $0.serviceID = created.id
            $0.plans = [
              .with {
                $0.planID = "monthly"
                $0.billingPeriod = .month
                $0.unitPrice = Self.money(price)
              }
            ]
          })
      }
      return try await catalog.getService(.with { $0.serviceID = created.id }).service!
    }
  }

  /// One scenario from publishing to a confirmed statement; the number of figures that disagree.
  func walk(_ scenario: Scenario) async throws -> Int {
    let isv = self.party(scenario, "isv")
    let distributor = self.party(scenario, "dist")
    let customer = self.party(scenario, "cust")
    print("== \(scenario.name)")
    let a = try await self.publish(.isv, isv, type: scenario.a, base: nil, price: scenario.aListed ? Self.aPrice : nil)
    print(
      "  ISV \(isv) publishes A \(a.id) (\(statusName(a.type)), \(a.listedOnMarketplace ? "listed" : "not listed"))")
    var product = a.productID
    if let bType = scenario.b {
      let authorization = try await self.entitlement(.distributor, distributor) {
        try await $0.applyForDistribution(
          .with {
            $0.baseServiceID = a.id
            $0.message = "we resell"
          }
        ).authorization!
      }
      let approved = try await self.entitlement(.isv, isv) {
        try await $0.approveDistribution(
          .with {
            $0.authorizationID = authorization.id
            $0.terms = .with { $0.wholesalePrice = Self.money(Self.wholesale) }
          }
        ).authorization!
      }
      print(
        "  distributor \(distributor) applies; ISV approves \(approved.id): \(statusName(approved.status)), wholesale \(Self.wholesale) USD"
      )
      let b = try await self.publish(.distributor, distributor, type: bType, base: a.id, price: Self.bPrice)
      print("  distributor publishes B \(b.id) (\(statusName(b.type))) at \(Self.bPrice) USD/month")
      product = b.productID
    }
    let order = try await self.orders(.customer, customer) { orders in
      let created = try await orders.createOrder(
        .with {
          $0.productID = product
          $0.planID = "monthly"
          $0.quantity = Self.quantity
          $0.periods = Self.periods
          $0.parameterSetName = "standard"
        }
      ).order!
      _ = try await orders.payOrder(
        .with {
          $0.orderID = created.id
          $0.paymentReference = "demo-payment-\(created.id)"
          $0.expectedAmount = created.price!.amount!
        })
      return created
    }
    var fulfilled = Nest_Order_V1_GetOrderResponse()
    let deadline = ContinuousClock.now + .seconds(60)
    repeat {
      fulfilled = try await self.orders(.operator, "demo-operator") {
        try await $0.getOrder(.with { $0.orderID = order.id })
      }
      if fulfilled.order?.status == .fulfilled && fulfilled.order?.delivery?.pending == 0 { break }
      try await Task.sleep(for: .milliseconds(100))
    } while ContinuousClock.now < deadline
    let paid = fulfilled.order!
    print(
      "  customer \(customer) buys \(Self.quantity) x \(Self.periods) months: order \(paid.id) \(statusName(paid.status)), \(statusName(paid.scenario?.scenario ?? .unspecified)), \(Output.cell(paid.price!.amount!))"
    )
    for link in fulfilled.linkedOrders {
      print("  linked order \(link.id): \(link.buyer!.accountID) buys A for \(Output.cell(link.price!.amount!))")
    }
    let instance = try await self.entitlement(.customer, customer) {
      try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance!
    }
    switch instance.access {
    case .logonURL(let url)?: print("  instance \(instance.id): \(statusName(instance.status)), logon URL \(url)")
    case .license(let license)?:
      print(
        "  instance \(instance.id): \(statusName(instance.status)), license \(license.licenseID) (\(license.algorithm))"
      )
    case nil: print("  instance \(instance.id): no access")
    }
    print("  resources owned and paid by \(instance.resourceOwner!.accountID)")

    // The money, from the price list.
    let direct = scenario.b == nil
    let amount = (direct ? Self.aPrice : Self.bPrice) * Int64(Self.quantity) * Int64(Self.periods)
    let commission = amount * Self.bps / 10_000
    let wholesaleAmount = Self.wholesale * Int64(Self.quantity) * Int64(Self.periods)
    let online = scenario.b != nil && scenario.aListed && scenario.a == .fullyManaged
    var expected: [(Nest_Settlement_V1_AccountKind, String, Int64)] = [(.customer, customer, -amount)]
    if direct {
      expected.append((.isv, isv, amount - commission))
    } else if online {
      expected.append((.distributor, distributor, amount - commission - wholesaleAmount))
      expected.append((.isv, isv, wholesaleAmount - wholesaleAmount * Self.bps / 10_000))
    } else {
      expected.append((.distributor, distributor, amount - commission))
      expected.append((.isv, isv, 0))
    }
    var failures = 0
    for (kind, account, want) in expected {
      let balance = try await self.settlement(.operator, "demo-operator") {
        try await $0.getBalance(
          .with {
            $0.account = .with {
              $0.kind = kind; $0.accountID = account
            }
          }
        ).balance!
      }
      let got = balance.amounts.first { $0.currency == "USD" }?.amountMinor ?? 0
      let verdict = got == want ? "ok" : "EXPECTED \(want)"
      if got != want { failures += 1 }
      print("  balance \(statusName(kind).lowercased()) \(account): \(got) USD  \(verdict)")
    }
    if scenario.b != nil && !online {
      let statement = try await self.settlement(.isv, isv) { settlement in
        let issued = try await settlement.issueStatement(
          .with {
            $0.distributorID = distributor
            $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
          })
        return try await settlement.confirmStatementSettled(
          .with {
            $0.statementID = issued.statement!.id
            $0.externalReference = "bank-\(self.run)"
          }
        ).statement!
      }
      let total = statement.totals.first?.amountMinor ?? 0
      if total != wholesaleAmount { failures += 1 }
      print(
        "  offline: \(distributor) owes \(isv) \(total) USD (\(total == wholesaleAmount ? "ok" : "EXPECTED \(wholesaleAmount)")); statement \(statement.id) \(statusName(statement.status))"
      )
    }
    return failures
  }

  func reconcile() async throws -> Int {
    let result = try await self.settlement(.operator, "demo-operator") {
      try await $0.reconcile(.with { $0.checkOrders = true })
    }
    print(
      "\n== Reconcile: \(result.ok ? "ok" : "DISCREPANCIES"): \(result.transactionCount) transactions, \(result.ordersChecked) paid orders checked"
    )
    for discrepancy in result.discrepancies { print("  \(statusName(discrepancy.kind)): \(discrepancy.description)") }
    return result.discrepancies.count
  }
}
