// The whole platform: all five executables as separate processes on loopback, each with its
// own database. For each distribution scenario (and a direct sale) the parties set up A and
// B, a customer buys and pays, and the test checks orders, instances and money against its
// own arithmetic: the expected balances are computed here from the plan prices, not asked of
// the platform.
import Foundation
import GRPCCore
import NestProto
import NestProtoTesting
import NestScenarios
import NestTransport
import Testing

/// The test's own arithmetic of docs/design.md §5.
enum Expected {
  static let bps: Int64 = 500
  static func commission(_ amount: Int64) -> Int64 { amount * bps / 10_000 }
}

/// One scenario's parties and prices.
struct Setup: Sendable {
  var name: String
  var aType: Nest_Common_V1_ServiceType
  var aListed: Bool
  /// nil: a direct sale of A.
  var bType: Nest_Common_V1_ServiceType?
  var scenario: Nest_Common_V1_Scenario
  var isv: String { "isv-\(self.name)" }
  var distributor: String { "dist-\(self.name)" }
  var customer: String { "cust-\(self.name)" }
  // Prices chosen so that the commission's floor matters: 5% of 5,997 is 299.85.
  let aPrice: Int64 = 2_500
  let bPrice: Int64 = 1_999
  let wholesale: Int64 = 1_234
  let quantity: UInt32 = 3
  let periods: UInt32 = 1
  let usageCost: Int64 = 77

  var amount: Int64 { (self.bType == nil ? self.aPrice : self.bPrice) * Int64(self.quantity) * Int64(self.periods) }
  var wholesaleAmount: Int64 { self.wholesale * Int64(self.quantity) * Int64(self.periods) }
  var offline: Bool { [.scenario1, .scenario2, .scenario4].contains(self.scenario) }

  /// Who owns (and pays for) the resources, docs/design.md §1's table.
  var resourceOwner: Nest_Common_V1_Party {
    switch self.scenario {
    case .scenario1:
      .with {
        $0.role = .customer; $0.accountID = self.customer
      }
    case .scenario2:
      .with {
        $0.role = .distributor; $0.accountID = self.distributor
      }
    case .direct where self.aType == .private:
      .with {
        $0.role = .customer; $0.accountID = self.customer
      }
    default:
      .with {
        $0.role = .isv; $0.accountID = self.isv
      }
    }
  }

  /// The balances after the sale and one usage record, by account kind.
  var balances: (customer: Int64, distributor: Int64, isv: Int64, platform: Int64) {
    let usage = self.usageCost
    var customer = -self.amount
    var distributor: Int64 = 0
    var isv: Int64 = 0
    var platform = Expected.commission(self.amount)
    if self.bType == nil {
      isv += self.amount - Expected.commission(self.amount)
    } else {
      distributor += self.amount - Expected.commission(self.amount)
    }
    if self.scenario == .scenario3 {
      distributor -= self.wholesaleAmount
      isv += self.wholesaleAmount - Expected.commission(self.wholesaleAmount)
      platform += Expected.commission(self.wholesaleAmount)
    }
    switch self.resourceOwner.role {
    case .customer: customer -= usage
    case .distributor: distributor -= usage
    default: isv -= usage
    }
    return (customer, distributor, isv, platform)
  }
}

let setups: [Setup] = [
  Setup(name: "s1", aType: .private, aListed: false, bType: .private, scenario: .scenario1),
  Setup(name: "s2", aType: .private, aListed: true, bType: .fullyManaged, scenario: .scenario2),
  Setup(name: "s3", aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3),
  Setup(name: "s4", aType: .fullyManaged, aListed: false, bType: .fullyManaged, scenario: .scenario4),
  Setup(name: "direct", aType: .private, aListed: true, bType: nil, scenario: .direct),
]

func plan(_ amount: Int64) -> Nest_Catalog_V1_Plan {
  .with {
    $0.planID = "monthly"
    $0.billingPeriod = .month
    $0.unitPrice = usd(amount)
  }
}

/// A published service of `owner` (A when `base` is empty, else B on it), listed at `price` if given.
func publish(
  _ cluster: ServiceCluster, owner: Nest_Common_V1_Role, _ subject: String, type: Nest_Common_V1_ServiceType,
  base: String = "", price: Int64?
) async throws -> Nest_Catalog_V1_Service {
  try await catalog(cluster, as: owner, subject) { catalog in
    let created =
      base.isEmpty
      ? try await catalog.createService(
        .with {
          $0.name = "A of \(subject)"
          $0.type = type
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://registry.example/\(subject)/a:1"
            $0.checksumSha256 = String(repeating: "2e", count: 32)
          }
          $0.parameterSets = [
            .with {
              $0.name = "small"; $0.parameters = ["size": "s"]
            }
          ]
        }
      ).service!
      : try await catalog.createDerivedService(
        .with {
          $0.baseServiceID = base
          $0.name = "B of \(subject)"
          $0.type = type
          $0.parameterSets = [
            .with {
              $0.name = "small"; $0.parameters = ["size": "s", "backup": "daily"]
            }
          ]
        }
      ).service!
    let service = try await catalog.getService(.with { $0.serviceID = created.id })
    _ = try await catalog.publishService(
      .with {
        $0.serviceID = created.id
        $0.versionID = service.versions[0].id
      })
    if base.isEmpty { _ = try await catalog.enableDistribution(.with { $0.serviceID = created.id }) }
    if let price {
      _ = try await catalog.listOnMarketplace(
        .with {
          $0.serviceID = created.id
          $0.plans = [plan(price)]
        })
    }
    return try await catalog.getService(.with { $0.serviceID = created.id }).service!
  }
}

/// A, the authorization and B for `setup`; returns the product the customer buys.
func prepare(_ cluster: ServiceCluster, _ setup: Setup) async throws -> (product: String, authorization: String) {
  let a = try await publish(
    cluster, owner: .isv, setup.isv, type: setup.aType, price: setup.aListed ? setup.aPrice : nil)
  guard let bType = setup.bType else { return (a.productID, "") }
  let authorization = try await entitlement(cluster, as: .isv, setup.isv) {
    try await $0.grantDistribution(
      .with {
        $0.baseServiceID = a.id
        $0.distributorID = setup.distributor
        $0.terms = .with { $0.wholesalePrice = usd(setup.wholesale) }
      }
    ).authorization!
  }
  let b = try await publish(
    cluster, owner: .distributor, setup.distributor, type: bType, base: a.id, price: setup.bPrice)
  return (b.productID, authorization.id)
}

/// The customer's order, created and paid, once FULFILLED with nothing left to deliver.
func buy(_ cluster: ServiceCluster, _ setup: Setup, product: String, token: String = "") async throws
  -> Nest_Order_V1_Order
{
  let customer = orders(cluster, as: .customer, setup.customer)
  let created = try await customer {
    try await $0.createOrder(
      .with {
        $0.clientToken = token
        $0.productID = product
        $0.planID = "monthly"
        $0.quantity = setup.quantity
        $0.periods = setup.periods
        $0.parameterSetName = "small"
      }
    ).order!
  }
  _ = try await customer {
    try await $0.payOrder(
      .with {
        $0.orderID = created.id
        $0.paymentReference = "psp-\(created.id)"
        $0.expectedAmount = created.price!.amount!
      })
  }
  return try await settled(cluster, created.id, as: .customer, setup.customer)
}

/// The order once FULFILLED (or REFUNDED) with no delivery pending.
func settled(_ cluster: ServiceCluster, _ id: String, as role: Nest_Common_V1_Role, _ subject: String) async throws
  -> Nest_Order_V1_Order
{
  var order = Nest_Order_V1_Order()
  let done = try await eventually(timeout: .seconds(60)) {
    order = try await orders(cluster, as: role, subject) { try await $0.getOrder(.with { $0.orderID = id }).order! }
    return (order.status == .fulfilled || order.status == .refunded) && order.delivery?.pending == 0
  }
  #expect(done, "order \(id) is \(order.status) with \(order.delivery?.pending ?? 0) deliveries pending")
  // A linked order's sale is its own delivery: wait for it too (an operator sees the links).
  let links = try await orders(cluster, as: .operator, "op") { try await $0.getOrder(.with { $0.orderID = id }).order! }
  for linked in links.linkedOrderIds {
    let sold = try await eventually(timeout: .seconds(60)) {
      try await orders(cluster, as: .operator, "op") { try await $0.getOrder(.with { $0.orderID = linked }).order! }
        .delivery?.pending == 0
    }
    #expect(sold, "linked order \(linked) still has deliveries pending")
  }
  return order
}

func balance(
  _ cluster: ServiceCluster, _ kind: Nest_Settlement_V1_AccountKind, _ account: String = ""
) async throws -> Int64 {
  try await settlement(cluster, as: .operator, "op") {
    try await $0.getBalance(
      .with {
        $0.account = .with {
          $0.kind = kind
          $0.accountID = account
        }
      }
    ).balance!.amounts.first { $0.currency == "USD" }?.amountMinor ?? 0
  }
}

@Suite("The four scenarios end to end, five processes", .serialized, .timeLimit(.minutes(3)))
struct PlatformScenarioTests {
  @Test("each scenario and a direct sale: orders, instances, money, obligations, usage, refunds, Reconcile")
  func scenarios() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    var platformExpected: Int64 = 0
    var bought: [String: Nest_Order_V1_Order] = [:]
    for setup in setups {
      let (product, authorization) = try await prepare(cluster, setup)
      let order = try await buy(cluster, setup, product: product)
      bought[setup.name] = order
      #expect(order.status == .fulfilled, "\(setup.name)")
      #expect(order.scenario?.scenario == setup.scenario, "\(setup.name)")
      #expect(order.price?.amount?.amountMinor == setup.amount, "\(setup.name)")
      #expect(order.price?.commission?.amountMinor == Expected.commission(setup.amount), "\(setup.name)")

      // The linked order for A exists in scenario 3 only, bought by the distributor at wholesale.
      let seen = try await orders(cluster, as: .operator, "op") {
        try await $0.getOrder(.with { $0.orderID = order.id })
      }
      if setup.scenario == .scenario3 {
        #expect(seen.linkedOrders.count == 1)
        let link = seen.linkedOrders.first
        #expect(
          link?.buyer
            == .with {
              $0.role = .distributor; $0.accountID = setup.distributor
            })
        #expect(
          link?.seller
            == .with {
              $0.role = .isv; $0.accountID = setup.isv
            })
        #expect(link?.price?.amount?.amountMinor == setup.wholesaleAmount)
        #expect(link?.status == .fulfilled)
        // The customer does not see the wholesale side.
        let customerView = try await orders(cluster, as: .customer, setup.customer) {
          try await $0.getOrder(.with { $0.orderID = order.id })
        }
        #expect(customerView.linkedOrders.isEmpty)
      } else {
        #expect(seen.linkedOrders.isEmpty, "\(setup.name)")
        #expect(order.linkedOrderIds.isEmpty, "\(setup.name)")
      }

      // The instance: owner, fee payer, and a license or a logon URL.
      let instance = try await entitlement(cluster, as: .customer, setup.customer) {
        try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance!
      }
      #expect(instance.id == order.instanceID, "\(setup.name)")
      #expect(instance.resourceOwner == setup.resourceOwner, "\(setup.name)")
      #expect(instance.feePayer == setup.resourceOwner, "\(setup.name)")
      // The authorization a sale was made under is the wholesale side: not the customer's.
      #expect(instance.authorizationID == "", "\(setup.name)")
      let operatorView = try await entitlement(cluster, as: .operator, "op") {
        try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance!
      }
      #expect(operatorView.authorizationID == authorization, "\(setup.name)")
      #expect(instance.parameters["size"] == "s", "\(setup.name)")
      let privateService = (setup.bType ?? setup.aType) == .private
      switch instance.access {
      case .license(let license)?:
        #expect(privateService, "\(setup.name)")
        let check = try await entitlement(cluster, as: .customer, setup.customer) {
          try await $0.checkLicense(.with { $0.license = .licenseID(license.licenseID) })
        }
        #expect(check.valid, "\(setup.name)")
      case .logonURL(let url)?:
        #expect(!privateService, "\(setup.name)")
        #expect(url.contains(instance.id))
      case nil:
        Issue.record("\(setup.name): no access")
      }

      // Usage, reported by the platform, is charged to the fee payer.
      let usage = try await settlement(cluster, as: .service, "metering") {
        try await $0.recordUsage(
          .with {
            $0.records = [
              .with {
                $0.recordID = "usage/\(instance.id)/1"
                $0.instanceID = instance.id
                $0.meteredItem = "ecs.vcpu-hours"
                $0.quantity = 7
                $0.unit = "vcpu-hour"
                $0.cost = usd(setup.usageCost)
                $0.recordedAtUnixMs = 1
              },
              .with {
                $0.recordID = "usage/\(instance.id)/1"
                $0.instanceID = instance.id
                $0.meteredItem = "ecs.vcpu-hours"
                $0.quantity = 7
                $0.unit = "vcpu-hour"
                $0.cost = usd(setup.usageCost)
                $0.recordedAtUnixMs = 1
              },
            ]
          }
        ).results
      }
      #expect(usage.map(\.result) == [.accepted, .duplicate], "\(setup.name)")
      #expect(usage.first?.feePayer == setup.resourceOwner, "\(setup.name)")

      // Exact balances, from the test's own arithmetic.
      let expected = setup.balances
      platformExpected += expected.platform
      #expect(try await balance(cluster, .customer, setup.customer) == expected.customer, "\(setup.name) customer")
      #expect(
        try await balance(cluster, .distributor, setup.distributor) == expected.distributor, "\(setup.name) distributor"
      )
      #expect(try await balance(cluster, .isv, setup.isv) == expected.isv, "\(setup.name) isv")
      #expect(try await balance(cluster, .platform) == platformExpected, "\(setup.name) platform")

      // Offline settlement in scenarios 1, 2 and 4: an obligation, a statement, confirmed.
      let obligations = try await settlement(cluster, as: .isv, setup.isv) {
        try await $0.listObligations(.with { $0.orderID = order.id }).obligations
      }
      if setup.offline {
        #expect(obligations.count == 1, "\(setup.name)")
        #expect(obligations.first?.amount == usd(setup.wholesaleAmount), "\(setup.name)")
        #expect(obligations.first?.distributorID == setup.distributor, "\(setup.name)")
        let issued = try await settlement(cluster, as: .distributor, setup.distributor) {
          try await $0.issueStatement(
            .with {
              $0.isvID = setup.isv
              $0.periodStartUnixMs = 0
              $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
            })
        }
        #expect(issued.statement?.totals == [usd(setup.wholesaleAmount)], "\(setup.name)")
        let confirmed = try await settlement(cluster, as: .isv, setup.isv) {
          try await $0.confirmStatementSettled(
            .with {
              $0.statementID = issued.statement!.id
              $0.externalReference = "bank-transfer-\(setup.name)"
            }
          ).statement!
        }
        #expect(confirmed.status == .settled, "\(setup.name)")
        let after = try await settlement(cluster, as: .isv, setup.isv) {
          try await $0.listObligations(.with { $0.orderID = order.id }).obligations
        }
        #expect(after.map(\.status) == [.settled], "\(setup.name)")
      } else {
        #expect(obligations.isEmpty, "\(setup.name)")
      }
    }
    #expect(try await balance(cluster, .cloud) == Int64(setups.count) * 77)

    // Every order refunded: in scenario 3 with its linked order; in 1, 2 and 4 the obligation,
    // already settled offline, is offset by a credit for the next statement.
    for setup in setups {
      let name = setup.name
      let order = bought[name]!
      let seller =
        setup.bType == nil ? orders(cluster, as: .isv, setup.isv) : orders(cluster, as: .distributor, setup.distributor)
      let refunded = try await seller {
        try await $0.refundOrder(
          .with {
            $0.orderID = order.id
            $0.reason = "customer changed their mind"
          })
      }
      #expect(refunded.order?.status == .refunded)
      #expect(refunded.linkedOrders.count == (name == "s3" ? 1 : 0))
      _ = try await settled(cluster, order.id, as: .operator, "op")
      // Only the usage remains.
      let usage = setup.usageCost
      #expect(
        try await balance(cluster, .customer, setup.customer) == (setup.resourceOwner.role == .customer ? -usage : 0))
      #expect(
        try await balance(cluster, .distributor, setup.distributor)
          == (setup.resourceOwner.role == .distributor ? -usage : 0))
      #expect(try await balance(cluster, .isv, setup.isv) == (setup.resourceOwner.role == .isv ? -usage : 0))
      platformExpected -= setup.balances.platform
      let instance = try await entitlement(cluster, as: .operator, "op") {
        try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance!
      }
      #expect(instance.status == .released)
    }
    #expect(try await balance(cluster, .platform) == platformExpected)
    let s1Obligations = try await settlement(cluster, as: .operator, "op") {
      try await $0.listObligations(.with { $0.distributorID = "dist-s1" }).obligations
    }
    #expect(s1Obligations.map(\.status) == [.offset, .open])
    #expect(
      s1Obligations.map { $0.amount?.amountMinor ?? 0 } == [setups[0].wholesaleAmount, -setups[0].wholesaleAmount])

    let reconcile = try await settlement(cluster, as: .operator, "op") {
      try await $0.reconcile(.with { $0.checkOrders = true })
    }
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    #expect(reconcile.ordersChecked == 6)  // five customer orders and one linked order
    #expect(reconcile.sums.map { $0.net?.amountMinor } == [0])
  }
}
