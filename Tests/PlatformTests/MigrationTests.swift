// Databases written by release 0.1 (Tests/Fixtures/release-0.1: each service's database as
// that release wrote it, dumped to SQL, and what its RPCs then answered) open under this
// release: the migrations move every order, instance, transaction, obligation, authorization
// and service into columns, and each reads back as it was, every balance to the minor unit.
import Foundation
import GRDB
import NestDomain
import NestProto
import NestProtoTesting
import NestServiceKit
import NestTestKit
import Testing

/// Release 0.1's fixture: its dumps and its answers.
enum ReleaseFixture {
  static let directory = Repository.path("Tests/Fixtures/release-0.1")

  static var expected: [String: Any] {
    get throws {
      let data = try Data(contentsOf: Self.directory.appendingPathComponent("expected.json"))
      return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
  }

  /// The services release 0.1 had (events came later, and starts empty).
  static let services: [NestServiceName] = [.catalog, .entitlement, .order, .settlement]

  /// Writes each service's database of the release into `directory`.
  static func restore(into directory: URL) throws {
    for service in Self.services {
      let dump = try String(
        contentsOf: Self.directory.appendingPathComponent("\(service.rawValue).sql"), encoding: .utf8)
      let queue = try DatabaseQueue(path: directory.appendingPathComponent("\(service.rawValue).sqlite").path)
      try queue.writeWithoutTransaction { try $0.execute(sql: dump) }
    }
  }
}

/// An enum case as the release's JSON named it: `ORDER_STATUS_FULFILLED` is `.fulfilled`.
func named<E>(_ value: E, _ json: Any?) -> Bool {
  guard let text = json as? String else { return false }
  return text.hasSuffix("_" + statusName(value)) || text == statusName(value)
}

@Suite("Migration from release 0.1", .timeLimit(.minutes(2)))
struct MigrationTests {
  @Test("every order, instance, transaction, obligation, authorization, service and balance intact")
  func intact() async throws {
    let expected = try ReleaseFixture.expected
    let platform = try await NestTestPlatform.start(prepare: ReleaseFixture.restore)
    let op = ("op", Nest_Common_V1_Role.operator)

    let orders = try await platform.orders(as: op.1, op.0) {
      try await $0.listOrders(.with { $0.page = .with { $0.pageSize = 500 } }).orders
    }
    let expectedOrders = expected["orders"] as? [[String: Any]] ?? []
    #expect(orders.count == expectedOrders.count)
    for want in expectedOrders {
      let order = try #require(orders.first { $0.id == want["id"] as? String }, "\(want)")
      #expect(named(order.status, want["status"]), "\(order.id)")
      #expect(named(order.kind, want["kind"]), "\(order.id)")
      #expect(order.price?.amount?.amountMinor == (want["amount"] as? Int).map(Int64.init), "\(order.id)")
      #expect(order.instanceID == (want["instanceId"] as? String ?? ""), "\(order.id)")
      #expect(order.parentOrderID == (want["parentOrderId"] as? String ?? ""), "\(order.id)")
      #expect(order.paymentReference == (want["paymentReference"] as? String ?? ""), "\(order.id)")
      #expect(order.labels == (want["labels"] as? [String: String] ?? [:]), "\(order.id)")
      #expect(!order.history.isEmpty, "\(order.id)")
    }

    let instances = try await platform.entitlement(as: op.1, op.0) {
      try await $0.listServiceInstances(.with { $0.page = .with { $0.pageSize = 500 } }).instances
    }
    let expectedInstances = expected["instances"] as? [[String: Any]] ?? []
    #expect(instances.count == expectedInstances.count)
    for want in expectedInstances {
      let instance = try #require(instances.first { $0.id == want["id"] as? String })
      #expect(instance.orderID == want["orderId"] as? String)
      #expect(instance.customerID == want["customerId"] as? String)
      #expect(named(instance.status, want["status"]), "\(instance.id)")
      #expect("\(instance.expiresAtUnixMs)" == want["expiresAtUnixMs"] as? String)
      #expect(instance.access != nil)
    }

    let transactions = try await platform.settlement(as: op.1, op.0) {
      try await $0.listTransactions(.with { $0.page = .with { $0.pageSize = 500 } }).transactions
    }
    let expectedTransactions = expected["transactions"] as? [[String: Any]] ?? []
    #expect(transactions.count == expectedTransactions.count)
    for want in expectedTransactions {
      let transaction = try #require(transactions.first { $0.id == want["id"] as? String })
      #expect(named(transaction.kind, want["kind"]), "\(transaction.id)")
      #expect(transaction.reversesTransactionID == want["reverses"] as? String)
      #expect(transaction.reversedByTransactionID == want["reversedBy"] as? String)
      let postings = (want["postings"] as? [[Any]] ?? []).map { "\($0[1]) \($0[2]) \($0[3])" }
      #expect(
        transaction.postings.map {
          "\($0.account?.accountID ?? "") \($0.amount?.currency ?? "") \($0.amount?.amountMinor ?? 0)"
        }
          == postings, "\(transaction.id)")
    }

    for (key, amounts) in expected["balances"] as? [String: [String: Int]] ?? [:] {
      let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
      let kind = try #require(Nest_Settlement_V1_AccountKind.allCases.first { named($0, parts[0]) })
      let balance = try await platform.settlement(as: op.1, op.0) {
        try await $0.getBalance(
          .with {
            $0.account = .with {
              $0.kind = kind
              $0.accountID = parts[1]
            }
          }
        ).balance!
      }
      for (currency, amount) in amounts {
        #expect(balance.amounts.first { $0.currency == currency }?.amountMinor == Int64(amount), "\(key)")
      }
    }

    let obligations = try await platform.settlement(as: op.1, op.0) {
      try await $0.listObligations(.with { $0.page = .with { $0.pageSize = 500 } }).obligations
    }
    for want in expected["obligations"] as? [[String: Any]] ?? [] {
      let obligation = try #require(obligations.first { $0.id == want["id"] as? String })
      #expect(named(obligation.status, want["status"]), "\(obligation.id)")
      #expect(obligation.amount?.amountMinor == (want["amount"] as? Int).map(Int64.init))
      #expect(obligation.statementID == (want["statementId"] as? String ?? ""))
      #expect(obligation.offsetsObligationID == (want["offsetsObligationId"] as? String ?? ""))
    }

    let authorizations = try await platform.entitlement(as: op.1, op.0) {
      try await $0.listDistributionAuthorizations(.init()).authorizations
    }
    var checkedCounts = 0
    for want in expected["authorizations"] as? [[String: Any]] ?? [] {
      let authorization = try #require(authorizations.first { $0.id == want["id"] as? String })
      #expect(named(authorization.status, want["status"]))
      #expect(authorization.terms?.wholesalePrice?.amountMinor == 3_333)
      #expect(!authorization.history.isEmpty)
    }
    // The places taken under each authorization still sellable, counted by entitlement-8
    // from the release's instances: what CheckDistribution answers.
    for authorization in authorizations where authorization.status == .active {
      let check = try? await platform.entitlement(as: op.1, op.0) {
        try await $0.checkDistribution(
          .with {
            $0.baseServiceID = authorization.baseServiceID
            $0.distributorID = authorization.distributorID
          })
      }
      guard let check, check.authorization?.id == authorization.id else { continue }
      let live = instances.filter { $0.authorizationID == authorization.id && $0.status != .released }
      #expect(check.instanceCount == Int32(live.count), "\(authorization.id)")
      if !live.isEmpty { checkedCounts += 1 }
    }
    #expect(checkedCounts > 0, "no authorization of the fixture with live instances could be checked")
    let services = try await platform.catalog(as: op.1, op.0) { try await $0.listServices(.init()).services }
    #expect(
      Set(services.map(\.id))
        == Set((expected["services"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }))

    // The ledger, orders and instances of the old release agree under the new one.
    let reconcile = try await platform.marketplace.reconcile()
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    #expect(reconcile.peersChecked)
    // And the platform carries on from there: the fixture's open order can still be paid.
    let open = try #require(orders.first { $0.status == .created })
    _ = try await platform.orders(as: .customer, open.buyer!.accountID) {
      try await $0.payOrder(
        .with {
          $0.orderID = open.id
          $0.paymentReference = "after-migration"
        })
    }
    #expect(try await platform.marketplace.waitForOrder(open.id).order?.status == .fulfilled)
    await platform.stop()
  }
}

@Suite("Migration from the previous release's schema")
struct PreviousSchemaMigrationTests {
  typealias Rows = [[String: String]]

  static func rows(_ db: Database, _ table: String) throws -> Rows {
    try Row.fetchAll(db, sql: "SELECT * FROM \(table) ORDER BY rowid").map { row in
      Dictionary(uniqueKeysWithValues: row.columnNames.map { ($0, "\(row[$0] as DatabaseValue)") })
    }
  }

  /// marketplace-order's database as the release before `column` left it (release 0.1's data
  /// taken through the migrations up to `migration`; order-2 builds the tables of today's
  /// schema, so `deliveries.column` goes), then opened by this release: its orders and
  /// deliveries before and after.
  static func reopened(upTo migration: String, without column: String) throws
    -> (orders: Rows, deliveries: Rows, ordersAfter: Rows, deliveriesAfter: Rows)
  {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("previous-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try ReleaseFixture.restore(into: directory)
    let path = directory.appendingPathComponent("order.sqlite").path
    let definition = try #require(NestTestPlatform.definitions[.order])
    var previous = DatabaseMigrator()
    definition.migrations(&previous)
    let queue = try DatabaseQueue(path: path)
    try previous.migrate(queue, upTo: migration)
    try queue.write { try $0.execute(sql: "ALTER TABLE deliveries DROP COLUMN \(column)") }
    let (orders, deliveries) = try queue.read { (try rows($0, "orders"), try rows($0, "deliveries")) }
    #expect(try queue.read { try !$0.columns(in: "deliveries").contains { $0.name == column } })
    try queue.close()
    #expect(!orders.isEmpty && !deliveries.isEmpty)

    let pool = try ServiceDatabase.open(path: path, migrations: definition.migrations)
    defer { try? pool.pool.close() }
    let (ordersAfter, deliveriesAfter) = try pool.readNow { (try rows($0, "orders"), try rows($0, "deliveries")) }
    return (orders, deliveries, ordersAfter, deliveriesAfter)
  }

  /// The release before traces: order-4-traces adds `deliveries.trace_parent` and every row
  /// reads back the same.
  @Test("order-4-traces keeps every order and delivery as it was; old deliveries carry no trace")
  func orderTraces() throws {
    let database = try Self.reopened(upTo: "order-3-subscriptions", without: "trace_parent")
    #expect(database.ordersAfter == database.orders)
    #expect(database.deliveriesAfter.map { $0.filter { $0.key != "trace_parent" } } == database.deliveries)
    #expect(database.deliveriesAfter.allSatisfy { $0["trace_parent"] == "\"\"" })
  }

  /// The release before delivery steps: order-5-delivery-steps adds `deliveries.step`, every
  /// row reads back the same and has none, so that rows queued then still go one at a time.
  @Test("order-5-delivery-steps keeps every order and delivery as it was; old deliveries have no step")
  func deliverySteps() throws {
    let database = try Self.reopened(upTo: "order-4-traces", without: "step")
    #expect(database.ordersAfter == database.orders)
    #expect(database.deliveriesAfter.map { $0.filter { $0.key != "step" } } == database.deliveries)
    #expect(database.deliveriesAfter.allSatisfy { $0["step"] == "NULL" })
  }
}
