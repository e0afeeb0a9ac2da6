// Settlement's SQLite database: the double-entry ledger (LedgerSchema: typed columns,
// append-only, balanced by SQLite's own triggers), the sale snapshot each SALE was posted
// from, refunds, offline obligations and statements with their histories, and accepted usage
// records. Balances and reconciliation are SQL over these columns. Only this folder knows
// the schema.
import Foundation
public import GRDB
import NestDomain
public import NestProto
public import NestServiceKit

public struct SettlementStore: Sendable {
  public let database: NestDatabase

  public init(database: NestDatabase) {
    self.database = database
  }

  static let obligationHistory = HistoryTable("obligation_history")
  static let statementHistory = HistoryTable("statement_history")

  @Sendable public static func migrations(_ migrator: inout DatabaseMigrator) {
    // Release 0.1: messages as blobs, postings copied beside them.
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
    // The ledger in columns held by SQLite, everything else in columns: the rows of release
    // 0.1 are read from their messages and posted again, in their order.
    migrator.registerMigration("settlement-2-ledger") { db in
      let transactions = try Data.fetchAll(db.cachedStatement(sql: "SELECT body FROM transactions ORDER BY rowid")).map
      {
        try Document.decode($0, as: Transaction.self)
      }
      let sales = try Row.fetchAll(db.cachedStatement(sql: "SELECT request, response FROM sales ORDER BY rowid")).map {
        (
          try Document.decode($0["request"] as Data, as: Nest_Settlement_V1_RecordSaleRequest.self),
          try Document.decode($0["response"] as Data, as: Nest_Settlement_V1_RecordSaleResponse.self)
        )
      }
      let refunds = try Row.fetchAll(db.cachedStatement(sql: "SELECT request, response FROM refunds ORDER BY rowid"))
        .map {
          (
            try Document.decode($0["request"] as Data, as: Nest_Settlement_V1_RecordRefundRequest.self),
            try Document.decode($0["response"] as Data, as: Nest_Settlement_V1_RecordRefundResponse.self)
          )
        }
      let obligations = try Data.fetchAll(db.cachedStatement(sql: "SELECT body FROM obligations ORDER BY rowid")).map {
        try Document.decode($0, as: Obligation.self)
      }
      let statements = try Data.fetchAll(db.cachedStatement(sql: "SELECT body FROM statements ORDER BY rowid")).map {
        try Document.decode($0, as: Statement.self)
      }
      let usage = try Row.fetchAll(db.cachedStatement(sql: "SELECT record, result FROM usage_records ORDER BY rowid"))
        .map {
          (
            try Document.decode($0["record"] as Data, as: Nest_Settlement_V1_UsageRecord.self),
            try Document.decode($0["result"] as Data, as: Nest_Settlement_V1_UsageResult.self)
          )
        }
      for table in ["usage_records", "statements", "obligations", "refunds", "sales", "postings", "transactions"] {
        try db.drop(table: table)
      }
      try Self.createTables(db)
      for transaction in transactions { try Self.insert(transaction, in: db) }
      for transaction in transactions where !transaction.reversesTransactionID.isEmpty {
        try Self.insertReversal(transaction.id, reverses: transaction.reversesTransactionID, in: db)
      }
      for statement in statements { try Self.save(statement, in: db) }
      for obligation in obligations { try Self.save(obligation, in: db) }
      for (request, response) in sales {
        try Self.insertSale(
          request, transactionID: response.transaction?.id ?? "", obligationID: response.obligation?.id,
          recordedAt: response.transaction?.createdAtUnixMs ?? 0, in: db)
      }
      for (request, response) in refunds { try Self.insertRefund(request, response: response, in: db) }
      for (record, result) in usage {
        try Self.insertUsage(record, result: result, in: db)
      }
    }
  }

  static func createTables(_ db: Database) throws {
    try LedgerSchema.create(in: db)
    try db.execute(
      sql: """
        -- The snapshot each SALE was posted from: its postings follow from these columns.
        CREATE TABLE sales (
          order_id TEXT PRIMARY KEY,
          kind INTEGER NOT NULL CHECK (kind IN (1, 2)),
          parent_order_id TEXT NOT NULL,
          buyer_kind INTEGER NOT NULL CHECK (buyer_kind BETWEEN 1 AND 3),
          buyer_id TEXT NOT NULL,
          seller_kind INTEGER NOT NULL CHECK (seller_kind BETWEEN 1 AND 3),
          seller_id TEXT NOT NULL,
          currency TEXT NOT NULL,
          amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
          commission_bps INTEGER NOT NULL CHECK (commission_bps BETWEEN 0 AND 10000),
          scenario INTEGER NOT NULL CHECK (scenario BETWEEN 1 AND 5),
          isv_id TEXT NOT NULL,
          distributor_id TEXT NOT NULL,
          wholesale_currency TEXT,
          wholesale_amount_minor INTEGER CHECK (wholesale_amount_minor >= 0),
          authorization_id TEXT NOT NULL,
          paid_at_unix_ms INTEGER NOT NULL,
          transaction_id TEXT NOT NULL UNIQUE REFERENCES ledger_transactions(id),
          obligation_id TEXT,
          recorded_at_unix_ms INTEGER NOT NULL,
          -- The request as received, to tell a redelivery from a different snapshot.
          request BLOB NOT NULL
        );
        CREATE TABLE refunds (
          order_id TEXT PRIMARY KEY,
          request BLOB NOT NULL,
          -- What the first RecordRefund answered, for its repeats.
          response BLOB NOT NULL
        );
        CREATE TABLE obligations (
          id TEXT PRIMARY KEY,
          order_id TEXT NOT NULL,
          isv_id TEXT NOT NULL,
          distributor_id TEXT NOT NULL,
          currency TEXT NOT NULL,
          amount_minor INTEGER NOT NULL,
          status INTEGER NOT NULL CHECK (status BETWEEN 1 AND 5),
          statement_id TEXT NOT NULL,
          offsets_obligation_id TEXT NOT NULL,
          authorization_id TEXT NOT NULL,
          accrued_at_unix_ms INTEGER NOT NULL,
          created_at_unix_ms INTEGER NOT NULL,
          updated_at_unix_ms INTEGER NOT NULL,
          -- An obligation owes a non-negative amount; a credit (offsetting one) a non-positive.
          CHECK ((offsets_obligation_id = '' AND amount_minor >= 0) OR (offsets_obligation_id != '' AND amount_minor <= 0)),
          -- Only an obligation on a statement can be STATEMENTED or SETTLED.
          CHECK (status NOT IN (2, 3) OR statement_id != '')
        );
        CREATE INDEX obligations_order ON obligations(order_id);
        CREATE INDEX obligations_pair ON obligations(isv_id, distributor_id, status);
        CREATE INDEX obligations_statement ON obligations(statement_id);
        CREATE TABLE statements (
          id TEXT PRIMARY KEY,
          isv_id TEXT NOT NULL,
          distributor_id TEXT NOT NULL,
          period_start_unix_ms INTEGER NOT NULL,
          period_end_unix_ms INTEGER NOT NULL,
          status INTEGER NOT NULL CHECK (status BETWEEN 1 AND 3),
          external_reference TEXT NOT NULL,
          dispute_reason TEXT NOT NULL,
          issued_by TEXT NOT NULL,
          issued_at_unix_ms INTEGER NOT NULL,
          settled_at_unix_ms INTEGER NOT NULL,
          disputed_at_unix_ms INTEGER NOT NULL,
          CHECK (period_end_unix_ms > period_start_unix_ms),
          CHECK (status != 2 OR external_reference != '')
        );
        CREATE INDEX statements_pair ON statements(isv_id, distributor_id);
        -- Accepted usage records: each charged once, by its USAGE transaction.
        CREATE TABLE usage_records (
          record_id TEXT PRIMARY KEY,
          instance_id TEXT NOT NULL,
          metered_item TEXT NOT NULL,
          quantity INTEGER NOT NULL CHECK (quantity >= 0),
          unit TEXT NOT NULL,
          currency TEXT NOT NULL,
          cost_minor INTEGER NOT NULL CHECK (cost_minor >= 0),
          recorded_at_unix_ms INTEGER NOT NULL,
          transaction_id TEXT NOT NULL UNIQUE REFERENCES ledger_transactions(id),
          fee_payer_role INTEGER NOT NULL,
          fee_payer_id TEXT NOT NULL,
          scenario INTEGER NOT NULL,
          -- The attributes (a map nobody queries) and any fields of newer reporters.
          document BLOB NOT NULL
        );
        """)
    for table in ["sales", "refunds", "usage_records"] { try LedgerSchema.appendOnly(table, in: db) }
    try Self.obligationHistory.create(in: db)
    try Self.statementHistory.create(in: db)
  }

  // MARK: Transactions

  /// Posts a transaction: its postings, then its header (which the balance trigger checks).
  public static func insert(_ transaction: Transaction, in db: Database) throws {
    for (seq, posting) in transaction.postings.enumerated() {
      try db.cachedStatement(
        sql: """
          INSERT INTO ledger_postings (transaction_id, seq, account_kind, account_id, currency, amount_minor, memo)
          VALUES (?, ?, ?, ?, ?, ?, ?)
          """
      ).execute(arguments: [
        transaction.id, seq, posting.account?.kind.rawValue ?? 0, posting.account?.accountID ?? "",
        posting.amount?.currency ?? "", posting.amount?.amountMinor ?? 0, posting.memo,
      ])
    }
    var orderID: String? = nil
    var usageRecordID: String? = nil
    switch transaction.source {
    case .orderID(let id)?: orderID = id
    case .usageRecordID(let id)?: usageRecordID = id
    case nil: break
    }
    try db.cachedStatement(
      sql: """
        INSERT INTO ledger_transactions (id, kind, order_id, usage_record_id, instance_id, created_at_unix_ms)
        VALUES (?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      transaction.id, transaction.kind.rawValue, orderID, usageRecordID, transaction.instanceID,
      transaction.createdAtUnixMs,
    ])
  }

  /// Links a REFUND to the SALE it reverses (the mirror trigger checks the postings).
  public static func insertReversal(_ transactionID: String, reverses reversedID: String, in db: Database) throws {
    try db.cachedStatement(sql: "INSERT INTO ledger_reversals (transaction_id, reversed_transaction_id) VALUES (?, ?)")
      .execute(arguments: [transactionID, reversedID])
  }

  /// Transactions selected by `whereClause` (over table alias `t`), with their postings and
  /// reversal links, in `order`.
  static func transactions(
    where whereClause: String, _ arguments: StatementArguments, order: String = "t.rowid", in db: Database
  ) throws -> [Transaction] {
    let headers = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT t.id, t.kind, t.order_id, t.usage_record_id, t.instance_id, t.created_at_unix_ms,
            COALESCE(r.reversed_transaction_id, '') AS reverses, COALESCE(b.transaction_id, '') AS reversed_by
          FROM ledger_transactions t
          LEFT JOIN ledger_reversals r ON r.transaction_id = t.id
          LEFT JOIN ledger_reversals b ON b.reversed_transaction_id = t.id
          WHERE \(whereClause) ORDER BY \(order)
          """), arguments: arguments)
    guard !headers.isEmpty else { return [] }
    let ids: [String] = headers.map { $0["id"] }
    var postings: [String: [Posting]] = [:]
    for row in try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT transaction_id, account_kind, account_id, currency, amount_minor, memo FROM ledger_postings
          WHERE \(ValueList.sql("transaction_id")) ORDER BY transaction_id, seq
          """), arguments: [ValueList.argument(ids)])
    {
      postings[row["transaction_id"], default: []].append(
        .with {
          $0.account = .with {
            $0.kind = .init(rawValue: row["account_kind"])
            $0.accountID = row["account_id"]
          }
          $0.amount = MoneyMath.money(row["currency"], row["amount_minor"])
          $0.memo = row["memo"]
        })
    }
    return headers.map { row in
      .with {
        $0.id = row["id"]
        $0.kind = .init(rawValue: row["kind"])
        if let order: String = row["order_id"] { $0.source = .orderID(order) }
        if let record: String = row["usage_record_id"] { $0.source = .usageRecordID(record) }
        $0.instanceID = row["instance_id"]
        $0.createdAtUnixMs = row["created_at_unix_ms"]
        $0.reversesTransactionID = row["reverses"]
        $0.reversedByTransactionID = row["reversed_by"]
        $0.postings = postings[row["id"] as String] ?? []
      }
    }
  }

  public static func transaction(_ id: String, in db: Database) throws -> Transaction? {
    try Self.transactions(where: "t.id = ?", [id], in: db).first
  }

  public static func transactions(
    account: AccountRef?, filter: Nest_Settlement_V1_ListTransactionsRequest, page: PageQuery, in db: Database
  ) throws -> (items: [Transaction], nextPageToken: String) {
    var rows = RowFilter()
    if let account {
      rows.add(
        "t.id IN (SELECT transaction_id FROM ledger_postings WHERE account_kind = ? AND account_id = ?)",
        [account.kind.rawValue, account.accountID])
    }
    if filter.kind != .unspecified { rows.add("t.kind = ?", [filter.kind.rawValue]) }
    if !filter.orderID.isEmpty { rows.add("t.order_id = ?", [filter.orderID]) }
    if !filter.instanceID.isEmpty { rows.add("t.instance_id = ?", [filter.instanceID]) }
    rows.range("t.created_at_unix_ms", from: filter.createdAfterUnixMs, before: filter.createdBeforeUnixMs)
    if page.after > 0 { rows.add("t.rowid < ?", [page.after]) }
    var arguments = rows.arguments
    arguments += [page.size + 1]
    let ids = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT t.rowid AS page_rowid, t.id FROM ledger_transactions t
          \(rows.conditions.isEmpty ? "" : "WHERE " + rows.conditions.joined(separator: " AND "))
          ORDER BY t.rowid DESC LIMIT ?
          """), arguments: arguments)
    let pageIDs: [String] = ids.prefix(page.size).map { $0["id"] }
    let items =
      pageIDs.isEmpty
      ? []
      : try Self.transactions(
        where: "t.id IN (\(pageIDs.map { _ in "?" }.joined(separator: ", ")))", StatementArguments(pageIDs),
        order: "t.rowid DESC", in: db)
    let next = ids.count > page.size ? PageQuery.token(after: ids[page.size - 1]["page_rowid"]) : ""
    return (items, next)
  }

  /// An account's sums per currency (sorted) and its newest transaction's time.
  public static func balance(of account: AccountRef, in db: Database) throws
    -> (amounts: [Nest_Common_V1_Money], asOf: Int64)
  {
    let rows = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT p.currency, SUM(p.amount_minor) AS total, MAX(t.created_at_unix_ms) AS newest
          FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id
          WHERE p.account_kind = ? AND p.account_id = ? GROUP BY p.currency ORDER BY p.currency
          """),
      arguments: [account.kind.rawValue, account.accountID])
    return (rows.map { MoneyMath.money($0["currency"], $0["total"]) }, rows.map { $0["newest"] as Int64 }.max() ?? 0)
  }

  // MARK: Sales and refunds

  /// The snapshot a sale was recorded from, its transaction and its obligation.
  public static func sale(orderID: String, in db: Database) throws
    -> (request: Nest_Settlement_V1_RecordSaleRequest, transactionID: String, obligationID: String?)?
  {
    guard
      let row = try Row.fetchOne(
        db.cachedStatement(sql: "SELECT request, transaction_id, obligation_id FROM sales WHERE order_id = ?"),
        arguments: [orderID])
    else { return nil }
    return (try Document.decode(row["request"] as Data), row["transaction_id"], row["obligation_id"])
  }

  public static func insertSale(
    _ request: Nest_Settlement_V1_RecordSaleRequest, transactionID: String, obligationID: String?, recordedAt: Int64,
    in db: Database
  ) throws {
    let buyer = try LedgerRules.account(request.buyer ?? .init())
    let seller = try LedgerRules.account(request.seller ?? .init())
    let scenario = request.scenario ?? .init()
    try db.cachedStatement(
      sql: """
        INSERT INTO sales (order_id, kind, parent_order_id, buyer_kind, buyer_id, seller_kind, seller_id, currency,
          amount_minor, commission_bps, scenario, isv_id, distributor_id, wholesale_currency, wholesale_amount_minor,
          authorization_id, paid_at_unix_ms, transaction_id, obligation_id, recorded_at_unix_ms, request)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      request.orderID, request.kind.rawValue, request.parentOrderID, buyer.kind.rawValue, buyer.accountID,
      seller.kind.rawValue, seller.accountID, request.amount?.currency ?? "", request.amount?.amountMinor ?? 0,
      request.commissionBps, scenario.scenario.rawValue, scenario.isvID, scenario.distributorID,
      request.wholesaleAmount?.currency, request.wholesaleAmount?.amountMinor, request.authorizationID,
      request.paidAtUnixMs, transactionID, obligationID, recordedAt, try Document.encode(request),
    ])
  }

  public static func refund(orderID: String, in db: Database) throws
    -> (request: Nest_Settlement_V1_RecordRefundRequest, response: Nest_Settlement_V1_RecordRefundResponse)?
  {
    guard
      let row = try Row.fetchOne(
        db.cachedStatement(sql: "SELECT request, response FROM refunds WHERE order_id = ?"), arguments: [orderID])
    else { return nil }
    return (try Document.decode(row["request"] as Data), try Document.decode(row["response"] as Data))
  }

  public static func insertRefund(
    _ request: Nest_Settlement_V1_RecordRefundRequest, response: Nest_Settlement_V1_RecordRefundResponse,
    in db: Database
  ) throws {
    try db.cachedStatement(sql: "INSERT INTO refunds (order_id, request, response) VALUES (?, ?, ?)").execute(
      arguments: [request.orderID, try Document.encode(request), try Document.encode(response)])
  }

  // MARK: Obligations and statements

  struct ObligationRow: ColumnRecord {
    static let databaseTableName = "obligations"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.orderId = try row.decode(forColumn: "order_id")
      self.isvId = try row.decode(forColumn: "isv_id")
      self.distributorId = try row.decode(forColumn: "distributor_id")
      self.currency = try row.decode(forColumn: "currency")
      self.amountMinor = try row.decode(forColumn: "amount_minor")
      self.status = try row.decode(forColumn: "status")
      self.statementId = try row.decode(forColumn: "statement_id")
      self.offsetsObligationId = try row.decode(forColumn: "offsets_obligation_id")
      self.authorizationId = try row.decode(forColumn: "authorization_id")
      self.accruedAtUnixMs = try row.decode(forColumn: "accrued_at_unix_ms")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.updatedAtUnixMs = try row.decode(forColumn: "updated_at_unix_ms")
    }

    static let columns = ColumnLayout<ObligationRow>(
      table: "obligations", key: ["id"],
      [
        "id": { $0.id },
        "order_id": { $0.orderId },
        "isv_id": { $0.isvId },
        "distributor_id": { $0.distributorId },
        "currency": { $0.currency },
        "amount_minor": { $0.amountMinor },
        "status": { $0.status },
        "statement_id": { $0.statementId },
        "offsets_obligation_id": { $0.offsetsObligationId },
        "authorization_id": { $0.authorizationId },
        "accrued_at_unix_ms": { $0.accruedAtUnixMs },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "updated_at_unix_ms": { $0.updatedAtUnixMs },
      ])

    var id: String
    var orderId: String
    var isvId: String
    var distributorId: String
    var currency: String
    var amountMinor: Int64
    var status: Int32
    var statementId: String
    var offsetsObligationId: String
    var authorizationId: String
    var accruedAtUnixMs: Int64
    var createdAtUnixMs: Int64
    var updatedAtUnixMs: Int64

    init(_ o: Obligation) {
      self.id = o.id
      self.orderId = o.orderID
      self.isvId = o.isvID
      self.distributorId = o.distributorID
      self.currency = o.amount?.currency ?? ""
      self.amountMinor = o.amount?.amountMinor ?? 0
      self.status = o.status.rawValue
      self.statementId = o.statementID
      self.offsetsObligationId = o.offsetsObligationID
      self.authorizationId = o.authorizationID
      self.accruedAtUnixMs = o.accruedAtUnixMs
      self.createdAtUnixMs = o.createdAtUnixMs
      self.updatedAtUnixMs = o.updatedAtUnixMs
    }

    func message(history: [Nest_Common_V1_StatusChange]) -> Obligation {
      .with {
        $0.id = self.id
        $0.orderID = self.orderId
        $0.isvID = self.isvId
        $0.distributorID = self.distributorId
        $0.amount = MoneyMath.money(self.currency, self.amountMinor)
        $0.status = .init(rawValue: self.status)
        $0.statementID = self.statementId
        $0.offsetsObligationID = self.offsetsObligationId
        $0.authorizationID = self.authorizationId
        $0.accruedAtUnixMs = self.accruedAtUnixMs
        $0.createdAtUnixMs = self.createdAtUnixMs
        $0.updatedAtUnixMs = self.updatedAtUnixMs
        $0.history = history
      }
    }
  }

  static func obligations(_ rows: [ObligationRow], in db: Database) throws -> [Obligation] {
    let histories = try Self.obligationHistory.entries(for: rows.map(\.id), in: db)
    return rows.map { $0.message(history: histories[$0.id] ?? []) }
  }

  public static func save(_ obligation: Obligation, in db: Database) throws {
    try ObligationRow(obligation).upsert(db)
    let entered = try Self.obligationHistory.append(obligation.history, for: obligation.id, in: db)
    try EventLog.record(SettlementEvents.drafts(obligation, entered: entered), in: db)
  }

  public static func obligation(_ id: String, in db: Database) throws -> Obligation? {
    try Self.obligations(ObligationRow.fetchAll(db, where: "id", is: id), in: db).first
  }

  /// The OPEN obligations of a pair accrued in [start, end).
  public static func openObligations(isvID: String, distributorID: String, start: Int64, end: Int64, in db: Database)
    throws -> [Obligation]
  {
    try Self.obligations(
      ObligationRow.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT * FROM obligations WHERE isv_id = ? AND distributor_id = ? AND status = ?
              AND accrued_at_unix_ms >= ? AND accrued_at_unix_ms < ? ORDER BY rowid
            """),
        arguments: [isvID, distributorID, Nest_Settlement_V1_ObligationStatus.open.rawValue, start, end]), in: db)
  }

  public static func obligations(statementID: String, in db: Database) throws -> [Obligation] {
    try Self.obligations(
      ObligationRow.fetchAll(
        db.cachedStatement(sql: "SELECT * FROM obligations WHERE statement_id = ? ORDER BY rowid"),
        arguments: [statementID]), in: db)
  }

  public static func obligations(
    _ filter: Nest_Settlement_V1_ListObligationsRequest, party: String?, page: PageQuery, in db: Database
  ) throws -> (items: [Obligation], nextPageToken: String) {
    var rows = RowFilter()
    if let party { rows.add("(isv_id = ? OR distributor_id = ?)", [party, party]) }
    rows.equal([
      "isv_id": filter.isvID, "distributor_id": filter.distributorID, "order_id": filter.orderID,
      "statement_id": filter.statementID,
    ])
    if !filter.statuses.isEmpty { rows.oneOf("status", filter.statuses.map(\.rawValue)) }
    rows.range("accrued_at_unix_ms", from: filter.accruedAfterUnixMs, before: filter.accruedBeforeUnixMs)
    let page = try RecordPage<ObligationRow>.fetch(db, filter: rows, page: page, newestFirst: false)
    return (try Self.obligations(page.rows, in: db), page.nextPageToken)
  }

  struct StatementRow: ColumnRecord {
    static let databaseTableName = "statements"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.isvId = try row.decode(forColumn: "isv_id")
      self.distributorId = try row.decode(forColumn: "distributor_id")
      self.periodStartUnixMs = try row.decode(forColumn: "period_start_unix_ms")
      self.periodEndUnixMs = try row.decode(forColumn: "period_end_unix_ms")
      self.status = try row.decode(forColumn: "status")
      self.externalReference = try row.decode(forColumn: "external_reference")
      self.disputeReason = try row.decode(forColumn: "dispute_reason")
      self.issuedBy = try row.decode(forColumn: "issued_by")
      self.issuedAtUnixMs = try row.decode(forColumn: "issued_at_unix_ms")
      self.settledAtUnixMs = try row.decode(forColumn: "settled_at_unix_ms")
      self.disputedAtUnixMs = try row.decode(forColumn: "disputed_at_unix_ms")
    }

    static let columns = ColumnLayout<StatementRow>(
      table: "statements", key: ["id"],
      [
        "id": { $0.id },
        "isv_id": { $0.isvId },
        "distributor_id": { $0.distributorId },
        "period_start_unix_ms": { $0.periodStartUnixMs },
        "period_end_unix_ms": { $0.periodEndUnixMs },
        "status": { $0.status },
        "external_reference": { $0.externalReference },
        "dispute_reason": { $0.disputeReason },
        "issued_by": { $0.issuedBy },
        "issued_at_unix_ms": { $0.issuedAtUnixMs },
        "settled_at_unix_ms": { $0.settledAtUnixMs },
        "disputed_at_unix_ms": { $0.disputedAtUnixMs },
      ])

    var id: String
    var isvId: String
    var distributorId: String
    var periodStartUnixMs: Int64
    var periodEndUnixMs: Int64
    var status: Int32
    var externalReference: String
    var disputeReason: String
    var issuedBy: String
    var issuedAtUnixMs: Int64
    var settledAtUnixMs: Int64
    var disputedAtUnixMs: Int64

    init(_ s: Statement) {
      self.id = s.id
      self.isvId = s.isvID
      self.distributorId = s.distributorID
      self.periodStartUnixMs = s.periodStartUnixMs
      self.periodEndUnixMs = s.periodEndUnixMs
      self.status = s.status.rawValue
      self.externalReference = s.externalReference
      self.disputeReason = s.disputeReason
      self.issuedBy = s.issuedBy
      self.issuedAtUnixMs = s.issuedAtUnixMs
      self.settledAtUnixMs = s.settledAtUnixMs
      self.disputedAtUnixMs = s.disputedAtUnixMs
    }
  }

  /// Statements with their obligations' ids and totals (read from the obligations, which
  /// keep their statement) and histories.
  static func statements(_ rows: [StatementRow], in db: Database) throws -> [Statement] {
    let ids = rows.map(\.id)
    let histories = try Self.statementHistory.entries(for: ids, in: db)
    var members: [String: [(String, Nest_Common_V1_Money)]] = [:]
    if !ids.isEmpty {
      for row in try Row.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT statement_id, id, currency, amount_minor FROM obligations
            WHERE \(ValueList.sql("statement_id")) ORDER BY rowid
            """), arguments: [ValueList.argument(ids)])
      {
        members[row["statement_id"], default: []].append(
          (row["id"], MoneyMath.money(row["currency"], row["amount_minor"])))
      }
    }
    return rows.map { row in
      .with {
        $0.id = row.id
        $0.isvID = row.isvId
        $0.distributorID = row.distributorId
        $0.periodStartUnixMs = row.periodStartUnixMs
        $0.periodEndUnixMs = row.periodEndUnixMs
        $0.obligationIds = (members[row.id] ?? []).map(\.0)
        $0.totals = MoneyMath.totals((members[row.id] ?? []).map(\.1))
        $0.status = .init(rawValue: row.status)
        $0.externalReference = row.externalReference
        $0.disputeReason = row.disputeReason
        $0.issuedBy = row.issuedBy
        $0.issuedAtUnixMs = row.issuedAtUnixMs
        $0.settledAtUnixMs = row.settledAtUnixMs
        $0.disputedAtUnixMs = row.disputedAtUnixMs
        $0.history = histories[row.id] ?? []
      }
    }
  }

  public static func save(_ statement: Statement, in db: Database) throws {
    try StatementRow(statement).upsert(db)
    let entered = try Self.statementHistory.append(statement.history, for: statement.id, in: db)
    try EventLog.record(SettlementEvents.drafts(statement, entered: entered), in: db)
  }

  public static func statement(_ id: String, in db: Database) throws -> Statement? {
    try Self.statements(StatementRow.fetchAll(db, where: "id", is: id), in: db).first
  }

  public static func statements(
    _ filter: Nest_Settlement_V1_ListStatementsRequest, party: String?, page: PageQuery, in db: Database
  ) throws -> (items: [Statement], nextPageToken: String) {
    var rows = RowFilter()
    if let party { rows.add("(isv_id = ? OR distributor_id = ?)", [party, party]) }
    rows.equal(["isv_id": filter.isvID, "distributor_id": filter.distributorID])
    if !filter.statuses.isEmpty { rows.oneOf("status", filter.statuses.map(\.rawValue)) }
    rows.range("issued_at_unix_ms", from: filter.issuedAfterUnixMs, before: filter.issuedBeforeUnixMs)
    let page = try RecordPage<StatementRow>.fetch(db, filter: rows, page: page, newestFirst: true)
    return (try Self.statements(page.rows, in: db), page.nextPageToken)
  }

  // MARK: Usage

  /// The first result of an accepted usage record, and the record as it was accepted.
  public static func usage(recordID: String, in db: Database) throws
    -> (record: Nest_Settlement_V1_UsageRecord, result: Nest_Settlement_V1_UsageResult)?
  {
    guard
      let row = try Row.fetchOne(
        db.cachedStatement(sql: "SELECT * FROM usage_records WHERE record_id = ?"), arguments: [recordID])
    else { return nil }
    var record = try Document.decode(row["document"] as Data, as: Nest_Settlement_V1_UsageRecord.self)
    record.recordID = row["record_id"]
    record.instanceID = row["instance_id"]
    record.meteredItem = row["metered_item"]
    record.quantity = row["quantity"]
    record.unit = row["unit"]
    record.cost = MoneyMath.money(row["currency"], row["cost_minor"])
    record.recordedAtUnixMs = row["recorded_at_unix_ms"]
    let result = Nest_Settlement_V1_UsageResult.with {
      $0.recordID = row["record_id"]
      $0.result = .accepted
      $0.transactionID = row["transaction_id"]
      $0.feePayer = .with {
        $0.role = .init(rawValue: row["fee_payer_role"])
        $0.accountID = row["fee_payer_id"]
      }
      $0.scenario = .init(rawValue: row["scenario"])
    }
    return (record, result)
  }

  public static func insertUsage(
    _ record: Nest_Settlement_V1_UsageRecord, result: Nest_Settlement_V1_UsageResult, in db: Database
  ) throws {
    var rest = Nest_Settlement_V1_UsageRecord()
    rest.attributes = record.attributes
    rest.unknownFields = record.unknownFields
    try db.cachedStatement(
      sql: """
        INSERT INTO usage_records (record_id, instance_id, metered_item, quantity, unit, currency, cost_minor,
          recorded_at_unix_ms, transaction_id, fee_payer_role, fee_payer_id, scenario, document)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      record.recordID, record.instanceID, record.meteredItem, record.quantity, record.unit,
      record.cost?.currency ?? "", record.cost?.amountMinor ?? 0, record.recordedAtUnixMs, result.transactionID,
      result.feePayer?.role.rawValue ?? 0, result.feePayer?.accountID ?? "", result.scenario.rawValue,
      try Document.encode(rest),
    ])
  }
}
