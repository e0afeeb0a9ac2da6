// Every RPC of marketplace-order and settlement, called through the real transport and auth
// by every kind of caller against one fixture: allowed exactly where DESIGN section 8 says;
// PERMISSION_DENIED or NOT_FOUND elsewhere. (Catalog and entitlement: EntitlementTests.)
import Foundation
import GRPCCore
import NestProto
import NestProtoTesting
import NestTestKit
import NestTransport
import Testing

/// A scenario-2 sale, fulfilled: isv-1's PRIVATE A, dist-1's FULLY_MANAGED B, cust-1's paid
/// order and its instance, and an ISSUED statement of the offline obligation.
struct SaleFixture: Sendable {
  var platform: NestTestPlatform
  var product: String
  var order: String
  var instance: String
  var statement: String

  static func make() async throws -> SaleFixture {
    let platform = try await NestTestPlatform.start()
    let usd = { (amount: Int64) in
      Nest_Common_V1_Money.with {
        $0.currency = "USD"; $0.amountMinor = amount
      }
    }
    let plan = { (amount: Int64) in
      Nest_Catalog_V1_Plan.with {
        $0.planID = "monthly"; $0.billingPeriod = .month; $0.unitPrice = usd(amount)
      }
    }
    let a = try await platform.catalog(as: .isv, "isv-1") { catalog in
      let created = try await catalog.createService(
        .with {
          $0.name = "A"
          $0.type = .private
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://a:1"; $0.checksumSha256 = String(repeating: "ab", count: 32)
          }
        })
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id; $0.versionID = created.version!.id
        })
      _ = try await catalog.enableDistribution(.with { $0.serviceID = created.service!.id })
      return created.service!.id
    }
    _ = try await platform.entitlement(as: .isv, "isv-1") {
      try await $0.grantDistribution(
        .with {
          $0.baseServiceID = a
          $0.distributorID = "dist-1"
          $0.terms = .with { $0.wholesalePrice = usd(500) }
        })
    }
    let product = try await platform.catalog(as: .distributor, "dist-1") { catalog in
      let created = try await catalog.createDerivedService(
        .with {
          $0.baseServiceID = a; $0.name = "B"; $0.type = .fullyManaged
        })
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id; $0.versionID = created.version!.id
        })
      return try await catalog.listOnMarketplace(
        .with {
          $0.serviceID = created.service!.id; $0.plans = [plan(1_000)]
        }
      )
      .product!.id
    }
    let order = try await platform.orders(as: .customer, "cust-1") { orders in
      let order = try await orders.createOrder(
        .with {
          $0.productID = product; $0.planID = "monthly"; $0.quantity = 1; $0.periods = 1
        }
      ).order!
      _ = try await orders.payOrder(
        .with {
          $0.orderID = order.id; $0.paymentReference = "psp-1"
        })
      return order.id
    }
    var instance = ""
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
      let current = try await platform.orders(as: .operator, "op") {
        try await $0.getOrder(.with { $0.orderID = order }).order!
      }
      if current.status == .fulfilled && current.delivery?.pending == 0 {
        instance = current.instanceID
        break
      }
      try await Task.sleep(for: .milliseconds(20))
    }
    let statement = try await platform.settlement(as: .isv, "isv-1") {
      try await $0.issueStatement(
        .with {
          $0.distributorID = "dist-1"; $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        }
      ).statement!.id
    }
    return SaleFixture(platform: platform, product: product, order: order, instance: instance, statement: statement)
  }
}

struct ServiceCase: Sendable, CustomTestStringConvertible {
  var rpc: String
  var allowed: Set<Who>
  var call: @Sendable (SaleFixture, Nest_Common_V1_Role, String) async throws -> Void
  var testDescription: String { self.rpc }

  init(
    _ rpc: String, _ allowed: Set<Who>,
    _ call: @escaping @Sendable (SaleFixture, Nest_Common_V1_Role, String) async throws -> Void
  ) {
    self.rpc = rpc
    self.allowed = allowed
    self.call = call
  }
}

let everyone = Set(Who.allCases)
let customerAccount = Nest_Settlement_V1_AccountRef.with {
  $0.kind = .customer; $0.accountID = "cust-1"
}

let serviceCases: [ServiceCase] = [
  // MARK: MarketplaceOrderService
  ServiceCase("CreateOrder", [.cust1, .cust2]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) {
      try await $0.createOrder(
        .with {
          $0.productID = f.product; $0.planID = "monthly"; $0.quantity = 1; $0.periods = 1
        })
    }
  },
  ServiceCase("PayOrder", [.cust1]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) {
      try await $0.payOrder(
        .with {
          $0.orderID = f.order; $0.paymentReference = "again"
        })
    }
  },
  ServiceCase("CancelOrder", [.cust1]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) { try await $0.cancelOrder(.with { $0.orderID = f.order }) }
  },
  ServiceCase("RefundOrder", [.dist1, .op]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) {
      try await $0.refundOrder(
        .with {
          $0.orderID = f.order; $0.reason = "test"
        })
    }
  },
  ServiceCase("GetOrder", [.cust1, .dist1, .op, .svc]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) { try await $0.getOrder(.with { $0.orderID = f.order }) }
  },
  ServiceCase("ListOrders", everyone) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) { try await $0.listOrders(.init()) }
  },
  ServiceCase("ListDeliveries", [.op]) { f, role, subject in
    _ = try await f.platform.orders(as: role, subject) { try await $0.listDeliveries(.init()) }
  },

  // MARK: SettlementService
  ServiceCase("RecordSale", [.svc]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.recordSale(
        .with {
          $0.orderID = "ord-matrix"
          $0.kind = .customerOrder
          $0.buyer = .with {
            $0.role = .customer; $0.accountID = "cust-2"
          }
          $0.seller = .with {
            $0.role = .isv; $0.accountID = "isv-2"
          }
          $0.amount = .with {
            $0.currency = "USD"; $0.amountMinor = 10
          }
          $0.scenario = .with {
            $0.scenario = .direct; $0.isvID = "isv-2"
          }
        })
    }
  },
  ServiceCase("RecordRefund", [.svc]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) { try await $0.recordRefund(.with { $0.orderID = f.order }) }
  },
  ServiceCase("RecordUsage", [.svc, .isv1, .isv2, .dist1, .dist2, .cust1, .cust2]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.recordUsage(
        .with {
          $0.records = [
            .with {
              $0.recordID = "u-\(subject)"
              $0.instanceID = f.instance
              $0.meteredItem = "cpu"
              $0.cost = .with {
                $0.currency = "USD"; $0.amountMinor = 1
              }
              $0.recordedAtUnixMs = 1
            }
          ]
        })
    }
  },
  ServiceCase("GetBalance", [.cust1, .op]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.getBalance(.with { $0.account = customerAccount })
    }
  },
  ServiceCase("ListTransactions", [.cust1, .op]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.listTransactions(.with { $0.account = customerAccount })
    }
  },
  ServiceCase("ListObligations", [.isv1, .isv2, .dist1, .dist2, .op]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) { try await $0.listObligations(.init()) }
  },
  ServiceCase("IssueStatement", [.isv1, .dist1, .op]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.issueStatement(
        .with {
          $0.isvID = "isv-1"
          $0.distributorID = "dist-1"
          $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        })
    }
  },
  ServiceCase("ConfirmStatementSettled", [.isv1]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.confirmStatementSettled(
        .with {
          $0.statementID = f.statement; $0.externalReference = "bank-1"
        })
    }
  },
  ServiceCase("DisputeStatement", [.dist1]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) {
      try await $0.disputeStatement(
        .with {
          $0.statementID = f.statement; $0.reason = "short"
        })
    }
  },
  ServiceCase("Reconcile", [.op]) { f, role, subject in
    _ = try await f.platform.settlement(as: role, subject) { try await $0.reconcile(.init()) }
  },
]

@Suite("Role matrix: marketplace-order and settlement", .timeLimit(.minutes(3)))
struct OrderSettlementRoleMatrixTests {
  @Test("every RPC is listed once")
  func complete() {
    let orders = Nest_Order_V1_MarketplaceOrderService.Method.descriptors.map(\.method)
    let settlement = Nest_Settlement_V1_SettlementService.Method.descriptors.map(\.method)
    #expect(serviceCases.map(\.rpc).sorted() == (orders + settlement).sorted())
  }

  @Test("each caller is allowed exactly where DESIGN says", arguments: serviceCases)
  func matrix(_ rpcCase: ServiceCase) async throws {
    let fixture = try await SaleFixture.make()
    for who in Who.order(allowed: rpcCase.allowed) {
      let (role, subject) = who.principal
      var code: RPCError.Code? = nil
      do {
        try await rpcCase.call(fixture, role, subject)
      } catch let error as RPCError {
        code = error.code
      }
      let problem = Who.problem(allowed: rpcCase.allowed.contains(who), code: code)
      #expect(problem == nil, "\(rpcCase.rpc) by \(who.rawValue): \(problem ?? "")")
    }
    await fixture.platform.stop()
  }
}
