// The platform's flows as its parties walk them, for tests, `nestctl demo` and nest-bench
// alike: an ISV publishes A, a distributor is authorized and publishes B, a customer buys
// and gets an instance; and the money each party should then have, from the price list.
import Foundation
import NestDomain
public import NestProto
import NestServiceKit

/// The four distribution scenarios and a direct sale, as the types of A and B.
public struct ScenarioKind: Hashable, Sendable, CustomStringConvertible {
  public var name: String
  public var a: Nest_Common_V1_ServiceType
  public var aListed: Bool
  /// nil: a direct sale of A.
  public var b: Nest_Common_V1_ServiceType?

  public static let scenario1 = ScenarioKind(name: "scenario 1", a: .private, aListed: false, b: .private)
  public static let scenario2 = ScenarioKind(name: "scenario 2", a: .private, aListed: false, b: .fullyManaged)
  public static let scenario3 = ScenarioKind(name: "scenario 3", a: .fullyManaged, aListed: true, b: .fullyManaged)
  public static let scenario4 = ScenarioKind(name: "scenario 4", a: .fullyManaged, aListed: false, b: .fullyManaged)
  public static let direct = ScenarioKind(name: "direct sale", a: .fullyManaged, aListed: true, b: nil)
  public static let all = [scenario1, scenario2, scenario3, scenario4, direct]

  public init(name: String, a: Nest_Common_V1_ServiceType, aListed: Bool, b: Nest_Common_V1_ServiceType?) {
    self.name = name
    self.a = a
    self.aListed = aListed
    self.b = b
  }

  public var description: String { self.name }
  /// Scenario 3 settles the wholesale side online through a linked order.
  public var online: Bool { self.b != nil && self.aListed && self.a == .fullyManaged }
  /// Scenarios 1, 2 and 4 owe the wholesale amount offline.
  public var offline: Bool { self.b != nil && !self.online }
}

/// A price list: what A, B and the wholesale cost per unit per month, and the commission.
public struct PriceList: Hashable, Sendable {
  public var currency = "USD"
  public var aPrice: Int64 = 4_900
  public var bPrice: Int64 = 7_999
  public var wholesale: Int64 = 3_333
  public var commissionBps: Int64 = 500
  /// The "pro" plan costs this many times "monthly" (same billing period).
  public var proFactor: Int64 = 2
  /// The trial "monthly" offers, in days.
  public var trialDays: UInt32 = 14

  public init() {}

  /// The plans a product is listed with at `price`: "monthly" (with a trial) and "pro".
  public func plans(_ price: Int64) -> [Nest_Catalog_V1_Plan] {
    [
      .with {
        $0.planID = "monthly"
        $0.billingPeriod = .month
        $0.unitPrice = self.money(price)
        $0.trialDays = self.trialDays
      },
      .with {
        $0.planID = "pro"
        $0.billingPeriod = .month
        $0.unitPrice = self.money(price * self.proFactor)
      },
    ]
  }

  public func money(_ amount: Int64) -> Nest_Common_V1_Money { MoneyMath.money(self.currency, amount) }

  /// Each party's balance after `quantity` x `periods` of one sale of `kind`, before any
  /// usage, refund or statement: the arithmetic of the platform's money rules.
  public func balances(_ kind: ScenarioKind, parties: ScenarioParties, quantity: Int64, periods: Int64)
    -> [(Nest_Settlement_V1_AccountKind, String, Int64)]
  {
    let amount = (kind.b == nil ? self.aPrice : self.bPrice) * quantity * periods
    return self.balances(kind, parties: parties, sales: [(amount, self.wholesale * quantity * periods)])
  }

  /// Each party's balance after `sales` of `kind` (what the customer paid and the wholesale
  /// side of it), before any usage, refund or statement. Each sale's commission is floored
  /// on its own, as the platform takes it.
  public func balances(
    _ kind: ScenarioKind, parties: ScenarioParties, sales: [(amount: Int64, wholesale: Int64)]
  ) -> [(Nest_Settlement_V1_AccountKind, String, Int64)] {
    let bps = UInt32(self.commissionBps)
    let paid = sales.reduce(0) { $0 + $1.amount }
    let net = sales.reduce(0) { $0 + $1.amount - MoneyMath.commission($1.amount, bps: bps) }
    var expected: [(Nest_Settlement_V1_AccountKind, String, Int64)] = [(.customer, parties.customer, -paid)]
    if kind.b == nil {
      expected.append((.isv, parties.isv, net))
    } else if kind.online {
      let wholesale = sales.reduce(0) { $0 + $1.wholesale }
      let isvNet = sales.reduce(0) { $0 + $1.wholesale - MoneyMath.commission($1.wholesale, bps: bps) }
      expected.append((.distributor, parties.distributor, net - wholesale))
      expected.append((.isv, parties.isv, isvNet))
    } else {
      expected.append((.distributor, parties.distributor, net))
      expected.append((.isv, parties.isv, 0))
    }
    return expected
  }
}

/// Who takes part in one walk of a scenario.
public struct ScenarioParties: Hashable, Sendable {
  public var isv: String
  public var distributor: String
  public var customer: String

  /// Parties named after the scenario and a run id, so that runs do not meet.
  public init(_ kind: ScenarioKind, run: String) {
    let name = kind.name.replacingOccurrences(of: " ", with: "-")
    self.init(isv: "isv-\(name)-\(run)", distributor: "dist-\(name)-\(run)", customer: "cust-\(name)-\(run)")
  }

  public init(isv: String, distributor: String, customer: String) {
    self.isv = isv
    self.distributor = distributor
    self.customer = customer
  }
}

/// What a scenario's set-up made: A, the authorization and B (when derived), and the
/// product a customer buys.
public struct ScenarioSetup: Sendable {
  public var kind: ScenarioKind
  public var parties: ScenarioParties
  public var a: Nest_Catalog_V1_Service
  public var authorization: Nest_Entitlement_V1_DistributionAuthorization?
  public var b: Nest_Catalog_V1_Service?
  public var productID: String
}

/// The flows, over any `PlatformClients`.
public struct Marketplace: Sendable {
  public let platform: any PlatformClients
  public let prices: PriceList
  /// Who reads for the checks (balances, orders): an operator.
  public let operatorID: String

  public init(_ platform: any PlatformClients, prices: PriceList = PriceList(), operatorID: String = "operator-1") {
    self.platform = platform
    self.prices = prices
    self.operatorID = operatorID
  }

  /// A published service with a "standard" parameter set; listed with a monthly plan at
  /// `price` when given; a base service is opened for distribution.
  public func publish(
    _ role: Nest_Common_V1_Role, _ owner: String, type: Nest_Common_V1_ServiceType, base: String? = nil,
    price: Int64? = nil, name: String = "Analytics"
  ) async throws -> Nest_Catalog_V1_Service {
    try await self.platform.catalog(as: role, owner) { catalog in
      let sets: [Nest_Catalog_V1_ParameterSet] = [
        .with {
          $0.name = "standard"
          $0.parameters = ["region": "eu-1"]
        }
      ]
      let created: Nest_Catalog_V1_Service
      let version: Nest_Catalog_V1_ServiceVersion
      if let base {
        let response = try await catalog.createDerivedService(
          .with {
            $0.baseServiceID = base
            $0.name = "\(name) Plus"
            $0.type = type
            $0.parameterSets = sets
          })
        (created, version) = (response.service ?? .init(), response.version ?? .init())
      } else {
        let response = try await catalog.createService(
          .with {
            $0.name = name
            $0.type = type
            $0.deploymentPackage = .with {
              $0.artifactRef = "oci://registry.example/\(owner)/analytics:1.0"
              $0.checksumSha256 = String(repeating: "ab", count: 32)
            }
            $0.parameterSets = sets
          })
        (created, version) = (response.service ?? .init(), response.version ?? .init())
      }
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.id
          $0.versionID = version.id
        })
      if base == nil { _ = try await catalog.enableDistribution(.with { $0.serviceID = created.id }) }
      if let price {
        _ = try await catalog.listOnMarketplace(
          .with {
            $0.serviceID = created.id
            $0.plans = self.prices.plans(price)
          })
      }
      return try await catalog.getService(.with { $0.serviceID = created.id }).service ?? .init()
    }
  }

  /// A new version of `service` (A's with a new package, or B's on `baseVersion` of A),
  /// published: it upgrades instances from `upgradableFrom`. `region` is the value of its
  /// "standard" parameter set.
  public func publishVersion(
    _ role: Nest_Common_V1_Role, _ owner: String, service: Nest_Catalog_V1_Service, label: String,
    upgradableFrom: [String], rollback: Bool = true, security: Bool = false, baseVersion: String = "",
    region: String = "eu-1"
  ) async throws -> Nest_Catalog_V1_ServiceVersion {
    try await self.platform.catalog(as: role, owner) { catalog in
      let version =
        try await catalog.createServiceVersion(
          .with {
            $0.serviceID = service.id
            $0.label = label
            if service.baseServiceID.isEmpty {
              $0.deploymentPackage = .with {
                $0.artifactRef = "oci://registry.example/\(owner)/analytics:\(label)"
                $0.checksumSha256 = String(repeating: "cd", count: 32)
              }
            }
            $0.parameterSets = [
              .with {
                $0.name = "standard"
                $0.parameters = ["region": region]
              }
            ]
            $0.upgradableFromVersionIds = upgradableFrom
            $0.supportsRollback = rollback
            $0.securityRelease = security
            $0.baseVersionID = baseVersion
          }
        ).version ?? .init()
      return try await catalog.publishService(
        .with {
          $0.serviceID = service.id
          $0.versionID = version.id
        }
      ).version ?? .init()
    }
  }

  /// The instance upgraded by `role` `account` (to `target`, or what it is upgradable to).
  public func upgrade(
    _ role: Nest_Common_V1_Role, _ account: String, instance: String, to target: String = "", dryRun: Bool = false
  ) async throws -> Nest_Entitlement_V1_UpgradeServiceInstanceResponse {
    try await self.platform.entitlement(as: role, account) {
      try await $0.upgradeServiceInstance(
        .with {
          $0.instanceID = instance
          $0.targetVersionID = target
          $0.dryRun = dryRun
        })
    }
  }

  /// The distributor applies for A and the ISV approves at the price list's wholesale price.
  public func authorize(
    _ distributor: String, on base: Nest_Catalog_V1_Service, maxInstances: Int32 = 0
  ) async throws -> Nest_Entitlement_V1_DistributionAuthorization {
    let applied = try await self.platform.entitlement(as: .distributor, distributor) {
      try await $0.applyForDistribution(
        .with {
          $0.baseServiceID = base.id
          $0.message = "we resell"
        }
      ).authorization ?? .init()
    }
    return try await self.platform.entitlement(as: .isv, base.ownerID) {
      try await $0.approveDistribution(
        .with {
          $0.authorizationID = applied.id
          $0.terms = .with {
            $0.wholesalePrice = self.prices.money(self.prices.wholesale)
            $0.maxInstances = maxInstances
          }
        }
      ).authorization ?? .init()
    }
  }

  /// A, and for a derived scenario the authorization and B: ready for a customer to buy.
  public func setUp(_ kind: ScenarioKind, parties: ScenarioParties, maxInstances: Int32 = 0) async throws
    -> ScenarioSetup
  {
    let a = try await self.publish(
      .isv, parties.isv, type: kind.a, price: kind.aListed ? self.prices.aPrice : nil)
    guard let bType = kind.b else {
      return ScenarioSetup(kind: kind, parties: parties, a: a, authorization: nil, b: nil, productID: a.productID)
    }
    let authorization = try await self.authorize(parties.distributor, on: a, maxInstances: maxInstances)
    let b = try await self.publish(
      .distributor, parties.distributor, type: bType, base: a.id, price: self.prices.bPrice)
    return ScenarioSetup(
      kind: kind, parties: parties, a: a, authorization: authorization, b: b, productID: b.productID)
  }

  /// The provider (`role`, `owner`) registers its fulfilment endpoint on `service`; the
  /// signing secret, as returned this once.
  public func setFulfilmentEndpoint(
    _ role: Nest_Common_V1_Role, _ owner: String, service: String, url: String
  ) async throws -> String {
    try await self.platform.catalog(as: role, owner) {
      try await $0.setFulfilmentEndpoint(
        .with {
          $0.serviceID = service
          $0.url = url
        }
      ).secret
    }
  }

  /// A customer's order for the product, created and (unless `pay` is false) paid.
  public func buy(
    _ customer: String, product: String, plan: String = "monthly", quantity: UInt32 = 1, periods: UInt32 = 1,
    pay: Bool = true, trial: Bool = false, autoRenew: Bool = false, clientToken: String = ""
  ) async throws -> Nest_Order_V1_Order {
    try await self.platform.orders(as: .customer, customer) { orders in
      let created =
        try await orders.createOrder(
          .with {
            $0.productID = product
            $0.planID = plan
            $0.quantity = quantity
            $0.periods = periods
            $0.parameterSetName = "standard"
            $0.trial = trial
            $0.autoRenew = autoRenew
            $0.clientToken = clientToken.isEmpty ? "" : "create-\(clientToken)"
          }
        ).order ?? .init()
      guard pay, created.status == .created else { return created }
      return try await self.pay(created, clientToken: clientToken, through: orders)
    }
  }

  /// The instance made for a customer order, as its customer sees it.
  public func instance(of order: Nest_Order_V1_Order) async throws -> Nest_Entitlement_V1_ServiceInstance {
    try await self.platform.entitlement(as: .customer, order.buyer?.accountID ?? "") {
      try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance ?? .init()
    }
  }

  /// The instance as an operator sees it now.
  public func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance {
    try await self.platform.entitlement(as: .operator, self.operatorID) {
      try await $0.getServiceInstance(.with { $0.key = .instanceID(id) }).instance ?? .init()
    }
  }

  /// The customer asks the instance's resource owner to reboot it, for ten minutes.
  public func requestPermission(_ customer: String, instance: String) async throws
    -> Nest_Entitlement_V1_PermissionRequest
  {
    try await self.platform.entitlement(as: .customer, customer) {
      try await $0.requestResourcePermission(
        .with {
          $0.instanceID = instance
          $0.operation = "ecs:RebootInstance"
          $0.reason = "hung"
          $0.requestedDurationSeconds = 600
        }
      ).request ?? .init()
    }
  }

  /// The customer renews the instance for `periods` periods: a RENEWAL order, paid.
  public func renew(_ customer: String, instance: String, periods: UInt32 = 1) async throws -> Nest_Order_V1_Order {
    let created = try await self.platform.orders(as: .customer, customer) {
      try await $0.createRenewalOrder(
        .with {
          $0.instanceID = instance
          $0.periods = periods
        }
      ).order ?? .init()
    }
    return try await self.pay(created)
  }

  /// The customer changes the instance's plan or quantity: a CHANGE order, paid when it
  /// costs something (a downgrade is paid as it is made).
  public func change(_ customer: String, instance: String, plan: String = "", quantity: UInt32 = 0) async throws
    -> Nest_Order_V1_Order
  {
    let created = try await self.platform.orders(as: .customer, customer) {
      try await $0.createChangeOrder(
        .with {
          $0.instanceID = instance
          $0.planID = plan
          $0.quantity = quantity
        }
      ).order ?? .init()
    }
    return created.status == .created ? try await self.pay(created) : created
  }

  /// The customer turns auto-renew on or off.
  public func setAutoRenew(_ customer: String, instance: String, _ on: Bool) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await self.platform.entitlement(as: .customer, customer) {
      try await $0.setAutoRenew(
        .with {
          $0.instanceID = instance
          $0.autoRenew = on
        }
      ).instance ?? .init()
    }
  }

  /// The customer pays `order` the amount it was created at.
  public func pay(_ order: Nest_Order_V1_Order, clientToken: String = "") async throws -> Nest_Order_V1_Order {
    try await self.platform.orders(as: .customer, order.buyer?.accountID ?? "") {
      try await self.pay(order, clientToken: clientToken, through: $0)
    }
  }

  private func pay(
    _ order: Nest_Order_V1_Order, clientToken: String,
    through orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol
  ) async throws -> Nest_Order_V1_Order {
    try await orders.payOrder(
      .with {
        $0.orderID = order.id
        $0.paymentReference = "payment-\(order.id)"
        $0.expectedAmount = order.price?.amount ?? .init()
        $0.clientToken = clientToken.isEmpty ? "" : "pay-\(clientToken)"
      }
    ).order ?? .init()
  }

  /// The order as an operator sees it once `done` holds for it (FULFILLED and every row
  /// delivered, by default); the last answer when `timeout` passes.
  public func waitForOrder(
    _ id: String, timeout: Duration = .seconds(60),
    until done: @Sendable (Nest_Order_V1_GetOrderResponse) -> Bool = {
      ($0.order?.status == .fulfilled || $0.order?.status == .refunded) && $0.order?.delivery?.pending == 0
    }
  ) async throws -> Nest_Order_V1_GetOrderResponse {
    let deadline = ContinuousClock.now + timeout
    while true {
      let response = try await self.platform.orders(as: .operator, self.operatorID) {
        try await $0.getOrder(.with { $0.orderID = id })
      }
      if done(response) || ContinuousClock.now >= deadline { return response }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  /// An account's balance in the price list's currency.
  public func balance(_ kind: Nest_Settlement_V1_AccountKind, _ account: String) async throws -> Int64 {
    let balance = try await self.platform.settlement(as: .operator, self.operatorID) {
      try await $0.getBalance(
        .with {
          $0.account = .with {
            $0.kind = kind
            $0.accountID = account
          }
        }
      ).balance ?? .init()
    }
    return balance.amounts.first { $0.currency == self.prices.currency }?.amountMinor ?? 0
  }

  /// The ISV issues the statement of its pair's OPEN obligations up to now and confirms it
  /// settled.
  public func settleOffline(isv: String, distributor: String, reference: String) async throws
    -> Nest_Settlement_V1_Statement
  {
    try await self.platform.settlement(as: .isv, isv) { settlement in
      let issued = try await settlement.issueStatement(
        .with {
          $0.distributorID = distributor
          $0.periodEndUnixMs = NestClock.system.nowUnixMs()
        })
      return try await settlement.confirmStatementSettled(
        .with {
          $0.statementID = issued.statement?.id ?? ""
          $0.externalReference = reference
        }
      ).statement ?? .init()
    }
  }

  /// Settlement's Reconcile, with orders and instances.
  public func reconcile() async throws -> Nest_Settlement_V1_ReconcileResponse {
    try await self.platform.settlement(as: .operator, self.operatorID) { try await $0.reconcile(.init()) }
  }
}
