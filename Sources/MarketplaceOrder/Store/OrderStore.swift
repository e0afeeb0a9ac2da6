// marketplace-order's SQLite database: orders, and the delivery outbox written in the same
// transactions. Only this file knows the schema.
import Foundation
public import GRDB
public import NestProto
public import NestServiceKit

public typealias Delivery = Nest_Order_V1_Delivery

public struct OrderStore: Sendable {
  public let database: DatabasePool

  public static func migrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("order-1") { db in
      try db.create(table: "orders") { t in
        t.column("id", .text).primaryKey()
        t.column("kind", .integer).notNull()
        t.column("buyer_id", .text).notNull().indexed()
        t.column("seller_id", .text).notNull().indexed()
        t.column("status", .integer).notNull()
        t.column("product_id", .text).notNull()
        t.column("service_id", .text).notNull()
        t.column("parent_order_id", .text).notNull().indexed()
        t.column("created_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "deliveries") { t in
        t.column("id", .text).primaryKey()
        t.column("order_id", .text).notNull().indexed()
        t.column("kind", .integer).notNull()
        t.column("target", .integer).notNull()
        t.column("status", .integer).notNull()
        t.column("failing", .boolean).notNull()
        t.column("next_attempt_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(index: "deliveries_due", on: "deliveries", columns: ["status", "next_attempt_at_unix_ms"])
    }
  }

  public init(path: String) throws {
    self.database = try ServiceDatabase.open(path: path, migrations: Self.migrations)
  }

  // MARK: Orders

  public static func save(_ order: Order, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO orders (id, kind, buyer_id, seller_id, status, product_id, service_id, parent_order_id,
          created_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body
        """,
      arguments: [
        order.id, order.kind.rawValue, order.buyer?.accountID ?? "", order.seller?.accountID ?? "",
        order.status.rawValue, order.productID, order.serviceID, order.parentOrderID, order.createdAtUnixMs,
        Data(try order.serializedBytes()),
      ])
  }

  public static func order(_ id: String, in db: Database) throws -> Order? {
    try MessageRows.one(db, sql: "SELECT body FROM orders WHERE id = ?", arguments: [id])
  }

  public static func orders(
    _ filter: Nest_Order_V1_ListOrdersRequest, party: String?, page: PageQuery, in db: Database
  ) throws -> (items: [Order], nextPageToken: String) {
    var rows = RowFilter()
    if let party {
      rows.add("(buyer_id = ? OR seller_id = ?)", [party, party])
    }
    rows.equal([
      "buyer_id": filter.buyerID, "seller_id": filter.sellerID, "product_id": filter.productID,
      "service_id": filter.serviceID, "parent_order_id": filter.parentOrderID,
    ])
    if !filter.statuses.isEmpty {
      rows.oneOf("status", filter.statuses.map(\.rawValue))
    }
    if filter.kind != .unspecified {
      rows.add("kind = ?", [filter.kind.rawValue])
    }
    rows.range("created_at_unix_ms", from: filter.createdAfterUnixMs, before: filter.createdBeforeUnixMs)
    return try MessageRows.page(
      db, table: "orders", filter: rows, page: page, newestFirst: true)
  }

  // MARK: The outbox

  public static func save(_ delivery: Delivery, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO deliveries (id, order_id, kind, target, status, failing, next_attempt_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, failing = excluded.failing,
          next_attempt_at_unix_ms = excluded.next_attempt_at_unix_ms, body = excluded.body
        """,
      arguments: [
        delivery.id, delivery.orderID, delivery.kind.rawValue, delivery.target.rawValue, delivery.status.rawValue,
        delivery.lastErrorCode != 0, delivery.nextAttemptAtUnixMs, Data(try delivery.serializedBytes()),
      ])
  }

  public static func delivery(_ id: String, in db: Database) throws -> Delivery? {
    try MessageRows.one(db, sql: "SELECT body FROM deliveries WHERE id = ?", arguments: [id])
  }

  /// The deliveries that may be attempted now: per order, the oldest pending one, if due.
  public static func dueDeliveries(nowUnixMs: Int64, limit: Int, in db: Database) throws -> [Delivery] {
    try MessageRows.all(
      db,
      sql: """
        SELECT d.body FROM deliveries d
        WHERE d.status = ? AND d.next_attempt_at_unix_ms <= ?
          AND d.rowid = (SELECT MIN(rowid) FROM deliveries WHERE order_id = d.order_id AND status = ?)
        ORDER BY d.next_attempt_at_unix_ms LIMIT ?
        """,
      arguments: [
        Nest_Order_V1_DeliveryStatus.pending.rawValue, nowUnixMs, Nest_Order_V1_DeliveryStatus.pending.rawValue, limit,
      ])
  }

  /// How far an order's deliveries have got.
  public static func summary(ofOrder orderID: String, in db: Database) throws -> Nest_Order_V1_DeliverySummary {
    let deliveries: [Delivery] = try MessageRows.all(
      db, sql: "SELECT body FROM deliveries WHERE order_id = ? ORDER BY rowid", arguments: [orderID])
    let pending = deliveries.filter { $0.status == .pending }
    return .with {
      $0.pending = UInt32(pending.count)
      $0.delivered = UInt32(deliveries.count - pending.count)
      $0.lastError = pending.last(where: { !$0.lastError.isEmpty })?.lastError ?? ""
      $0.nextAttemptAtUnixMs = pending.map(\.nextAttemptAtUnixMs).min() ?? 0
    }
  }

  public static func deliveries(
    _ filter: Nest_Order_V1_ListDeliveriesRequest, page: PageQuery, in db: Database
  ) throws -> (items: [Delivery], nextPageToken: String) {
    var rows = RowFilter()
    if !filter.includeDelivered {
      rows.add("status = ?", [Nest_Order_V1_DeliveryStatus.pending.rawValue])
    }
    if !filter.orderID.isEmpty {
      rows.add("order_id = ?", [filter.orderID])
    }
    if filter.kind != .unspecified {
      rows.add("kind = ?", [filter.kind.rawValue])
    }
    if filter.target != .unspecified {
      rows.add("target = ?", [filter.target.rawValue])
    }
    if filter.failingOnly { rows.add("failing = 1") }
    return try MessageRows.page(
      db, table: "deliveries", filter: rows, page: page, newestFirst: false)
  }
}
