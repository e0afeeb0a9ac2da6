// The platform under load while services die: SIGKILL at random moments (nothing paid is
// lost or doubled), and SIGTERM in turn (clients that retry UNAVAILABLE see no other error).
// The sizes come from NEST_CHAOS_ORDERS and NEST_CHAOS_KILLS; CI runs the short version,
// scripts/chaos the long one.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestProto
import NestProtoTesting
import NestScenarios
import NestServiceKit
import NestTransport
import Testing

/// After a SIGKILL a call in flight may end in any of these; each is safe to retry with the
/// same client_token.
let afterKill: Set<RPCError.Code> = [.unavailable, .deadlineExceeded, .cancelled, .unknown]

/// `body` until it succeeds, retrying the codes in `retryOn` for up to two minutes; any other
/// error is added to `failures`.
func retrying<R: Sendable>(
  failures: NIOLockedValueBox<[String]>, retryOn transient: Set<RPCError.Code>, _ what: String,
  _ body: () async throws -> R
) async -> R? {
  let deadline = ContinuousClock.now + .seconds(120)
  while ContinuousClock.now < deadline {
    do {
      return try await body()
    } catch let error as RPCError where transient.contains(error.code) {
      try? await Task.sleep(for: .milliseconds(50))
    } catch {
      failures.withLockedValue { $0.append("\(what): \(error)") }
      return nil
    }
  }
  failures.withLockedValue { $0.append("\(what): still failing after two minutes") }
  return nil
}

/// Creates and pays orders `indices` of `product` with fixed client tokens, `workers` at a time.
func load(
  _ cluster: ServiceCluster, _ setup: Setup, product: String, indices: Range<Int>, workers: Int,
  retryOn transient: Set<RPCError.Code>, failures: NIOLockedValueBox<[String]>
) async -> [String] {
  await withTaskGroup(of: [String].self) { group in
    for worker in 0..<workers {
      group.addTask {
        var ids: [String] = []
        for index in indices where index % workers == worker {
          let customer = orders(cluster, as: .customer, setup.customer)
          guard
            let order = await retrying(
              failures: failures, retryOn: transient, "create \(index)",
              {
                try await customer {
                  try await $0.createOrder(
                    .with {
                      $0.clientToken = "create-\(index)"
                      $0.productID = product
                      $0.planID = "monthly"
                      $0.quantity = 1
                      $0.periods = 1
                    }
                  ).order!
                }
              })
          else { continue }
          let paid = await retrying(failures: failures, retryOn: transient, "pay \(index)") {
            try await customer {
              try await $0.payOrder(
                .with {
                  $0.clientToken = "pay-\(index)"
                  $0.orderID = order.id
                  $0.paymentReference = "psp-\(index)"
                })
            }
          }
          if paid != nil { ids.append(order.id) }
        }
        return ids
      }
    }
    return await group.reduce(into: []) { $0 += $1 }
  }
}

/// Waits until every customer order is FULFILLED with nothing pending, then checks that each
/// was sold once (with its linked sale), has one instance, and that the money is exact.
func verifyExactlyOnce(_ cluster: ServiceCluster, _ setup: Setup, paid: [String]) async throws {
  var all: [Nest_Order_V1_Order] = []
  let done = try await eventually(timeout: .seconds(180)) {
    all = try await orders(cluster, as: .operator, "op") { client in
      try await Pages.all { token in
        let page = try await client.listOrders(
          .with {
            $0.page = .with {
              $0.pageSize = 500; $0.pageToken = token
            }
          })
        return (page.orders, page.page?.nextPageToken ?? "")
      }
    }
    return all.allSatisfy { $0.status == .fulfilled && $0.delivery?.pending == 0 }
  }
  #expect(done, "\(all.filter { $0.status != .fulfilled }.count) orders not fulfilled")
  let customerOrders = all.filter { $0.kind == .customer }
  #expect(customerOrders.count == paid.count, "orders created: \(customerOrders.count), paid: \(paid.count)")
  #expect(Set(customerOrders.map(\.id)) == Set(paid))
  #expect(all.filter { $0.kind == .linked }.count == paid.count)
  let instances = try await entitlement(cluster, as: .operator, "op") { client in
    try await Pages.all { token in
      let page = try await client.listServiceInstances(
        .with {
          $0.page = .with {
            $0.pageSize = 500; $0.pageToken = token
          }
        })
      return (page.instances, page.page?.nextPageToken ?? "")
    }
  }
  #expect(instances.count == paid.count)
  #expect(Set(instances.map(\.orderID)) == Set(paid))
  let reconcile = try await settlement(cluster, as: .operator, "op") {
    try await $0.reconcile(.with { $0.checkOrders = true })
  }
  #expect(reconcile.ok, "\(reconcile.discrepancies.prefix(5))")
  #expect(reconcile.saleCount == UInt64(2 * paid.count))
  let amount = setup.bPrice
  let wholesale = setup.wholesale
  #expect(try await balance(cluster, .customer, setup.customer) == -Int64(paid.count) * amount)
  #expect(
    try await balance(cluster, .distributor, setup.distributor)
      == Int64(paid.count) * (amount - Expected.commission(amount) - wholesale))
  #expect(
    try await balance(cluster, .isv, setup.isv) == Int64(paid.count) * (wholesale - Expected.commission(wholesale)))
  let nestctlReconcile = try nestctl(
    ["reconcile"],
    environment: [
      "NEST_AUTH_SECRET": cluster.secret, "NEST_CATALOG_ADDRESS": "127.0.0.1:\(cluster.ports["catalog"]!)",
      "NEST_ENTITLEMENT_ADDRESS": "127.0.0.1:\(cluster.ports["entitlement"]!)",
      "NEST_ORDER_ADDRESS": "127.0.0.1:\(cluster.ports["order"]!)",
      "NEST_SETTLEMENT_ADDRESS": "127.0.0.1:\(cluster.ports["settlement"]!)",
    ])
  #expect(nestctlReconcile.status == 0, "\(nestctlReconcile.stdoutText) \(nestctlReconcile.stderr)")
}

@Suite("Chaos: services killed and restarted under load", .serialized, .timeLimit(.minutes(10)))
struct ChaosTests {
  @Test("SIGKILL random services at random moments during the orders: each paid order fulfilled and sold exactly once")
  func kills() async throws {
    let environment = ProcessInfo.processInfo.environment
    let count = environment["NEST_CHAOS_ORDERS"].flatMap { Int($0) } ?? 200
    let kills = environment["NEST_CHAOS_KILLS"].flatMap { Int($0) } ?? 3
    let spacing = environment["NEST_CHAOS_SPACING_MS"].flatMap { Int($0) } ?? 900
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    let setup = Setup(name: "chaos", aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3)
    let (product, _) = try await prepare(cluster, setup)
    let failures = NIOLockedValueBox<[String]>([])
    var random = SystemRandomNumberGenerator()
    let schedule = (0..<kills).map { _ in
      (
        ["catalog", "entitlement", "settlement", "order"].randomElement(using: &random)!,
        Int.random(in: 100...spacing, using: &random), Int.random(in: 50...500, using: &random)
      )
    }
    let killed = NIOLockedValueBox<[String]>([])
    async let chaos: Void = {
      for (service, before, down) in schedule {
        try? await Task.sleep(for: .milliseconds(before))
        cluster.kill(service)
        killed.withLockedValue { $0.append(service) }
        try? await Task.sleep(for: .milliseconds(down))
        try? await cluster.start(service)
      }
    }()
    let paid = await load(
      cluster, setup, product: product, indices: 0..<count, workers: 8, retryOn: afterKill, failures: failures)
    await chaos
    // Anything the chaos task could not restart comes back now.
    for service in ["catalog", "entitlement", "settlement", "order"] where cluster.pid(service) == 0 {
      try await cluster.start(service)
    }
    #expect(killed.withLockedValue { $0.count } == kills)
    #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0.prefix(5) })")
    #expect(paid.count == count)
    try await verifyExactlyOnce(cluster, setup, paid: paid)
    print("chaos: \(count) orders, killed \(killed.withLockedValue { $0 })")
  }

  @Test("SIGTERM each service in turn during load: retrying UNAVAILABLE, no call fails")
  func gracefulRestarts() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    let setup = Setup(name: "rolling", aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3)
    let (product, _) = try await prepare(cluster, setup)
    let failures = NIOLockedValueBox<[String]>([])
    async let restarts: Void = {
      for service in ["catalog", "entitlement", "settlement", "order"] {
        try? await Task.sleep(for: .milliseconds(300))
        #expect(cluster.stop(service) == 0, "\(service) exits 0 on SIGTERM")
        try? await cluster.start(service)
      }
    }()
    let paid = await load(
      cluster, setup, product: product, indices: 0..<120, workers: 6, retryOn: [.unavailable], failures: failures)
    await restarts
    #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0.prefix(5) })")
    try await verifyExactlyOnce(cluster, setup, paid: paid)
  }
}
