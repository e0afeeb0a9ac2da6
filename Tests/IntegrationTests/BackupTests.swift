// Backups as an operator takes them: `nestctl backup` while 200 scenario-3 orders are being
// paid, the platform stopped, `nestctl restore` into a fresh data directory, the platform
// started on the restored set. Nothing acknowledged before the backup is lost, the
// dispatcher finishes what the backup held as pending, and no order is sold twice.
import Foundation
import FoundationNetworking
import GRPCCore
import NIOConcurrencyHelpers
import NestProtoTesting
import NestScenarios
import NestTestKit
import Testing

@Suite("Backups and restore", .serialized, .timeLimit(.minutes(5)))
struct BackupTests {
  static var nestctl: String { Repository.productsDirectory.appendingPathComponent("nestctl").path }

  @Test("a backup under load, restored: nothing acknowledged lost, pending deliveries finish, nothing sold twice")
  func backupUnderLoad() async throws {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID())")
    let backup = work.appendingPathComponent("backup")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }

    let platform = try await NestTestPlatform.start(.processes())
    let local = platform.processes!
    let setup = try await platform.marketplace.setUp(.scenario3, parties: ScenarioParties(.scenario3, run: "bk"))
    let paid = NIOLockedValueBox<[String]>([])
    let customers = 8
    let perCustomer = 25
    let load = Task {
      try await withThrowingTaskGroup(of: Void.self) { group in
        for customer in 0..<customers {
          group.addTask {
            for index in 0..<perCustomer {
              let order = try await platform.marketplace.buy(
                "cust-bk-\(customer)", product: setup.productID, clientToken: "bk-\(customer)-\(index)")
              paid.withLockedValue { $0.append(order.id) }
            }
          }
        }
        try await group.waitForAll()
      }
    }
    // A third of the orders paid, the rest still coming. With settlement stopped for a moment
    // the sales wait in marketplace-order's outbox: back up the other three now, settlement
    // once it is back (later, so it holds whatever the outbox delivers in between).
    #expect(try await eventually(timeout: .seconds(60)) { paid.withLockedValue { $0.count } >= 70 })
    await platform.stop(.settlement)
    // Rows that have failed against the stopped settlement: pending ones that were still on
    // their way when it stopped (a RecordSales call it finished while stopping) could be
    // acknowledged yet, these cannot.
    #expect(
      try await eventually(timeout: .seconds(30)) {
        try await platform.orders(as: .operator, "ops") {
          try await $0.listDeliveries(.with { $0.page = .with { $0.pageSize = 100 } }).deliveries
            .filter { $0.lastErrorCode != 0 }.count >= 5
        }
      })
    let acknowledged = paid.withLockedValue { $0 }
    var arguments = ["--data-dir", platform.directory.path]
    for service in NestServiceName.allCases {
      arguments += ["--\(service.rawValue)-address", "\(local.addresses[service]!)"]
      arguments += ["--admin-address", "\(service.rawValue)=\(local.adminAddresses[service]!)"]
    }
    let three = ["--service", "order", "--service", "entitlement", "--service", "catalog"]
    let taken = try await Task.detached {
      try run([Self.nestctl, "backup", "--to", backup.appendingPathComponent("1").path] + three + arguments)
    }.value
    #expect(taken.status == 0, "\(taken.stdoutText)\(taken.stderr)")
    try await platform.start(.settlement)
    let second = try await Task.detached {
      try run(
        [Self.nestctl, "backup", "--to", backup.appendingPathComponent("2").path, "--service", "settlement"] + arguments
      )
    }.value
    #expect(second.status == 0, "\(second.stdoutText)\(second.stderr)")
    let duringBackup = paid.withLockedValue { $0.count } - acknowledged.count
    try await load.value
    #expect(paid.withLockedValue { $0.count } == customers * perCustomer)
    // An operator's token is required.
    let customerToken = try await platform.token(.customer, "cust-bk-0")
    var request = URLRequest(url: URL(string: "http://\(local.adminAddresses[.order]!)/backup")!)
    request.setValue("Bearer \(customerToken)", forHTTPHeaderField: "authorization")
    #expect((try await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode == 403)
    await platform.stop()

    // What the backup of marketplace-order held as not yet delivered.
    let pending = try run([
      "sqlite3", backup.appendingPathComponent("1/order.sqlite").path,
      "SELECT COUNT(*) FROM deliveries WHERE status = 1",
    ])
    let pendingInBackup = Int(pending.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    #expect(pendingInBackup >= 5, "the backup of marketplace-order holds the sales settlement had not taken")

    // A fresh data directory holding the restored set, and the platform on it.
    let restored = try await NestTestPlatform.start(.processes()) { directory in
      for part in ["1", "2"] {
        let put = try run([
          Self.nestctl, "restore", "--from", backup.appendingPathComponent(part).path, "--data-dir", directory.path,
        ])
        try #require(put.status == 0, "\(put.stdoutText)\(put.stderr)")
      }
    }
    let settled = try await eventually(timeout: .seconds(60)) {
      try await restored.orders(as: .operator, "ops") {
        try await $0.listDeliveries(.with { $0.page = .with { $0.pageSize = 1 } }).deliveries.isEmpty
      }
    }
    #expect(settled, "the restored dispatcher did not finish what was pending")
    let orders = try await restored.orders(as: .operator, "ops") { client in
      try await Pages.all { token in
        let page = try await client.listOrders(
          .with {
            $0.page = .with {
              $0.pageSize = 500
              $0.pageToken = token
            }
          })
        return (page.orders, page.page?.nextPageToken ?? "")
      }
    }
    let byID = Dictionary(uniqueKeysWithValues: orders.map { ($0.id, $0) })
    for id in acknowledged {
      #expect(
        byID[id]?.status == .fulfilled,
        "order \(id) acknowledged before the backup: \(String(describing: byID[id]?.status))")
    }
    let sales = try await restored.settlement(as: .operator, "ops") { client in
      try await Pages.all { token in
        let page = try await client.listTransactions(
          .with {
            $0.kind = .sale
            $0.page = .with {
              $0.pageSize = 500
              $0.pageToken = token
            }
          })
        return (page.transactions, page.page?.nextPageToken ?? "")
      }
    }
    var salesByOrder: [String: Int] = [:]
    for sale in sales {
      if case .orderID(let order)? = sale.source { salesByOrder[order, default: 0] += 1 }
    }
    #expect(salesByOrder.values.allSatisfy { $0 == 1 }, "an order sold more than once")
    for id in acknowledged {
      let linked = byID[id]?.linkedOrderIds ?? []
      #expect(salesByOrder[id] == 1 && linked.allSatisfy { salesByOrder[$0] == 1 }, "order \(id) and its linked order")
    }
    // Settlement's own check: no missing or duplicate sale; sales of orders marketplace-order
    // does not know only for orders paid while the backup ran.
    let ledger = try await restored.marketplace.reconcile()
    let unknown = ledger.discrepancies.filter { $0.kind == .unknownOrder }
    #expect(
      ledger.discrepancies.allSatisfy { $0.kind == .unknownOrder }, "\(ledger.discrepancies.map(\.description))")
    #expect(unknown.allSatisfy { !acknowledged.contains($0.orderID) })
    // Instances of orders the restored marketplace-order does not know: orders paid while the
    // backup ran (entitlement's copy is later than marketplace-order's).
    let instances = try await restored.entitlement(as: .operator, "ops") { client in
      try await Pages.all { token in
        let page = try await client.listServiceInstances(
          .with {
            $0.page = .with {
              $0.pageSize = 500
              $0.pageToken = token
            }
          })
        return (page.instances, page.page?.nextPageToken ?? "")
      }
    }
    // reconcile (like settlement's UNKNOWN_ORDER) compares with the orders marketplace-order
    // knows as paid: an order its copy holds as created, paid after the copy was taken, counts.
    let paidStates: Set<Nest_Order_V1_OrderStatus> = [.paid, .fulfilled, .refunded]
    let orphans = instances.map(\.orderID).filter { id in byID[id].map { !paidStates.contains($0.status) } ?? true }
    #expect(orphans.allSatisfy { !acknowledged.contains($0) })
    // nestctl reconcile says which service is behind, when one is.
    var reconcile = ["reconcile", "--data-dir", restored.directory.path]
    for service in NestServiceName.allCases {
      reconcile += ["--\(service.rawValue)-address", "\(restored.processes!.addresses[service]!)"]
    }
    let report = try await Task.detached { try run([Self.nestctl] + reconcile) }.value
    #expect(
      report.stdoutText.contains("marketplace-order is behind settlement") == !unknown.isEmpty, "\(report.stdoutText)")
    #expect(
      report.stdoutText.contains("marketplace-order is behind entitlement") == !orphans.isEmpty, "\(report.stdoutText)")
    print(
      "backup under load: \(acknowledged.count) orders acknowledged before it, \(duringBackup) paid while it ran, "
        + "\(pendingInBackup) deliveries pending in marketplace-order's copy; restored: \(orders.count) orders, "
        + "\(sales.count) sales, \(unknown.count) sales and \(orphans.count) instances of orders the restored "
        + "marketplace-order does not know")
    print(report.stdoutText)
    await restored.stop()
  }

  @Test(
    "one service restored from an older backup than its peers: nestctl reconcile says it is behind, and what differs")
  func olderSettlement() async throws {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID())")
    let backup = work.appendingPathComponent("backup")
    try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: work) }
    let platform = try await NestTestPlatform.start(.processes())
    let local = platform.processes!
    let marketplace = platform.marketplace
    let setup = try await marketplace.setUp(.scenario3, parties: ScenarioParties(.scenario3, run: "older"))
    var connection = ["--data-dir", platform.directory.path]
    for service in NestServiceName.allCases {
      connection += ["--\(service.rawValue)-address", "\(local.addresses[service]!)"]
    }
    var admin: [String] = []
    for service in NestServiceName.allCases {
      admin += ["--admin-address", "\(service.rawValue)=\(local.adminAddresses[service]!)"]
    }
    let first = try await marketplace.buy(setup.parties.customer, product: setup.productID)
    _ = try await marketplace.waitForOrder(first.id)
    let taken = try await Task.detached { try run([Self.nestctl, "backup", "--to", backup.path] + connection + admin) }
      .value
    #expect(taken.status == 0, "\(taken.stdoutText)\(taken.stderr)")
    // Sold after the backup: its sales are in settlement now, not in the backup.
    let later = try await marketplace.buy(setup.parties.customer, product: setup.productID)
    let laterDone = try await marketplace.waitForOrder(later.id)
    try await eventually {
      try await platform.orders(as: .operator, "ops") {
        try await $0.listDeliveries(.with { $0.page = .with { $0.pageSize = 1 } }).deliveries.isEmpty
      }
    }.requireTrue("the later order's deliveries")
    await platform.stop(.settlement)
    let put = try await Task.detached {
      try run([Self.nestctl, "restore", "--from", backup.path, "--service", "settlement"] + connection)
    }.value
    #expect(put.status == 0, "\(put.stdoutText)\(put.stderr)")
    try await platform.start(.settlement)
    let report = try await Task.detached { try run([Self.nestctl, "reconcile"] + connection) }.value
    print(report.stdoutText)
    #expect(report.status == 1)
    let linked = try #require(laterDone.order?.linkedOrderIds.first)
    #expect(
      report.stdoutText.contains(
        "settlement is behind marketplace-order (restored from an older backup?): 2 delivered order(s) without their sale"
      ),
      "\(report.stdoutText)")
    #expect(report.stdoutText.contains(later.id) && report.stdoutText.contains(linked))
    #expect(!report.stdoutText.contains(first.id))
    await platform.stop()
  }
}

extension Bool {
  /// Throws (failing the test) unless true.
  func requireTrue(_ what: String) throws {
    try #require(self, "\(what) did not happen in time")
  }
}
