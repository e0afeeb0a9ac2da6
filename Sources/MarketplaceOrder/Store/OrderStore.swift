// marketplace-order's SQLite database: orders and the delivery outbox written in the same
// transactions, as typed columns (every price a column, its split held together by a CHECK),
// the order histories append-only beside them, and the scenario snapshot and labels (which
// nobody queries) as a document. Only this file knows the schema.
import Foundation
public import GRDB
import NestDomain
public import NestProto
public import NestServiceKit

public struct OrderStore: Sendable {
  public let database: NestDatabase

  public init(database: NestDatabase) {
    self.database = database
  }

  static let history = HistoryTable("order_history")

  @Sendable public static func migrations(_ migrator: inout DatabaseMigrator) {
    // Release 0.1: orders and deliveries as their encoded messages beside filter columns.
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
    // Columns for every field; histories apart. Rows of release 0.1 are read from their
    // messages and written again, in their order.
    migrator.registerMigration("order-2-columns") { db in
      let orders = try Data.fetchAll(db.cachedStatement(sql: "SELECT body FROM orders ORDER BY rowid")).map {
        try Document.decode($0, as: Order.self)
      }
      let deliveries = try Data.fetchAll(db.cachedStatement(sql: "SELECT body FROM deliveries ORDER BY rowid")).map {
        try Document.decode($0, as: Delivery.self)
      }
      try db.drop(table: "deliveries")
      try db.drop(table: "orders")
      try Self.createTables(db)
      for order in orders { try Self.save(order, in: db) }
      for delivery in deliveries { try Self.save(delivery, in: db) }
    }
    // Subscriptions: trials, auto-renew, renewal and change orders (their change snapshot is
    // in the document). At most one trial per customer and product, and one open RENEWAL or
    // CHANGE per instance, held by the database.
    migrator.registerMigration("order-3-subscriptions") { db in
      try Self.addSubscriptionColumns(db)
    }
    // Traces: each outbox row keeps the trace context of the call that queued it.
    migrator.registerMigration("order-4-traces") { db in
      try Self.addTraceColumns(db)
    }
    // Steps: the rows queued as one step (a new order's instance and sales) are delivered
    // together; rows queued before the column have none and go one at a time, as they did.
    migrator.registerMigration("order-5-delivery-steps") { db in
      try Self.addStepColumn(db)
    }
  }

  /// The column of order-5 (createTables makes it for a new database): the id of the first
  /// row of its step, on every row of that step.
  static func addStepColumn(_ db: Database) throws {
    try db.addColumnIfMissing("deliveries", "step", "TEXT")
  }

  /// The column of order-4 (createTables makes it for a new database).
  static func addTraceColumns(_ db: Database) throws {
    try db.addColumnIfMissing("deliveries", "trace_parent", "TEXT NOT NULL DEFAULT ''")
  }

  /// The columns and indexes of order-3 (createTables makes them for a new database).
  static func addSubscriptionColumns(_ db: Database) throws {
    try db.addColumnIfMissing("orders", "trial", "BOOLEAN NOT NULL DEFAULT 0")
    try db.addColumnIfMissing("orders", "trial_days", "INTEGER NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 30)")
    try db.addColumnIfMissing("orders", "auto_renew", "BOOLEAN NOT NULL DEFAULT 0")
    try db.addColumnIfMissing(
      "orders", "wholesale_previous_unit_minor", "INTEGER NOT NULL DEFAULT 0 CHECK (wholesale_previous_unit_minor >= 0)"
    )
    try db.execute(
      sql: """
        CREATE UNIQUE INDEX IF NOT EXISTS orders_one_trial ON orders(buyer_id, product_id) WHERE trial = 1;
        CREATE UNIQUE INDEX IF NOT EXISTS orders_one_open_per_instance ON orders(instance_id)
          WHERE kind IN (3, 4) AND status IN (1, 2);
        CREATE INDEX IF NOT EXISTS orders_instance ON orders(instance_id);
        """)
  }

  static func createTables(_ db: Database) throws {
    try db.create(table: "orders") { t in
      t.column("id", .text).primaryKey()
      t.column("kind", .integer).notNull().check { $0 >= 1 }
      t.column("buyer_role", .integer).notNull()
      t.column("buyer_id", .text).notNull().indexed()
      t.column("seller_role", .integer).notNull()
      t.column("seller_id", .text).notNull().indexed()
      t.column("product_id", .text).notNull()
      t.column("plan_id", .text).notNull()
      t.column("service_id", .text).notNull()
      t.column("service_version_id", .text).notNull()
      t.column("quantity", .integer).notNull().check { $0 >= 1 }
      t.column("periods", .integer).notNull().check { $0 >= 1 }
      t.column("parameter_set_name", .text).notNull()
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("currency", .text).notNull()
      t.column("unit_price_minor", .integer).notNull().check { $0 >= 0 }
      t.column("billing_period", .integer).notNull()
      t.column("amount_minor", .integer).notNull().check { $0 >= 0 }
      t.column("commission_bps", .integer).notNull().check { $0 >= 0 && $0 <= 10_000 }
      t.column("commission_minor", .integer).notNull().check { $0 >= 0 }
      t.column("seller_net_minor", .integer).notNull().check { $0 >= 0 }
      t.column("scenario", .integer).notNull()
      t.column("isv_id", .text).notNull()
      t.column("distributor_id", .text).notNull()
      t.column("has_wholesale", .boolean).notNull()
      t.column("authorization_id", .text).notNull()
      t.column("wholesale_currency", .text).notNull()
      t.column("wholesale_unit_minor", .integer).notNull().check { $0 >= 0 }
      t.column("wholesale_amount_minor", .integer).notNull().check { $0 >= 0 }
      t.column("terms_valid_until_unix_ms", .integer).notNull()
      t.column("parent_order_id", .text).notNull().indexed()
      t.column("instance_id", .text).notNull()
      t.column("payment_reference", .text).notNull()
      t.column("reason", .text).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
      t.column("updated_at_unix_ms", .integer).notNull()
      t.column("paid_at_unix_ms", .integer).notNull()
      t.column("fulfilled_at_unix_ms", .integer).notNull()
      t.column("cancelled_at_unix_ms", .integer).notNull()
      t.column("refunded_at_unix_ms", .integer).notNull()
      // The scenario snapshot and labels.
      t.column("document", .blob).notNull()
      // The price's split: commission and the seller's net make the amount.
      t.check(sql: "commission_minor + seller_net_minor = amount_minor")
    }
    try Self.history.create(in: db)
    try Self.addSubscriptionColumns(db)
    try db.create(table: "deliveries") { t in
      t.column("id", .text).primaryKey()
      t.column("order_id", .text).notNull().indexed().references("orders")
      t.column("kind", .integer).notNull().check { $0 >= 1 }
      t.column("target", .integer).notNull().check { $0 >= 1 }
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("idempotency_key", .text).notNull()
      t.column("attempts", .integer).notNull().check { $0 >= 0 }
      t.column("last_error_code", .integer).notNull()
      t.column("last_error", .text).notNull()
      t.column("next_attempt_at_unix_ms", .integer).notNull()
      t.column("last_attempt_at_unix_ms", .integer).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
      t.column("delivered_at_unix_ms", .integer).notNull()
      t.column("acknowledged_instance_id", .text)
      t.column("acknowledged_transaction_id", .text)
    }
    try db.create(index: "deliveries_due", on: "deliveries", columns: ["status", "next_attempt_at_unix_ms"])
    try Self.addTraceColumns(db)
    try Self.addStepColumn(db)
  }

  // MARK: Orders

  struct OrderRow: ColumnRecord {
    static let databaseTableName = "orders"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.kind = try row.decode(forColumn: "kind")
      self.buyerRole = try row.decode(forColumn: "buyer_role")
      self.buyerId = try row.decode(forColumn: "buyer_id")
      self.sellerRole = try row.decode(forColumn: "seller_role")
      self.sellerId = try row.decode(forColumn: "seller_id")
      self.productId = try row.decode(forColumn: "product_id")
      self.planId = try row.decode(forColumn: "plan_id")
      self.serviceId = try row.decode(forColumn: "service_id")
      self.serviceVersionId = try row.decode(forColumn: "service_version_id")
      self.quantity = try row.decode(forColumn: "quantity")
      self.periods = try row.decode(forColumn: "periods")
      self.parameterSetName = try row.decode(forColumn: "parameter_set_name")
      self.status = try row.decode(forColumn: "status")
      self.currency = try row.decode(forColumn: "currency")
      self.unitPriceMinor = try row.decode(forColumn: "unit_price_minor")
      self.billingPeriod = try row.decode(forColumn: "billing_period")
      self.amountMinor = try row.decode(forColumn: "amount_minor")
      self.commissionBps = try row.decode(forColumn: "commission_bps")
      self.commissionMinor = try row.decode(forColumn: "commission_minor")
      self.sellerNetMinor = try row.decode(forColumn: "seller_net_minor")
      self.scenario = try row.decode(forColumn: "scenario")
      self.isvId = try row.decode(forColumn: "isv_id")
      self.distributorId = try row.decode(forColumn: "distributor_id")
      self.hasWholesale = try row.decode(forColumn: "has_wholesale")
      self.authorizationId = try row.decode(forColumn: "authorization_id")
      self.wholesaleCurrency = try row.decode(forColumn: "wholesale_currency")
      self.wholesaleUnitMinor = try row.decode(forColumn: "wholesale_unit_minor")
      self.wholesaleAmountMinor = try row.decode(forColumn: "wholesale_amount_minor")
      self.termsValidUntilUnixMs = try row.decode(forColumn: "terms_valid_until_unix_ms")
      self.parentOrderId = try row.decode(forColumn: "parent_order_id")
      self.instanceId = try row.decode(forColumn: "instance_id")
      self.paymentReference = try row.decode(forColumn: "payment_reference")
      self.reason = try row.decode(forColumn: "reason")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.updatedAtUnixMs = try row.decode(forColumn: "updated_at_unix_ms")
      self.paidAtUnixMs = try row.decode(forColumn: "paid_at_unix_ms")
      self.fulfilledAtUnixMs = try row.decode(forColumn: "fulfilled_at_unix_ms")
      self.cancelledAtUnixMs = try row.decode(forColumn: "cancelled_at_unix_ms")
      self.refundedAtUnixMs = try row.decode(forColumn: "refunded_at_unix_ms")
      self.trial = try row.decode(forColumn: "trial")
      self.trialDays = try row.decode(forColumn: "trial_days")
      self.autoRenew = try row.decode(forColumn: "auto_renew")
      self.wholesalePreviousUnitMinor = try row.decode(forColumn: "wholesale_previous_unit_minor")
      self.document = try row.decode(forColumn: "document")
    }

    static let columns = ColumnLayout<OrderRow>(
      table: "orders", key: ["id"],
      [
        "id": { $0.id },
        "kind": { $0.kind },
        "buyer_role": { $0.buyerRole },
        "buyer_id": { $0.buyerId },
        "seller_role": { $0.sellerRole },
        "seller_id": { $0.sellerId },
        "product_id": { $0.productId },
        "plan_id": { $0.planId },
        "service_id": { $0.serviceId },
        "service_version_id": { $0.serviceVersionId },
        "quantity": { $0.quantity },
        "periods": { $0.periods },
        "parameter_set_name": { $0.parameterSetName },
        "status": { $0.status },
        "currency": { $0.currency },
        "unit_price_minor": { $0.unitPriceMinor },
        "billing_period": { $0.billingPeriod },
        "amount_minor": { $0.amountMinor },
        "commission_bps": { $0.commissionBps },
        "commission_minor": { $0.commissionMinor },
        "seller_net_minor": { $0.sellerNetMinor },
        "scenario": { $0.scenario },
        "isv_id": { $0.isvId },
        "distributor_id": { $0.distributorId },
        "has_wholesale": { $0.hasWholesale },
        "authorization_id": { $0.authorizationId },
        "wholesale_currency": { $0.wholesaleCurrency },
        "wholesale_unit_minor": { $0.wholesaleUnitMinor },
        "wholesale_amount_minor": { $0.wholesaleAmountMinor },
        "terms_valid_until_unix_ms": { $0.termsValidUntilUnixMs },
        "parent_order_id": { $0.parentOrderId },
        "instance_id": { $0.instanceId },
        "payment_reference": { $0.paymentReference },
        "reason": { $0.reason },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "updated_at_unix_ms": { $0.updatedAtUnixMs },
        "paid_at_unix_ms": { $0.paidAtUnixMs },
        "fulfilled_at_unix_ms": { $0.fulfilledAtUnixMs },
        "cancelled_at_unix_ms": { $0.cancelledAtUnixMs },
        "refunded_at_unix_ms": { $0.refundedAtUnixMs },
        "trial": { $0.trial },
        "trial_days": { $0.trialDays },
        "auto_renew": { $0.autoRenew },
        "wholesale_previous_unit_minor": { $0.wholesalePreviousUnitMinor },
        "document": { $0.document },
      ])

    var id: String
    var kind: Int32
    var buyerRole: Int32
    var buyerId: String
    var sellerRole: Int32
    var sellerId: String
    var productId: String
    var planId: String
    var serviceId: String
    var serviceVersionId: String
    var quantity: UInt32
    var periods: UInt32
    var parameterSetName: String
    var status: Int32
    var currency: String
    var unitPriceMinor: Int64
    var billingPeriod: Int32
    var amountMinor: Int64
    var commissionBps: UInt32
    var commissionMinor: Int64
    var sellerNetMinor: Int64
    var scenario: Int32
    var isvId: String
    var distributorId: String
    var hasWholesale: Bool
    var authorizationId: String
    var wholesaleCurrency: String
    var wholesaleUnitMinor: Int64
    var wholesaleAmountMinor: Int64
    var termsValidUntilUnixMs: Int64
    var parentOrderId: String
    var instanceId: String
    var paymentReference: String
    var reason: String
    var createdAtUnixMs: Int64
    var updatedAtUnixMs: Int64
    var paidAtUnixMs: Int64
    var fulfilledAtUnixMs: Int64
    var cancelledAtUnixMs: Int64
    var refundedAtUnixMs: Int64
    var trial: Bool
    var trialDays: UInt32
    var autoRenew: Bool
    var wholesalePreviousUnitMinor: Int64
    var document: Data

    init(_ o: Order) throws {
      var rest = Order()
      rest.scenario = o.scenario
      rest.labels = o.labels
      if let change = o.change { rest.change = change }
      rest.unknownFields = o.unknownFields
      let price = o.price ?? .init()
      self.id = o.id
      self.kind = o.kind.rawValue
      self.buyerRole = o.buyer?.role.rawValue ?? 0
      self.buyerId = o.buyer?.accountID ?? ""
      self.sellerRole = o.seller?.role.rawValue ?? 0
      self.sellerId = o.seller?.accountID ?? ""
      self.productId = o.productID
      self.planId = o.planID
      self.serviceId = o.serviceID
      self.serviceVersionId = o.serviceVersionID
      self.quantity = o.quantity
      self.periods = o.periods
      self.parameterSetName = o.parameterSetName
      self.status = o.status.rawValue
      self.currency = price.amount?.currency ?? ""
      self.unitPriceMinor = price.unitPrice?.amountMinor ?? 0
      self.billingPeriod = price.billingPeriod.rawValue
      self.amountMinor = price.amount?.amountMinor ?? 0
      self.commissionBps = price.commissionBps
      self.commissionMinor = price.commission?.amountMinor ?? 0
      self.sellerNetMinor = price.sellerNet?.amountMinor ?? 0
      self.scenario = o.scenario?.scenario.rawValue ?? 0
      self.isvId = o.scenario?.isvID ?? ""
      self.distributorId = o.scenario?.distributorID ?? ""
      self.hasWholesale = o.wholesale != nil
      self.authorizationId = o.wholesale?.authorizationID ?? ""
      self.wholesaleCurrency = o.wholesale?.wholesaleAmount?.currency ?? o.wholesale?.wholesaleUnitPrice?.currency ?? ""
      self.wholesaleUnitMinor = o.wholesale?.wholesaleUnitPrice?.amountMinor ?? 0
      self.wholesaleAmountMinor = o.wholesale?.wholesaleAmount?.amountMinor ?? 0
      self.termsValidUntilUnixMs = o.wholesale?.termsValidUntilUnixMs ?? 0
      self.parentOrderId = o.parentOrderID
      self.instanceId = o.instanceID
      self.paymentReference = o.paymentReference
      self.reason = o.reason
      self.createdAtUnixMs = o.createdAtUnixMs
      self.updatedAtUnixMs = o.updatedAtUnixMs
      self.paidAtUnixMs = o.paidAtUnixMs
      self.fulfilledAtUnixMs = o.fulfilledAtUnixMs
      self.cancelledAtUnixMs = o.cancelledAtUnixMs
      self.refundedAtUnixMs = o.refundedAtUnixMs
      self.trial = o.trial
      self.trialDays = o.trialDays
      self.autoRenew = o.autoRenew
      self.wholesalePreviousUnitMinor = o.wholesale?.previousWholesaleUnitPrice?.amountMinor ?? 0
      self.document = try Document.encode(rest)
    }

    func message(history: [Nest_Common_V1_StatusChange], linkedOrderIDs: [String]) throws -> Order {
      var o = try Document.decode(self.document, as: Order.self)
      o.id = self.id
      o.kind = .init(rawValue: self.kind)
      o.buyer = .with {
        $0.role = .init(rawValue: self.buyerRole)
        $0.accountID = self.buyerId
      }
      o.seller = .with {
        $0.role = .init(rawValue: self.sellerRole)
        $0.accountID = self.sellerId
      }
      o.productID = self.productId
      o.planID = self.planId
      o.serviceID = self.serviceId
      o.serviceVersionID = self.serviceVersionId
      o.quantity = self.quantity
      o.periods = self.periods
      o.parameterSetName = self.parameterSetName
      o.status = .init(rawValue: self.status)
      o.price = .with {
        $0.unitPrice = MoneyMath.money(self.currency, self.unitPriceMinor)
        $0.billingPeriod = .init(rawValue: self.billingPeriod)
        $0.amount = MoneyMath.money(self.currency, self.amountMinor)
        $0.commissionBps = self.commissionBps
        $0.commission = MoneyMath.money(self.currency, self.commissionMinor)
        $0.sellerNet = MoneyMath.money(self.currency, self.sellerNetMinor)
      }
      if self.hasWholesale {
        o.wholesale = .with {
          $0.authorizationID = self.authorizationId
          $0.wholesaleUnitPrice = MoneyMath.money(self.wholesaleCurrency, self.wholesaleUnitMinor)
          $0.wholesaleAmount = MoneyMath.money(self.wholesaleCurrency, self.wholesaleAmountMinor)
          $0.termsValidUntilUnixMs = self.termsValidUntilUnixMs
          if self.kind == Nest_Order_V1_OrderKind.change.rawValue {
            $0.previousWholesaleUnitPrice = MoneyMath.money(self.wholesaleCurrency, self.wholesalePreviousUnitMinor)
          }
        }
      }
      o.parentOrderID = self.parentOrderId
      o.linkedOrderIds = linkedOrderIDs
      o.instanceID = self.instanceId
      o.paymentReference = self.paymentReference
      o.reason = self.reason
      o.history = history
      o.createdAtUnixMs = self.createdAtUnixMs
      o.updatedAtUnixMs = self.updatedAtUnixMs
      o.paidAtUnixMs = self.paidAtUnixMs
      o.fulfilledAtUnixMs = self.fulfilledAtUnixMs
      o.cancelledAtUnixMs = self.cancelledAtUnixMs
      o.refundedAtUnixMs = self.refundedAtUnixMs
      o.trial = self.trial
      o.trialDays = self.trialDays
      o.autoRenew = self.autoRenew
      return o
    }
  }

  /// Inserts or updates the order; its new history entries are appended. Linked order ids
  /// are not stored: they are the orders whose parent it is.
  public static func save(_ order: Order, in db: Database) throws {
    try OrderRow(order).upsert(db)
    let entered = try Self.history.append(order.history, for: order.id, in: db)
    try EventLog.record(OrderEvents.drafts(order, entered: entered), in: db)
  }

  static func orders(_ rows: [OrderRow], in db: Database) throws -> [Order] {
    let ids = rows.map(\.id)
    let histories = try Self.history.entries(for: ids, in: db)
    var children: [String: [String]] = [:]
    if !ids.isEmpty {
      for row in try Row.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT id, parent_order_id FROM orders
            WHERE \(ValueList.sql("parent_order_id")) ORDER BY rowid
            """), arguments: [ValueList.argument(ids)])
      {
        children[row["parent_order_id"], default: []].append(row["id"])
      }
    }
    return try rows.map { try $0.message(history: histories[$0.id] ?? [], linkedOrderIDs: children[$0.id] ?? []) }
  }

  /// Whether the customer had a trial of the product.
  public static func hadTrial(buyerID: String, productID: String, in db: Database) throws -> Bool {
    try Bool.fetchOne(
      db.cachedStatement(
        sql: "SELECT EXISTS (SELECT 1 FROM orders WHERE trial = 1 AND buyer_id = ? AND product_id = ?)"),
      arguments: [buyerID, productID]) ?? false
  }

  /// FAILED_PRECONDITION when the customer had a trial of the product (the unique index
  /// holds it under races; this says it plainly).
  public static func requireNoTrial(buyerID: String, productID: String, in db: Database) throws {
    if try Self.hadTrial(buyerID: buyerID, productID: productID, in: db) {
      throw DomainError(.failedPrecondition, "the customer already had a trial of product \(productID)")
    }
  }

  /// FAILED_PRECONDITION when a RENEWAL or CHANGE of the instance is open (CREATED, or PAID
  /// and not yet applied): one at a time, so that nothing counts a term twice.
  public static func requireNoOpenSubscriptionOrder(instanceID: String, in db: Database) throws {
    if let open = try String.fetchOne(
      db.cachedStatement(
        sql: "SELECT id FROM orders WHERE instance_id = ? AND kind IN (3, 4) AND status IN (1, 2) LIMIT 1"),
      arguments: [instanceID])
    {
      throw DomainError(
        .failedPrecondition, "order \(open) for instance \(instanceID) is still open: pay or cancel it first")
    }
  }

  public static func order(_ id: String, in db: Database) throws -> Order? {
    try Self.orders(OrderRow.fetchAll(db, where: "id", is: id), in: db).first
  }

  public static func orders(ids: [String], in db: Database) throws -> [Order] {
    try Self.orders(OrderRow.fetchAll(db, where: "id", in: ids), in: db)
  }

  /// A page of orders matching `filter`; `party` (a non-platform caller) sees those it buys
  /// or sells.
  public static func orders(
    _ filter: Nest_Order_V1_ListOrdersRequest, party: (role: Nest_Common_V1_Role, id: String)?, page: PageQuery,
    in db: Database
  ) throws -> (items: [Order], nextPageToken: String) {
    var rows = RowFilter()
    if let party {
      rows.add(
        "((buyer_role = ? AND buyer_id = ?) OR (seller_role = ? AND seller_id = ?))",
        [party.role.rawValue, party.id, party.role.rawValue, party.id])
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
    let page = try RecordPage<OrderRow>.fetch(db, filter: rows, page: page, newestFirst: true)
    return (try Self.orders(page.rows, in: db), page.nextPageToken)
  }

  // MARK: The outbox

  struct DeliveryRow: ColumnRecord {
    static let databaseTableName = "deliveries"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.orderId = try row.decode(forColumn: "order_id")
      self.kind = try row.decode(forColumn: "kind")
      self.target = try row.decode(forColumn: "target")
      self.status = try row.decode(forColumn: "status")
      self.idempotencyKey = try row.decode(forColumn: "idempotency_key")
      self.attempts = try row.decode(forColumn: "attempts")
      self.lastErrorCode = try row.decode(forColumn: "last_error_code")
      self.lastError = try row.decode(forColumn: "last_error")
      self.nextAttemptAtUnixMs = try row.decode(forColumn: "next_attempt_at_unix_ms")
      self.lastAttemptAtUnixMs = try row.decode(forColumn: "last_attempt_at_unix_ms")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.deliveredAtUnixMs = try row.decode(forColumn: "delivered_at_unix_ms")
      self.acknowledgedInstanceId = try row.decode(forColumn: "acknowledged_instance_id")
      self.acknowledgedTransactionId = try row.decode(forColumn: "acknowledged_transaction_id")
      self.traceParent = try row.decode(forColumn: "trace_parent")
    }

    static let columns = ColumnLayout<DeliveryRow>(
      table: "deliveries", key: ["id"],
      [
        "id": { $0.id },
        "order_id": { $0.orderId },
        "kind": { $0.kind },
        "target": { $0.target },
        "status": { $0.status },
        "idempotency_key": { $0.idempotencyKey },
        "attempts": { $0.attempts },
        "last_error_code": { $0.lastErrorCode },
        "last_error": { $0.lastError },
        "next_attempt_at_unix_ms": { $0.nextAttemptAtUnixMs },
        "last_attempt_at_unix_ms": { $0.lastAttemptAtUnixMs },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "delivered_at_unix_ms": { $0.deliveredAtUnixMs },
        "acknowledged_instance_id": { $0.acknowledgedInstanceId },
        "acknowledged_transaction_id": { $0.acknowledgedTransactionId },
        "trace_parent": { $0.traceParent },
      ])

    var id: String
    var orderId: String
    var kind: Int32
    var target: Int32
    var status: Int32
    var idempotencyKey: String
    var attempts: UInt32
    var lastErrorCode: Int32
    var lastError: String
    var nextAttemptAtUnixMs: Int64
    var lastAttemptAtUnixMs: Int64
    var createdAtUnixMs: Int64
    var deliveredAtUnixMs: Int64
    var acknowledgedInstanceId: String?
    var acknowledgedTransactionId: String?
    var traceParent: String

    init(_ d: Delivery) {
      self.id = d.id
      self.orderId = d.orderID
      self.kind = d.kind.rawValue
      self.target = d.target.rawValue
      self.status = d.status.rawValue
      self.idempotencyKey = d.idempotencyKey
      self.attempts = d.attempts
      self.lastErrorCode = d.lastErrorCode
      self.lastError = d.lastError
      self.nextAttemptAtUnixMs = d.nextAttemptAtUnixMs
      self.lastAttemptAtUnixMs = d.lastAttemptAtUnixMs
      self.createdAtUnixMs = d.createdAtUnixMs
      self.deliveredAtUnixMs = d.deliveredAtUnixMs
      self.traceParent = d.traceParent
      switch d.acknowledgement {
      case .instanceID(let id)?: (self.acknowledgedInstanceId, self.acknowledgedTransactionId) = (id, nil)
      case .transactionID(let id)?: (self.acknowledgedInstanceId, self.acknowledgedTransactionId) = (nil, id)
      case nil: (self.acknowledgedInstanceId, self.acknowledgedTransactionId) = (nil, nil)
      }
    }

    var message: Delivery {
      .with {
        $0.id = self.id
        $0.orderID = self.orderId
        $0.kind = .init(rawValue: self.kind)
        $0.target = .init(rawValue: self.target)
        $0.status = .init(rawValue: self.status)
        $0.idempotencyKey = self.idempotencyKey
        $0.attempts = self.attempts
        $0.lastErrorCode = self.lastErrorCode
        $0.lastError = self.lastError
        $0.nextAttemptAtUnixMs = self.nextAttemptAtUnixMs
        $0.lastAttemptAtUnixMs = self.lastAttemptAtUnixMs
        $0.createdAtUnixMs = self.createdAtUnixMs
        $0.deliveredAtUnixMs = self.deliveredAtUnixMs
        $0.traceParent = self.traceParent
        if let id = self.acknowledgedInstanceId { $0.acknowledgement = .instanceID(id) }
        if let id = self.acknowledgedTransactionId { $0.acknowledgement = .transactionID(id) }
      }
    }
  }

  public static func save(_ delivery: Delivery, in db: Database) throws {
    try DeliveryRow(delivery).upsert(db)
  }

  /// Queues new rows, each continuing the trace `traceParent` (the queuing call's), as one
  /// step: they are delivered together, once every earlier step of their order is.
  public static func queue(_ rows: [Delivery], traceParent: String, in db: Database) throws {
    for var row in rows {
      row.traceParent = traceParent
      try Self.save(row, in: db)
    }
    guard rows.count > 1, let first = rows.first else { return }  // a lone row is its own step
    try db.cachedStatement(sql: "UPDATE deliveries SET step = ? WHERE \(ValueList.sql("id"))")
      .execute(arguments: [first.id, ValueList.argument(rows.map(\.id))])
  }

  public static func delivery(_ id: String, in db: Database) throws -> Delivery? {
    try DeliveryRow.fetchOne(db, where: "id", is: id)?.message
  }

  /// How many rows are pending, and when the oldest of them was queued.
  public static func pendingDeliveries(in db: Database) throws -> (count: Int, oldestCreatedAtUnixMs: Int64?) {
    let row = try Row.fetchOne(
      db.cachedStatement(
        sql: "SELECT COUNT(*) AS n, MIN(created_at_unix_ms) AS oldest FROM deliveries WHERE status = ?"),
      arguments: [Nest_Order_V1_DeliveryStatus.pending.rawValue])
    return (row?["n"] ?? 0, row?["oldest"])
  }

  /// The deliveries that may be attempted now: per order, the pending rows of its oldest step
  /// with pending rows, those that are due; a linked order's rows also wait while its parent
  /// has pending rows queued before them in another step (a renewal's wholesale sale waits for
  /// the renewal itself, as the customer's sale does).
  public static func dueDeliveries(nowUnixMs: Int64, limit: Int, in db: Database) throws -> [Delivery] {
    try DeliveryRow.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT d.* FROM deliveries d
          WHERE d.status = ?1 AND d.next_attempt_at_unix_ms <= ?2
            AND coalesce(d.step, d.id) = (
              SELECT coalesce(step, id) FROM deliveries
              WHERE order_id = d.order_id AND status = ?1 ORDER BY rowid LIMIT 1)
            AND NOT EXISTS (
              SELECT 1 FROM orders o JOIN deliveries p ON p.order_id = o.parent_order_id
              WHERE o.id = d.order_id AND o.parent_order_id != '' AND p.status = ?1 AND p.rowid < d.rowid
                AND coalesce(p.step, p.id) != coalesce(d.step, d.id))
          ORDER BY d.next_attempt_at_unix_ms LIMIT ?3
          """),
      arguments: [Nest_Order_V1_DeliveryStatus.pending.rawValue, nowUnixMs, limit]
    ).map(\.message)
  }

  /// Each order's deliveries, oldest first, read at once.
  public static func deliveries(ofOrders orderIDs: [String], in db: Database) throws -> [String: [Delivery]] {
    guard !orderIDs.isEmpty else { return [:] }
    var result: [String: [Delivery]] = [:]
    for row in try DeliveryRow.fetchAll(
      db.cachedStatement(sql: "SELECT * FROM deliveries WHERE \(ValueList.sql("order_id")) ORDER BY rowid"),
      arguments: [ValueList.argument(orderIDs)])
    {
      result[row.orderId, default: []].append(row.message)
    }
    return result
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
    if filter.failingOnly { rows.add("last_error_code != 0") }
    let page = try RecordPage<DeliveryRow>.fetch(db, filter: rows, page: page, newestFirst: false)
    return (page.rows.map(\.message), page.nextPageToken)
  }

  /// Rows not yet delivered, and the oldest one's creation time (0 when none).
  public static func pendingDeliveries(in db: Database) throws -> (count: Int, oldestCreatedAtUnixMs: Int64) {
    let row = try Row.fetchOne(
      db.cachedStatement(
        sql: "SELECT COUNT(*) AS n, COALESCE(MIN(created_at_unix_ms), 0) AS oldest FROM deliveries WHERE status = ?"),
      arguments: [Nest_Order_V1_DeliveryStatus.pending.rawValue])
    return (row?["n"] ?? 0, row?["oldest"] ?? 0)
  }
}
