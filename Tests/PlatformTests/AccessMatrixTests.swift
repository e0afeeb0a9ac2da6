// Every RPC of the four services, called as every kind of caller on party 1's resources, on a
// fresh fixture per RPC: allowed exactly where its declaration (nest/access/v1/access.proto,
// read from the generated NestAccessTable) and the fixture's parties say; PERMISSION_DENIED
// or NOT_FOUND everywhere else. "Allowed" means the call got past access: it succeeded or
// failed for a business reason, never PERMISSION_DENIED, NOT_FOUND or UNAUTHENTICATED.
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import Testing

typealias Catalog = Nest_Catalog_V1_CatalogService.Method
typealias Entitlement = Nest_Entitlement_V1_EntitlementService.Method
typealias Orders = Nest_Order_V1_MarketplaceOrderService.Method
typealias Settlement = Nest_Settlement_V1_SettlementService.Method
typealias Events = Nest_Events_V1_EventsService.Method

struct RPCCase: Sendable, CustomTestStringConvertible {
  var method: MethodDescriptor
  var resource: FixtureResource
  var call: @Sendable (AccessFixture, any ServiceClients) async throws -> Void
  var testDescription: String { self.method.method }

  init(
    _ method: MethodDescriptor, _ resource: FixtureResource,
    _ call: @escaping @Sendable (AccessFixture, any ServiceClients) async throws -> Void
  ) {
    self.method = method
    self.resource = resource
    self.call = call
  }

  var service: NestServiceName {
    switch self.method.service.fullyQualifiedService {
    case NestServiceName.catalog.rpcServiceName: .catalog
    case NestServiceName.entitlement.rpcServiceName: .entitlement
    case NestServiceName.order.rpcServiceName: .order
    case NestServiceName.events.rpcServiceName: .events
    default: .settlement
    }
  }

  /// Whether `caller` may get past access, from the declaration and the fixture's parties.
  func allows(_ caller: Caller, _ declaration: MethodAccess) -> Bool {
    guard declaration.roles.contains(caller.role) else { return false }
    switch caller.role {
    case .service: return declaration.services.contains(caller.subject)
    case .operator: return true
    default: return self.resource.holders(declaration.relation).contains(caller)
    }
  }
}

func money(_ amount: Int64) -> Nest_Common_V1_Money { MoneyMath.money("USD", amount) }
let plans = [
  Nest_Catalog_V1_Plan.with {
    $0.planID = "monthly"
    $0.billingPeriod = .month
    $0.unitPrice = money(9_000)
  }
]

/// A sale of an order nobody paid, as a service records it.
let unpaidSale = directSale("order-nobody-paid", customer: "cust-1", isv: "isv-1", amount: 100)

/// An instance for an order the platform never took, as a service asks for it.
func instanceFromElsewhere(_ f: AccessFixture) -> Nest_Entitlement_V1_CreateServiceInstanceRequest {
  .with {
    $0.orderID = "order-from-elsewhere"
    $0.serviceID = f.b.id
    $0.customerID = "cust-1"
    $0.quantity = 1
    $0.expiry = .expiresAtUnixMs(0)
    $0.resolution = .with {
      $0.serviceID = f.b.id
      $0.scenario = .scenario2
      $0.accessMode = .logonURL
    }
  }
}

let rpcCases: [RPCCase] = [
  // MARK: CatalogService
  RPCCase(Catalog.CreateService.descriptor, .none) { _, c in
    _ = try await c.catalog.createService(
      .with {
        $0.name = "New"
        $0.type = .private
        $0.deploymentPackage = .with {
          $0.artifactRef = "oci://new:1"
          $0.checksumSha256 = String(repeating: "ab", count: 32)
        }
      })
  },
  RPCCase(Catalog.CreateDerivedService.descriptor, .none) { f, c in
    _ = try await c.catalog.createDerivedService(
      .with {
        $0.baseServiceID = f.a.id
        $0.name = "Another B"
        $0.type = .fullyManaged
      })
  },
  RPCCase(Catalog.CreateServiceVersion.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.createServiceVersion(.with { $0.serviceID = f.b.id })
  },
  RPCCase(Catalog.PublishService.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.publishService(
      .with {
        $0.serviceID = f.b.id
        $0.versionID = f.b.defaultVersionID
      })
  },
  RPCCase(Catalog.TakeServiceOffline.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.takeServiceOffline(.with { $0.serviceID = f.b.id })
  },
  RPCCase(Catalog.GetService.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.getService(.with { $0.serviceID = f.b.id })
  },
  RPCCase(Catalog.ListServices.descriptor, .none) { _, c in _ = try await c.catalog.listServices(.init()) },
  RPCCase(Catalog.EnableDistribution.descriptor, .serviceA) { f, c in
    _ = try await c.catalog.enableDistribution(.with { $0.serviceID = f.a.id })
  },
  RPCCase(Catalog.DisableDistribution.descriptor, .serviceA) { f, c in
    _ = try await c.catalog.disableDistribution(.with { $0.serviceID = f.a.id })
  },
  RPCCase(Catalog.ListOnMarketplace.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.listOnMarketplace(
      .with {
        $0.serviceID = f.b.id
        $0.plans = plans
      })
  },
  RPCCase(Catalog.DelistFromMarketplace.descriptor, .productB) { f, c in
    _ = try await c.catalog.delistFromMarketplace(.with { $0.productID = f.b.productID })
  },
  RPCCase(Catalog.GetProduct.descriptor, .productB) { f, c in
    _ = try await c.catalog.getProduct(.with { $0.key = .productID(f.b.productID) })
  },
  RPCCase(Catalog.GetSaleTerms.descriptor, .none) { f, c in
    _ = try await c.catalog.getSaleTerms(.with { $0.productID = f.b.productID })
  },
  RPCCase(Catalog.ListProducts.descriptor, .none) { _, c in _ = try await c.catalog.listProducts(.init()) },
  RPCCase(Catalog.ResolveScenario.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.resolveScenario(.with { $0.serviceID = f.b.id })
  },
  RPCCase(Catalog.SetFulfilmentEndpoint.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.setFulfilmentEndpoint(
      .with {
        $0.serviceID = f.b.id
        $0.url = "https://provider.example/fulfil"
      })
  },
  RPCCase(Catalog.GetFulfilmentEndpoint.descriptor, .serviceB) { f, c in
    _ = try await c.catalog.getFulfilmentEndpoint(.with { $0.serviceID = f.b.id })
  },

  // MARK: EntitlementService
  RPCCase(Entitlement.ApplyForDistribution.descriptor, .none) { f, c in
    _ = try await c.entitlement.applyForDistribution(.with { $0.baseServiceID = f.a.id })
  },
  RPCCase(Entitlement.ApproveDistribution.descriptor, .authorization) { f, c in
    _ = try await c.entitlement.approveDistribution(
      .with {
        $0.authorizationID = f.authorization.id
        $0.terms = .with { $0.wholesalePrice = money(1) }
      })
  },
  RPCCase(Entitlement.RejectDistribution.descriptor, .authorization) { f, c in
    _ = try await c.entitlement.rejectDistribution(
      .with {
        $0.authorizationID = f.authorization.id
        $0.reason = "no"
      })
  },
  RPCCase(Entitlement.GrantDistribution.descriptor, .serviceA) { f, c in
    _ = try await c.entitlement.grantDistribution(
      .with {
        $0.baseServiceID = f.a.id
        $0.distributorID = "dist-3"
        $0.terms = .with { $0.wholesalePrice = money(1) }
      })
  },
  RPCCase(Entitlement.RevokeDistribution.descriptor, .authorization) { f, c in
    _ = try await c.entitlement.revokeDistribution(
      .with {
        $0.authorizationID = f.authorization.id
        $0.reason = "ended"
      })
  },
  RPCCase(Entitlement.GetDistributionAuthorization.descriptor, .authorization) { f, c in
    _ = try await c.entitlement.getDistributionAuthorization(.with { $0.authorizationID = f.authorization.id })
  },
  RPCCase(Entitlement.ListDistributionAuthorizations.descriptor, .none) { _, c in
    _ = try await c.entitlement.listDistributionAuthorizations(.init())
  },
  RPCCase(Entitlement.CheckDistribution.descriptor, .authorization) { f, c in
    _ = try await c.entitlement.checkDistribution(
      .with {
        $0.baseServiceID = f.a.id
        $0.distributorID = "dist-1"
      })
  },
  RPCCase(Entitlement.CreateServiceInstance.descriptor, .none) { f, c in
    _ = try await c.entitlement.createServiceInstance(instanceFromElsewhere(f))
  },
  RPCCase(Entitlement.CreateServiceInstances.descriptor, .none) { f, c in
    _ = try await c.entitlement.createServiceInstances(.with { $0.instances = [instanceFromElsewhere(f)] })
  },
  RPCCase(Entitlement.GetServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.getServiceInstance(.with { $0.key = .instanceID(f.instance.id) })
  },
  RPCCase(Entitlement.ListServiceInstances.descriptor, .none) { _, c in
    _ = try await c.entitlement.listServiceInstances(.init())
  },
  RPCCase(Entitlement.RenewServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.renewServiceInstance(
      .with {
        $0.instanceID = f.instance.id
        $0.renewal = .periods(1)
      })
  },
  RPCCase(Entitlement.ChangeServiceInstance.descriptor, .none) { f, c in
    _ = try await c.entitlement.changeServiceInstance(
      .with {
        $0.instanceID = f.instance.id
        $0.orderID = "order-elsewhere"
        $0.plan = .with { $0.planID = "monthly" }
        $0.quantity = 2
        $0.immediate = true
        $0.expectedPlanID = "another"
      })
  },
  RPCCase(Entitlement.SetAutoRenew.descriptor, .instance) { f, c in
    _ = try await c.entitlement.setAutoRenew(
      .with {
        $0.instanceID = f.instance.id
        $0.autoRenew = true
      })
  },
  RPCCase(Entitlement.UpgradeServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.upgradeServiceInstance(
      .with {
        $0.instanceID = f.instance.id
        $0.dryRun = true
      })
  },
  RPCCase(Entitlement.RollbackServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.rollbackServiceInstance(.with { $0.instanceID = f.instance.id })
  },
  RPCCase(Entitlement.SetAutoUpgrade.descriptor, .instance) { f, c in
    _ = try await c.entitlement.setAutoUpgrade(
      .with {
        $0.instanceID = f.instance.id
        $0.autoUpgrade = true
      })
  },
  RPCCase(Entitlement.SuspendServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.suspendServiceInstance(.with { $0.instanceID = f.instance.id })
  },
  RPCCase(Entitlement.ResumeServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.resumeServiceInstance(.with { $0.instanceID = f.instance.id })
  },
  RPCCase(Entitlement.ReleaseServiceInstance.descriptor, .instance) { f, c in
    _ = try await c.entitlement.releaseServiceInstance(.with { $0.instanceID = f.instance.id })
  },
  RPCCase(Entitlement.CheckLicense.descriptor, .none) { _, c in
    _ = try await c.entitlement.checkLicense(.with { $0.license = .licenseID("lic_unknown") })
  },
  RPCCase(Entitlement.RequestResourcePermission.descriptor, .instance) { f, c in
    _ = try await c.entitlement.requestResourcePermission(
      .with {
        $0.instanceID = f.instance.id
        $0.operation = "ecs:Stop"
        $0.reason = "why"
        $0.requestedDurationSeconds = 60
      })
  },
  RPCCase(Entitlement.DecidePermissionRequest.descriptor, .permissionRequest) { f, c in
    _ = try await c.entitlement.decidePermissionRequest(
      .with {
        $0.requestID = f.permissionRequest.id
        $0.decision = .approve
      })
  },
  RPCCase(Entitlement.ListPermissionRequests.descriptor, .none) { _, c in
    _ = try await c.entitlement.listPermissionRequests(.init())
  },
  RPCCase(Entitlement.CheckResourcePermission.descriptor, .instance) { f, c in
    _ = try await c.entitlement.checkResourcePermission(
      .with {
        $0.instanceID = f.instance.id
        $0.requesterID = "cust-1"
        $0.operation = "ecs:RebootInstance"
      })
  },
  RPCCase(Entitlement.ReserveInstanceSlot.descriptor, .none) { f, c in
    _ = try await c.entitlement.reserveInstanceSlot(
      .with {
        $0.orderID = "order-elsewhere"
        $0.authorizationID = f.authorization.id
      })
  },
  RPCCase(Entitlement.ReleaseInstanceSlot.descriptor, .none) { _, c in
    _ = try await c.entitlement.releaseInstanceSlot(.with { $0.orderID = "order-elsewhere" })
  },

  // MARK: MarketplaceOrderService
  RPCCase(Orders.CreateOrder.descriptor, .none) { f, c in
    _ = try await c.orders.createOrder(
      .with {
        $0.productID = f.b.productID
        $0.planID = "monthly"
        $0.quantity = 1
        $0.periods = 1
      })
  },
  RPCCase(Orders.PayOrder.descriptor, .order) { f, c in
    _ = try await c.orders.payOrder(
      .with {
        $0.orderID = f.order.id
        $0.paymentReference = "again"
      })
  },
  RPCCase(Orders.CancelOrder.descriptor, .order) { f, c in
    _ = try await c.orders.cancelOrder(.with { $0.orderID = f.order.id })
  },
  RPCCase(Orders.RefundOrder.descriptor, .order) { f, c in
    _ = try await c.orders.refundOrder(
      .with {
        $0.orderID = f.order.id
        $0.reason = "asked"
      })
  },
  RPCCase(Orders.GetOrder.descriptor, .order) { f, c in
    _ = try await c.orders.getOrder(.with { $0.orderID = f.order.id })
  },
  RPCCase(Orders.ListOrders.descriptor, .none) { _, c in _ = try await c.orders.listOrders(.init()) },
  RPCCase(Orders.CreateRenewalOrder.descriptor, .instance) { f, c in
    _ = try await c.orders.createRenewalOrder(.with { $0.instanceID = f.instance.id })
  },
  RPCCase(Orders.CreateChangeOrder.descriptor, .instance) { f, c in
    _ = try await c.orders.createChangeOrder(
      .with {
        $0.instanceID = f.instance.id
        $0.quantity = 2
      })
  },
  RPCCase(Orders.PlaceRenewal.descriptor, .none) { f, c in
    _ = try await c.orders.placeRenewal(
      .with {
        $0.instanceID = f.instance.id
        $0.termEndsAtUnixMs = 1
      })
  },
  RPCCase(Orders.ListDeliveries.descriptor, .none) { _, c in _ = try await c.orders.listDeliveries(.init()) },

  // MARK: SettlementService
  RPCCase(Settlement.RecordSale.descriptor, .none) { _, c in _ = try await c.settlement.recordSale(unpaidSale) },
  RPCCase(Settlement.RecordSales.descriptor, .none) { _, c in
    _ = try await c.settlement.recordSales(.with { $0.sales = [unpaidSale] })
  },
  RPCCase(Settlement.RecordRefund.descriptor, .none) { f, c in
    _ = try await c.settlement.recordRefund(.with { $0.orderID = f.order.id })
  },
  RPCCase(Settlement.RecordUsage.descriptor, .instance) { f, c in
    // A batch is answered per record: UNKNOWN_INSTANCE is the refusal of a record for an
    // instance the caller may not report on (the contract's NOT_FOUND, per record).
    let response = try await c.settlement.recordUsage(
      .with {
        $0.records = [
          .with {
            $0.recordID = "usage-\(UUID())"
            $0.instanceID = f.instance.id
            $0.meteredItem = "cpu"
            $0.cost = money(5)
            $0.recordedAtUnixMs = 1
          }
        ]
      })
    if response.results.first?.result == .unknownInstance {
      throw RPCError(code: .notFound, message: response.results[0].message)
    }
  },
  RPCCase(Settlement.GetBalance.descriptor, .customerAccount) { _, c in
    _ = try await c.settlement.getBalance(
      .with {
        $0.account = .with {
          $0.kind = .customer
          $0.accountID = "cust-1"
        }
      })
  },
  RPCCase(Settlement.ListTransactions.descriptor, .customerAccount) { _, c in
    _ = try await c.settlement.listTransactions(
      .with {
        $0.account = .with {
          $0.kind = .customer
          $0.accountID = "cust-1"
        }
      })
  },
  RPCCase(Settlement.ListObligations.descriptor, .none) { _, c in _ = try await c.settlement.listObligations(.init()) },
  RPCCase(Settlement.IssueStatement.descriptor, .statement) { _, c in
    _ = try await c.settlement.issueStatement(
      .with {
        $0.isvID = "isv-1"
        $0.distributorID = "dist-1"
        $0.periodEndUnixMs = NestClock.system.nowUnixMs()
      })
  },
  RPCCase(Settlement.ConfirmStatementSettled.descriptor, .statement) { f, c in
    _ = try await c.settlement.confirmStatementSettled(
      .with {
        $0.statementID = f.statement.id
        $0.externalReference = "bank-1"
      })
  },
  RPCCase(Settlement.DisputeStatement.descriptor, .statement) { f, c in
    _ = try await c.settlement.disputeStatement(
      .with {
        $0.statementID = f.statement.id
        $0.reason = "wrong"
      })
  },
  RPCCase(Settlement.GetStatement.descriptor, .statement) { f, c in
    _ = try await c.settlement.getStatement(.with { $0.statementID = f.statement.id })
  },
  RPCCase(Settlement.ListStatements.descriptor, .none) { _, c in _ = try await c.settlement.listStatements(.init()) },
  RPCCase(Settlement.Reconcile.descriptor, .none) { _, c in _ = try await c.settlement.reconcile(.init()) },
  RPCCase(Events.PublishEvents.descriptor, .none) { _, c in _ = try await c.events.publishEvents(.init()) },
  RPCCase(Events.ListEvents.descriptor, .none) { _, c in _ = try await c.events.listEvents(.init()) },
  RPCCase(Events.CreateWebhook.descriptor, .none) { _, c in
    _ = try await c.events.createWebhook(.with { $0.url = "https://partner.invalid/other" })
  },
  RPCCase(Events.ListWebhooks.descriptor, .none) { _, c in _ = try await c.events.listWebhooks(.init()) },
  // Each caller tries a new webhook of dist-1's: an allowed deletion leaves the next caller one.
  RPCCase(Events.DeleteWebhook.descriptor, .webhook) { f, c in
    let webhook = try await AccessFixture.webhook(f.platform)
    _ = try await c.events.deleteWebhook(.with { $0.webhookID = webhook.id })
  },
  RPCCase(Events.RotateWebhookSecret.descriptor, .webhook) { f, c in
    _ = try await c.events.rotateWebhookSecret(.with { $0.webhookID = f.webhook.id })
  },
  RPCCase(Events.PauseWebhook.descriptor, .webhook) { f, c in
    _ = try await c.events.pauseWebhook(.with { $0.webhookID = f.webhook.id })
  },
  RPCCase(Events.ResumeWebhook.descriptor, .webhook) { f, c in
    _ = try await c.events.resumeWebhook(.with { $0.webhookID = f.webhook.id })
  },
  RPCCase(Events.RedeliverEvent.descriptor, .webhook) { f, c in
    _ = try await c.events.redeliverEvent(
      .with {
        $0.webhookID = f.webhook.id
        $0.eventID = f.event.id
      })
  },
  RPCCase(Events.ListWebhookDeliveries.descriptor, .webhook) { f, c in
    _ = try await c.events.listWebhookDeliveries(.with { $0.webhookID = f.webhook.id })
  },
]

/// Every RPC of the five services, from the generated stubs.
let everyMethod: [MethodDescriptor] =
  Catalog.descriptors + Entitlement.descriptors + Orders.descriptors + Settlement.descriptors + Events.descriptors

@Suite("Access matrix", .serialized, .timeLimit(.minutes(5)))
struct AccessMatrixTests {
  @Test("every RPC declares who may call it, and the matrix calls every RPC")
  func complete() {
    let declared = Set(NestAccessTable.methods.keys)
    for method in everyMethod {
      #expect(declared.contains(method.fullyQualifiedMethod), "\(method) declares no access")
    }
    #expect(
      Set(rpcCases.map(\.method.fullyQualifiedMethod)) == Set(everyMethod.map(\.fullyQualifiedMethod)),
      "every RPC has one case")
    #expect(rpcCases.count == Set(rpcCases.map(\.method.fullyQualifiedMethod)).count)
    // Only health and reflection are open: the standard ones for standard tools.
    #expect(
      NestAccessTable.methods.filter { $0.value.open }.keys.sorted() == [
        "grpc.health.v1.Health/Check", "grpc.health.v1.Health/List", "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "nest.health.v1.Health/Check",
      ])
  }

  @Test("each caller is allowed exactly where the declaration and the fixture's parties say", arguments: rpcCases)
  func matrix(_ rpc: RPCCase) async throws {
    let declaration = try #require(NestAccessTable.methods[rpc.method.fullyQualifiedMethod])
    let fixture = try await AccessFixture.make()
    // Refused callers first: an allowed caller's change (a refund, say) cannot hide a refusal.
    let callers = Caller.all.filter { !rpc.allows($0, declaration) } + Caller.all.filter { rpc.allows($0, declaration) }
    for caller in callers {
      let allowed = rpc.allows(caller, declaration)
      let result = await code { try await fixture.call(rpc.service, as: caller) { try await rpc.call(fixture, $0) } }
      if allowed {
        #expect(
          result != .permissionDenied && result != .notFound && result != .unauthenticated,
          "\(rpc.method.method) by \(caller): refused \(result.map { "\($0)" } ?? "")")
      } else {
        #expect(
          result == .permissionDenied || result == .notFound,
          "\(rpc.method.method) by \(caller): not refused (\(result.map { "\($0)" } ?? "OK"))")
      }
    }
    await fixture.platform.stop()
  }

  @Test("every RPC but health refuses a call without a token, or with a forged one")
  func unauthenticated() async throws {
    let fixture = try await AccessFixture.make()
    for rpc in rpcCases {
      let none = await code {
        try await fixture.platform.withClient(rpc.service, token: "") { try await rpc.call(fixture, $0) }
      }
      #expect(none == .unauthenticated, "\(rpc.method.method) without a token")
      let forged = await code {
        try await fixture.platform.withClient(rpc.service, token: "eyJhbGciOiJIUzI1NiJ9.e30.forged") {
          try await rpc.call(fixture, $0)
        }
      }
      #expect(forged == .unauthenticated, "\(rpc.method.method) with a forged token")
    }
    await fixture.platform.stop()
  }
}
