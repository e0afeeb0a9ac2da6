// Settlement's SQLite database: ledger transactions (each with its postings as rows, for
// balances), the sales and refunds recorded per order (for idempotency), offline
// obligations, statements and usage records. Only this file knows the schema.
import Foundation
public import GRDB
public import NestProto
public import NestServiceKit

public struct SettlementStore: Sendable {
  public let database: DatabasePool

  public static func migrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("settlement-1") { db in
      try db.create(table: "transactions") { t in
        t.column("id", .text).primaryKey()
        t.column("kind", .integer).notNull()
        t.column("order_id", .text).indexed()
        t.column("instance_id", .text)
        t.column("created_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "postings") { t in
        t.column("transaction_id", .text).notNull().indexed().references("transactions")
        t.column("account_kind", .integer).notNull()
        t.column("account_id", .text).notNull()
        t.column("currency", .text).notNull()
        t.column("amount_minor", .integer).notNull()
      }
      try db.create(index: "postings_account", on: "postings", columns: ["account_kind", "account_id"])
      // One row per order whose sale is recorded: the snapshot it was recorded from.
      try db.create(table: "sales") { t in
        t.column("order_id", .text).primaryKey()
        t.column("kind", .integer).notNull()
        t.column("request", .blob).notNull()
        t.column("response", .blob).notNull()
        t.column("transaction_id", .text).notNull()
      }
      try db.create(table: "refunds") { t in
        t.column("order_id", .text).primaryKey()
        t.column("request", .blob).notNull()
        t.column("response", .blob).notNull()
      }
      try db.create(table: "obligations") { t in
        t.column("id", .text).primaryKey()
        t.column("order_id", .text).notNull().indexed()
        t.column("isv_id", .text).notNull().indexed()
        t.column("distributor_id", .text).notNull().indexed()
        t.column("status", .integer).notNull()
        t.column("statement_id", .text).notNull()
        t.column("accrued_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "statements") { t in
        t.column("id", .text).primaryKey()
        t.column("isv_id", .text).notNull()
        t.column("distributor_id", .text).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "usage_records") { t in
        t.column("record_id", .text).primaryKey()
        t.column("record", .blob).notNull()
        t.column("result", .blob).notNull()
      }
    }
  }

  public init(path: String) throws {
    self.database = try ServiceDatabase.open(path: path, migrations: Self.migrations)
  }

  // MARK: Transactions

  public static func insert(_ transaction: Nest_Settlement_V1_LedgerTransaction, in db: Database) throws {
    var orderID: String? = nil
    if case .orderID(let id)? = transaction.source { orderID = id }
    try db.execute(
      sql:
        "INSERT INTO transactions (id, kind, order_id, instance_id, created_at_unix_ms, body) VALUES (?, ?, ?, ?, ?, ?)",
      arguments: [
        transaction.id, transaction.kind.rawValue, orderID, transaction.instanceID, transaction.createdAtUnixMs,
        Data(try transaction.serializedBytes()),
      ])
    for posting in transaction.postings {
      try db.execute(
        sql: """
          INSERT INTO postings (transaction_id, account_kind, account_id, currency, amount_minor)
          VALUES (?, ?, ?, ?, ?)
          """,
        arguments: [
          transaction.id, posting.account?.kind.rawValue ?? 0, posting.account?.accountID ?? "",
          posting.amount?.currency ?? "", posting.amount?.amountMinor ?? 0,
        ])
    }
  }

  /// Rewrites a transaction's body (a SALE learns which REFUND reversed it); postings never change.
  public static func updateBody(_ transaction: Nest_Settlement_V1_LedgerTransaction, in db: Database) throws {
    try db.execute(
      sql: "UPDATE transactions SET body = ? WHERE id = ?",
      arguments: [Data(try transaction.serializedBytes()), transaction.id])
  }

  public static func transaction(_ id: String, in db: Database) throws -> Nest_Settlement_V1_LedgerTransaction? {
    try MessageRows.one(db, sql: "SELECT body FROM transactions WHERE id = ?", arguments: [id])
  }

  public static func transactions(
    account: AccountRef?, filter: Nest_Settlement_V1_ListTransactionsRequest, page: PageQuery, in db: Database
  ) throws -> (items: [Nest_Settlement_V1_LedgerTransaction], nextPageToken: String) {
    var rows = RowFilter()
    if let account {
      rows.add(
        "id IN (SELECT transaction_id FROM postings WHERE account_kind = ? AND account_id = ?)",
        [account.kind.rawValue, account.accountID])
    }
    if filter.kind != .unspecified {
      rows.add("kind = ?", [filter.kind.rawValue])
    }
    if !filter.orderID.isEmpty {
      rows.add("order_id = ?", [filter.orderID])
    }
    if !filter.instanceID.isEmpty {
      rows.add("instance_id = ?", [filter.instanceID])
    }
    rows.range("created_at_unix_ms", from: filter.createdAfterUnixMs, before: filter.createdBeforeUnixMs)
    return try MessageRows.page(
      db, table: "transactions", filter: rows, page: page, newestFirst: true)
  }

  /// An account's sums per currency (sorted) and its newest transaction's time.
  public static func balance(of account: AccountRef, in db: Database) throws
    -> (amounts: [Nest_Common_V1_Money], asOf: Int64)
  {
    let rows = try Row.fetchAll(
      db,
      sql: """
        SELECT currency, SUM(amount_minor) AS total FROM postings
        WHERE account_kind = ? AND account_id = ? GROUP BY currency ORDER BY currency
        """,
      arguments: [account.kind.rawValue, account.accountID])
    let asOf =
      try Int64.fetchOne(
        db,
        sql: """
          SELECT MAX(t.created_at_unix_ms) FROM transactions t JOIN postings p ON p.transaction_id = t.id
          WHERE p.account_kind = ? AND p.account_id = ?
          """,
        arguments: [account.kind.rawValue, account.accountID]) ?? 0
    return (rows.map { MoneyMath.money($0["currency"], $0["total"]) }, asOf)
  }

  // MARK: Sales and refunds

  public static func sale(orderID: String, in db: Database) throws
    -> (request: Nest_Settlement_V1_RecordSaleRequest, response: Nest_Settlement_V1_RecordSaleResponse)?
  {
    guard
      let row = try Row.fetchOne(
        db, sql: "SELECT request, response FROM sales WHERE order_id = ?", arguments: [orderID])
    else { return nil }
    return (
      try .init(serializedBytes: row["request"] as Data), try .init(serializedBytes: row["response"] as Data)
    )
  }

  public static func insertSale(
    _ request: Nest_Settlement_V1_RecordSaleRequest, response: Nest_Settlement_V1_RecordSaleResponse, in db: Database
  ) throws {
    try db.execute(
      sql: "INSERT INTO sales (order_id, kind, request, response, transaction_id) VALUES (?, ?, ?, ?, ?)",
      arguments: [
        request.orderID, request.kind.rawValue, Data(try request.serializedBytes()),
        Data(try response.serializedBytes()), response.transaction?.id ?? "",
      ])
  }

  /// Every recorded sale's snapshot, for reconciliation.
  public static func allSales(in db: Database) throws -> [(Nest_Settlement_V1_RecordSaleRequest, String)] {
    try Row.fetchAll(db, sql: "SELECT request, transaction_id FROM sales ORDER BY rowid").map {
      (try Nest_Settlement_V1_RecordSaleRequest(serializedBytes: $0["request"] as Data), $0["transaction_id"])
    }
  }

  public static func refund(orderID: String, in db: Database) throws
    -> (request: Nest_Settlement_V1_RecordRefundRequest, response: Nest_Settlement_V1_RecordRefundResponse)?
  {
    guard
      let row = try Row.fetchOne(
        db, sql: "SELECT request, response FROM refunds WHERE order_id = ?", arguments: [orderID])
    else { return nil }
    return (
      try .init(serializedBytes: row["request"] as Data), try .init(serializedBytes: row["response"] as Data)
    )
  }

  public static func insertRefund(
    _ request: Nest_Settlement_V1_RecordRefundRequest, response: Nest_Settlement_V1_RecordRefundResponse,
    in db: Database
  ) throws {
    try db.execute(
      sql: "INSERT INTO refunds (order_id, request, response) VALUES (?, ?, ?)",
      arguments: [request.orderID, Data(try request.serializedBytes()), Data(try response.serializedBytes())])
  }

  // MARK: Obligations and statements

  public static func save(_ obligation: Nest_Settlement_V1_OfflineObligation, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO obligations (id, order_id, isv_id, distributor_id, status, statement_id, accrued_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, statement_id = excluded.statement_id,
          body = excluded.body
        """,
      arguments: [
        obligation.id, obligation.orderID, obligation.isvID, obligation.distributorID, obligation.status.rawValue,
        obligation.statementID, obligation.accruedAtUnixMs, Data(try obligation.serializedBytes()),
      ])
  }

  public static func obligation(_ id: String, in db: Database) throws -> Nest_Settlement_V1_OfflineObligation? {
    try MessageRows.one(db, sql: "SELECT body FROM obligations WHERE id = ?", arguments: [id])
  }

  /// The OPEN obligations of a pair accrued in [start, end).
  public static func openObligations(isvID: String, distributorID: String, start: Int64, end: Int64, in db: Database)
    throws -> [Nest_Settlement_V1_OfflineObligation]
  {
    try MessageRows.all(
      db,
      sql: """
        SELECT body FROM obligations WHERE isv_id = ? AND distributor_id = ? AND status = ?
          AND accrued_at_unix_ms >= ? AND accrued_at_unix_ms < ? ORDER BY rowid
        """,
      arguments: [isvID, distributorID, Nest_Settlement_V1_ObligationStatus.open.rawValue, start, end])
  }

  public static func obligations(statementID: String, in db: Database) throws -> [Nest_Settlement_V1_OfflineObligation]
  {
    try MessageRows.all(
      db, sql: "SELECT body FROM obligations WHERE statement_id = ? ORDER BY rowid", arguments: [statementID])
  }

  public static func obligations(
    _ filter: Nest_Settlement_V1_ListObligationsRequest, party: String?, page: PageQuery, in db: Database
  ) throws -> (items: [Nest_Settlement_V1_OfflineObligation], nextPageToken: String) {
    var rows = RowFilter()
    if let party {
      rows.add("(isv_id = ? OR distributor_id = ?)", [party, party])
    }
    rows.equal([
      "isv_id": filter.isvID, "distributor_id": filter.distributorID, "order_id": filter.orderID,
      "statement_id": filter.statementID,
    ])
    if !filter.statuses.isEmpty {
      rows.oneOf("status", filter.statuses.map(\.rawValue))
    }
    rows.range("accrued_at_unix_ms", from: filter.accruedAfterUnixMs, before: filter.accruedBeforeUnixMs)
    return try MessageRows.page(
      db, table: "obligations", filter: rows, page: page, newestFirst: false)
  }

  public static func save(_ statement: Nest_Settlement_V1_Statement, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO statements (id, isv_id, distributor_id, body) VALUES (?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET body = excluded.body
        """,
      arguments: [statement.id, statement.isvID, statement.distributorID, Data(try statement.serializedBytes())])
  }

  public static func statement(_ id: String, in db: Database) throws -> Nest_Settlement_V1_Statement? {
    try MessageRows.one(db, sql: "SELECT body FROM statements WHERE id = ?", arguments: [id])
  }

  // MARK: Usage

  public static func usage(recordID: String, in db: Database) throws
    -> (record: Nest_Settlement_V1_UsageRecord, result: Nest_Settlement_V1_UsageResult)?
  {
    guard
      let row = try Row.fetchOne(
        db, sql: "SELECT record, result FROM usage_records WHERE record_id = ?", arguments: [recordID])
    else { return nil }
    return (try .init(serializedBytes: row["record"] as Data), try .init(serializedBytes: row["result"] as Data))
  }

  public static func insertUsage(
    _ record: Nest_Settlement_V1_UsageRecord, result: Nest_Settlement_V1_UsageResult, in db: Database
  ) throws {
    try db.execute(
      sql: "INSERT INTO usage_records (record_id, record, result) VALUES (?, ?, ?)",
      arguments: [record.recordID, Data(try record.serializedBytes()), Data(try result.serializedBytes())])
  }

  // MARK: Reconciliation

  /// Debits, credits and net per currency over every posting up to `asOf`.
  public static func sums(asOf: Int64, in db: Database) throws -> [Nest_Settlement_V1_CurrencySum] {
    try Row.fetchAll(
      db,
      sql: """
        SELECT p.currency,
          SUM(CASE WHEN p.amount_minor < 0 THEN p.amount_minor ELSE 0 END) AS debits,
          SUM(CASE WHEN p.amount_minor > 0 THEN p.amount_minor ELSE 0 END) AS credits
        FROM postings p JOIN transactions t ON t.id = p.transaction_id
        WHERE t.created_at_unix_ms <= ? GROUP BY p.currency ORDER BY p.currency
        """,
      arguments: [asOf]
    ).map { row in
      let currency: String = row["currency"]
      let debits: Int64 = row["debits"]
      let credits: Int64 = row["credits"]
      return .with {
        $0.debits = MoneyMath.money(currency, debits)
        $0.credits = MoneyMath.money(currency, credits)
        $0.net = MoneyMath.money(currency, debits + credits)
      }
    }
  }

  /// Transactions whose postings do not sum to zero in some currency.
  public static func unbalancedTransactions(asOf: Int64, in db: Database) throws
    -> [(transactionID: String, currency: String, net: Int64)]
  {
    try Row.fetchAll(
      db,
      sql: """
        SELECT p.transaction_id, p.currency, SUM(p.amount_minor) AS net
        FROM postings p JOIN transactions t ON t.id = p.transaction_id WHERE t.created_at_unix_ms <= ?
        GROUP BY p.transaction_id, p.currency HAVING SUM(p.amount_minor) != 0
        """,
      arguments: [asOf]
    ).map { ($0["transaction_id"], $0["currency"], $0["net"]) }
  }

  public static func count(_ sql: String, _ arguments: StatementArguments = [], in db: Database) throws -> UInt64 {
    UInt64(try Int.fetchOne(db, sql: sql, arguments: arguments) ?? 0)
  }

  /// Transactions of one kind, oldest first.
  public static func transactions(kind: Nest_Settlement_V1_TransactionKind, asOf: Int64, in db: Database) throws
    -> [Nest_Settlement_V1_LedgerTransaction]
  {
    try MessageRows.all(
      db, sql: "SELECT body FROM transactions WHERE kind = ? AND created_at_unix_ms <= ? ORDER BY rowid",
      arguments: [kind.rawValue, asOf])
  }

  /// How many obligations (and credits) each order has.
  public static func obligationCounts(in db: Database) throws -> [String: Int] {
    Dictionary(
      uniqueKeysWithValues: try Row.fetchAll(
        db, sql: "SELECT order_id, COUNT(*) AS n FROM obligations GROUP BY order_id"
      ).map { ($0["order_id"] as String, $0["n"] as Int) })
  }
}
