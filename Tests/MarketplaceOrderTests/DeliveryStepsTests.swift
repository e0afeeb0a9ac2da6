// The outbox's order: the rows one commit queued are due together; a later commit's rows wait
// until every row of the earlier one is acknowledged; rows queued before steps existed go one
// at a time, as they did.
import Foundation
import GRDB
import MarketplaceOrder
import NestProto
import NestServiceKit
import Testing

@Suite("Delivery steps")
struct DeliveryStepsTests {
  /// A marketplace-order database with one order, and the order's id.
  static func database() throws -> (NestDatabase, String, URL) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("steps-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let database = try ServiceDatabase.open(
      path: directory.appendingPathComponent("order.sqlite").path, migrations: OrderStore.migrations)
    let order = Order.with {
      $0.id = "ord-1"
      $0.kind = .customer
      $0.buyer = .with {
        $0.role = .customer
        $0.accountID = "c1"
      }
      $0.seller = .with {
        $0.role = .distributor
        $0.accountID = "d1"
      }
      $0.quantity = 1
      $0.periods = 1
      $0.status = .paid
    }
    try database.write { db in try OrderStore.save(order, in: db) }
    return (database, order.id, directory)
  }

  static func due(_ database: NestDatabase) throws -> [String] {
    try database.readNow { try OrderStore.dueDeliveries(nowUnixMs: 1_000, limit: 100, in: $0).map(\.id).sorted() }
  }

  static func acknowledge(_ ids: [String], in database: NestDatabase) throws {
    try database.write { db in
      for id in ids {
        var row = try #require(try OrderStore.delivery(id, in: db))
        row.status = .delivered
        try OrderStore.save(row, in: db)
      }
    }
  }

  @Test("a payment's rows go out together; a refund's wait until all of them are acknowledged")
  func steps() throws {
    let (database, order, directory) = try Self.database()
    defer { try? FileManager.default.removeItem(at: directory) }
    let row = { (kind: Nest_Order_V1_DeliveryKind, id: String) in
      DeliveryRules.row(kind, for: order, key: id, id: id, now: 1_000)
    }
    try database.write { db in
      try OrderStore.queue([row(.createInstance, "p1"), row(.recordSale, "p2")], traceParent: "", in: db)
      try OrderStore.queue([row(.recordRefund, "r1"), row(.releaseInstance, "r2")], traceParent: "", in: db)
    }
    #expect(try Self.due(database) == ["p1", "p2"])
    try Self.acknowledge(["p1"], in: database)
    #expect(try Self.due(database) == ["p2"], "the refund waits for the whole payment step")
    try Self.acknowledge(["p2"], in: database)
    #expect(try Self.due(database) == ["r1", "r2"])
    try Self.acknowledge(["r1", "r2"], in: database)
    #expect(try Self.due(database) == [])
  }

  @Test(
    "a new order's instance and sales go out together; a renewal's or change's sales wait for its instance",
    arguments: [Nest_Order_V1_OrderKind.customer, .renewal, .change])
  func paymentSteps(kind: Nest_Order_V1_OrderKind) throws {
    let (database, orderID, directory) = try Self.database()
    defer { try? FileManager.default.removeItem(at: directory) }
    var order = try #require(try database.readNow { try OrderStore.order(orderID, in: $0) })
    var linked = order
    linked.id = "ord-linked"
    linked.kind = .linked
    linked.parentOrderID = orderID
    // A paid order sells (recordsSale): its amount, as the rules read it; not stored.
    order.kind = kind
    order.price = .with {
      $0.amount = .with {
        $0.currency = "USD"
        $0.amountMinor = 1_000
      }
    }
    var ids = ["p3", "p2", "p1"]
    let steps = DeliveryRules.paid(order, linked: [linked], newID: { ids.removeLast() }, now: 1_000)
    let instanceKind: Nest_Order_V1_DeliveryKind =
      kind == .renewal ? .renewInstance : kind == .change ? .changeInstance : .createInstance
    try database.write { db in
      try OrderStore.save(linked, in: db)
      for step in steps { try OrderStore.queue(step, traceParent: "", in: db) }
    }
    let rows = steps.flatMap { $0 }
    #expect(rows.map(\.kind) == [instanceKind, .recordSale, .recordSale])
    #expect(rows.filter { $0.kind == .recordSale }.map(\.orderID) == [orderID, linked.id])
    if kind == .customer {
      #expect(try Self.due(database) == ["p1", "p2", "p3"])
    } else {
      // The linked order's wholesale sale, a row of another order, waits for its parent's
      // instance row too.
      #expect(try Self.due(database) == ["p1"], "the sales wait until the instance took the \(kind)")
      try Self.acknowledge(["p1"], in: database)
      #expect(try Self.due(database) == ["p2", "p3"])
    }
  }

  @Test("rows queued before steps existed (no step) go one at a time, oldest first")
  func rowsWithoutStep() throws {
    let (database, order, directory) = try Self.database()
    defer { try? FileManager.default.removeItem(at: directory) }
    try database.write { db in
      for id in ["a", "b", "c"] {
        try OrderStore.save(DeliveryRules.row(.recordSale, for: order, key: id, id: id, now: 1_000), in: db)
      }
      #expect(try String.fetchAll(db, sql: "SELECT step FROM deliveries WHERE step IS NOT NULL").isEmpty)
    }
    #expect(try Self.due(database) == ["a"])
    try Self.acknowledge(["a"], in: database)
    #expect(try Self.due(database) == ["b"])
  }
}
