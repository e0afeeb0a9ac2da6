// Nothing is lost when a service is down (docs/design.md §6): orders paid while settlement or
// entitlement is stopped stay visible in the outbox, and once the service is back each order
// is FULFILLED and settled exactly once.
import Foundation
import GRPCCore
import NestProto
import NestProtoTesting
import NestScenarios
import NestTransport
import Testing

/// Creates and pays `count` orders of `product` for `setup`'s customer; returns their ids.
func payMany(_ cluster: ServiceCluster, _ setup: Setup, product: String, count: Int) async throws -> [String] {
  try await orders(cluster, as: .customer, setup.customer) { client in
    var ids: [String] = []
    for index in 0..<count {
      let order = try await client.createOrder(
        .with {
          $0.clientToken = "create-\(index)"
          $0.productID = product
          $0.planID = "monthly"
          $0.quantity = 1
          $0.periods = 1
        }
      ).order!
      let paid = try await client.payOrder(
        .with {
          $0.clientToken = "pay-\(index)"
          $0.orderID = order.id
          $0.paymentReference = "psp-\(index)"
        }
      ).order!
      #expect(paid.status == .paid)
      ids.append(order.id)
    }
    return ids
  }
}

/// The outbox rows not yet acknowledged, once there are `count` and every one of `kind` has
/// been tried and failed.
func failingDeliveries(
  _ cluster: ServiceCluster, atLeast count: Int, failing kind: Nest_Order_V1_DeliveryKind
) async throws -> [Nest_Order_V1_Delivery] {
  var rows: [Nest_Order_V1_Delivery] = []
  let seen = try await eventually(timeout: .seconds(30)) {
    rows = try await orders(cluster, as: .operator, "op") {
      try await $0.listDeliveries(.with { $0.page = .with { $0.pageSize = 500 } }).deliveries
    }
    return rows.count >= count
      && rows.filter { $0.kind == kind }.allSatisfy { $0.attempts > 0 && $0.lastErrorCode != 0 }
  }
  #expect(
    seen,
    "\(rows.count) pending rows, \(rows.filter { $0.attempts == 0 }.count) not yet tried: \(rows.map { "\($0.kind) \($0.attempts) \($0.lastErrorCode) \($0.lastError)" })"
  )
  return rows
}

func saleCount(_ cluster: ServiceCluster, order: String) async throws -> Int {
  try await settlement(cluster, as: .operator, "op") {
    try await $0.listTransactions(
      .with {
        $0.orderID = order
        $0.kind = .sale
      }
    ).transactions.count
  }
}

@Suite("Faults: a service down delays work, never loses it", .serialized, .timeLimit(.minutes(3)))
struct FaultTests {
  @Test("settlement stopped while 20 scenario-3 orders are paid: each is sold exactly once after it returns")
  func settlementDown() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    let setup = Setup(name: "f3", aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3)
    let (product, _) = try await prepare(cluster, setup)
    #expect(cluster.stop("settlement") == 0)
    let ids = try await payMany(cluster, setup, product: product, count: 20)

    // 20 customer sales and 20 linked sales wait, visibly, with the reason.
    let pending = try await failingDeliveries(cluster, atLeast: 40, failing: .recordSale)
    #expect(pending.count == 40)
    #expect(pending.allSatisfy { $0.kind == .recordSale && $0.lastErrorCode == 14 })  // UNAVAILABLE

    try await cluster.start("settlement")
    for id in ids {
      let order = try await settled(cluster, id, as: .operator, "op")
      #expect(order.status == .fulfilled)
      #expect(try await saleCount(cluster, order: id) == 1)
      #expect(try await saleCount(cluster, order: order.linkedOrderIds.first ?? "") == 1)
    }
    let reconcile = try await settlement(cluster, as: .operator, "op") {
      try await $0.reconcile(.with { $0.checkOrders = true })
    }
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    #expect(reconcile.saleCount == 40)
  }

  @Test("entitlement stopped while 20 direct sales are paid: each gets one instance and one sale after it returns")
  func entitlementDown() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    let setup = Setup(name: "fd", aType: .private, aListed: true, bType: nil, scenario: .direct)
    let (product, _) = try await prepare(cluster, setup)
    #expect(cluster.stop("entitlement") == 0)
    let ids = try await payMany(cluster, setup, product: product, count: 20)
    // A payment's rows go out together: each CREATE_INSTANCE fails UNAVAILABLE and waits,
    // while the sale beside it is recorded (settlement is up), once.
    var pending: [Nest_Order_V1_Delivery] = []
    let onlyInstancesWait = try await eventually(timeout: .seconds(30)) {
      pending = try await failingDeliveries(cluster, atLeast: 20, failing: .createInstance)
      return pending.allSatisfy { $0.kind == .createInstance }
    }
    #expect(onlyInstancesWait, "\(pending.map { "\($0.kind) \($0.attempts) \($0.lastErrorCode)" })")
    #expect(pending.count == 20)
    #expect(pending.allSatisfy { $0.lastErrorCode == 14 })
    for id in ids {
      let order = try await orders(cluster, as: .customer, setup.customer) {
        try await $0.getOrder(.with { $0.orderID = id }).order!
      }
      #expect(order.status == .paid)
      #expect(try await saleCount(cluster, order: id) == 1)
    }

    try await cluster.start("entitlement")
    for id in ids {
      let order = try await settled(cluster, id, as: .customer, setup.customer)
      #expect(order.status == .fulfilled)
      #expect(!order.instanceID.isEmpty)
      #expect(try await saleCount(cluster, order: id) == 1)
    }
    let instances = try await entitlement(cluster, as: .customer, setup.customer) {
      try await $0.listServiceInstances(.with { $0.page = .with { $0.pageSize = 500 } }).instances
    }
    #expect(instances.count == 20)
    #expect(Set(instances.map(\.orderID)) == Set(ids))
    #expect(try await balance(cluster, .customer, setup.customer) == -20 * setup.aPrice)
  }

  @Test("the same client_token twice creates one order and pays it once")
  func clientTokens() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    let setup = Setup(name: "ft", aType: .private, aListed: true, bType: .private, scenario: .scenario1)
    let (product, _) = try await prepare(cluster, setup)
    let customer = orders(cluster, as: .customer, setup.customer)
    let request = Nest_Order_V1_CreateOrderRequest.with {
      $0.clientToken = "checkout-42"
      $0.productID = product
      $0.planID = "monthly"
      $0.quantity = 2
      $0.periods = 1
    }
    let first = try await customer { try await $0.createOrder(request).order! }
    let second = try await customer { try await $0.createOrder(request).order! }
    #expect(first.id == second.id)
    var changed = request
    changed.quantity = 3
    #expect(await status { _ = try await customer { try await $0.createOrder(changed) } } == .alreadyExists)
    let pay = Nest_Order_V1_PayOrderRequest.with {
      $0.clientToken = "pay-42"
      $0.orderID = first.id
      $0.paymentReference = "psp-42"
    }
    _ = try await customer { try await $0.payOrder(pay) }
    _ = try await customer { try await $0.payOrder(pay) }
    let listed = try await customer { try await $0.listOrders(.init()).orders }
    #expect(listed.map(\.id) == [first.id])
    _ = try await settled(cluster, first.id, as: .customer, setup.customer)
    #expect(try await saleCount(cluster, order: first.id) == 1)
    #expect(try await balance(cluster, .customer, setup.customer) == -2 * setup.bPrice)
  }
}
