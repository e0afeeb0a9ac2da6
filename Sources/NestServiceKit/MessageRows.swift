// Resources stored as their encoded message (a `body` blob) beside the columns that lists
// filter on: one way to read them back and to page through them, for every service's store.
import Foundation
public import GRDB
public import NestProto

public enum MessageRows {
  /// The message in the `body` column of the first row `sql` selects, if any.
  public static func one<M: NestMessage>(
    _ db: Database, sql: String, arguments: StatementArguments = [], as type: M.Type = M.self
  ) throws -> M? {
    try Data.fetchOne(db.cachedStatement(sql: sql), arguments: arguments).map { try M(serializedBytes: $0) }
  }

  /// Every message `sql` selects in its `body` column.
  public static func all<M: NestMessage>(
    _ db: Database, sql: String, arguments: StatementArguments = [], as type: M.Type = M.self
  ) throws -> [M] {
    try Data.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map { try M(serializedBytes: $0) }
  }

  /// One page of `table`'s rows matching `filter`, newest first or oldest first, and the
  /// token of the next page ("" at the end).
  public static func page<M: NestMessage>(
    _ db: Database, table: String, filter: RowFilter, page: PageQuery, newestFirst: Bool, as type: M.Type = M.self
  ) throws -> (items: [M], nextPageToken: String) {
    var conditions = filter.conditions
    var arguments = filter.arguments
    if page.after > 0 {
      conditions.append(newestFirst ? "rowid < ?" : "rowid > ?")
      arguments += [page.after]
    }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    arguments += [page.size + 1]
    let rows = try Row.fetchAll(
      db.cachedStatement(
        sql: "SELECT rowid, body FROM \(table) \(whereClause) ORDER BY rowid \(newestFirst ? "DESC" : "ASC") LIMIT ?"),
      arguments: arguments)
    // By position: a fetched row finds a column by name by lowercasing every column's name.
    let items = try rows.prefix(page.size).map { try M(serializedBytes: $0[1] as Data) }
    let next = rows.count > page.size ? PageQuery.token(after: rows[page.size - 1][0]) : ""
    return (items, next)
  }
}

extension FetchableRecord where Self: TableRecord {
  /// The records whose `column` is `value`, through a statement compiled once per connection
  /// and reused (GRDB's `fetchAll(db, keys:)` and `filter(...)` compile theirs on every call,
  /// which costs more than the read on a hot path).
  public static func fetchAll(
    _ db: Database, where column: String, is value: some DatabaseValueConvertible
  ) throws -> [Self] {
    try Self.fetchAll(
      db.cachedStatement(sql: "SELECT * FROM \(Self.databaseTableName) WHERE \(column) = ?"), arguments: [value])
  }

  /// The records whose `column` is one of `values`, in the order they were stored, through
  /// one cached statement whatever the number of values (`ValueList`).
  public static func fetchAll(_ db: Database, where column: String, in values: [String]) throws -> [Self] {
    guard !values.isEmpty else { return [] }
    return try Self.fetchAll(
      db.cachedStatement(
        sql: "SELECT * FROM \(Self.databaseTableName) WHERE \(ValueList.sql(column)) ORDER BY rowid"),
      arguments: [ValueList.argument(values)])
  }

  /// The first record whose `column` is `value` (see `fetchAll(_:where:is:)`).
  public static func fetchOne(
    _ db: Database, where column: String, is value: some DatabaseValueConvertible
  ) throws -> Self? {
    try Self.fetchOne(
      db.cachedStatement(sql: "SELECT * FROM \(Self.databaseTableName) WHERE \(column) = ? LIMIT 1"),
      arguments: [value])
  }
}

/// A record's columns in one list: their names and how each is read from the record. The
/// record's GRDB encoding, its insert, update and upsert all come from it, each one statement
/// compiled once per connection, without Codable or GRDB's persistence container (whose
/// keyed containers and per-call SQL cost more than the write itself on a hot path).
public struct ColumnLayout<Record>: Sendable {
  public typealias Read = @Sendable (Record) -> (any DatabaseValueConvertible)?
  public let names: [String]
  let reads: [Read]
  /// `INSERT` of every column; any conflict is an error.
  let insertSQL: String
  /// `INSERT ... ON CONFLICT (key) DO UPDATE SET` every column that is neither key nor
  /// insert-only.
  let upsertSQL: String
  /// `UPDATE ... SET` those same columns `WHERE` the key.
  let updateSQL: String
  /// The positions of the columns `updateSQL` binds, in its order: the updated, then the key.
  let updateOrder: [Int]
  let key: [String]

  /// - `insertOnly`: columns written when the row is inserted and never after (what a row
  ///   was made from); update and upsert leave them as they are, so a record made to update
  ///   one need not carry them.
  public init(table: String, key: [String], insertOnly: [String] = [], _ columns: KeyValuePairs<String, Read>) {
    let names = columns.map(\.key)
    precondition(Set(key + insertOnly).isSubset(of: names), "\(table): key and insert-only columns must be columns")
    self.names = names
    self.reads = columns.map(\.value)
    self.key = key
    let updated = names.indices.filter { !key.contains(names[$0]) && !insertOnly.contains(names[$0]) }
    precondition(!updated.isEmpty, "\(table): no column to update")
    self.updateOrder = updated + key.map { names.firstIndex(of: $0)! }
    let insert = """
      INSERT INTO \(table) (\(names.joined(separator: ", ")))
      VALUES (\(names.map { _ in "?" }.joined(separator: ", ")))
      """
    self.insertSQL = insert
    self.upsertSQL = """
      \(insert)
      ON CONFLICT (\(key.joined(separator: ", "))) DO UPDATE SET \(
        updated.map { "\(names[$0]) = excluded.\(names[$0])" }.joined(separator: ", "))
      """
    self.updateSQL = """
      UPDATE \(table) SET \(updated.map { "\(names[$0]) = ?" }.joined(separator: ", "))
      WHERE \(key.map { "\($0) = ?" }.joined(separator: " AND "))
      """
  }

  func arguments(_ record: Record) -> StatementArguments {
    StatementArguments(self.reads.map { $0(record) })
  }

  func updateArguments(_ record: Record) -> StatementArguments {
    StatementArguments(self.updateOrder.map { self.reads[$0](record) })
  }
}

/// A record stored column by column, as its `ColumnLayout` says.
public protocol ColumnRecord: FetchableRecord, PersistableRecord {
  static var columns: ColumnLayout<Self> { get }
}

extension ColumnRecord {
  public func encode(to container: inout PersistenceContainer) {
    for (name, read) in zip(Self.columns.names, Self.columns.reads) { container[name] = read(self) }
  }

  /// Inserts the record, or when its key is taken overwrites every column but the key and
  /// the insert-only ones (GRDB's `save` encodes the record three times and tries an UPDATE
  /// before each INSERT).
  public func upsert(_ db: Database) throws {
    try db.cachedStatement(sql: Self.columns.upsertSQL).execute(arguments: Self.columns.arguments(self))
  }

  /// Inserts the record; a row with its key (or any unique value of it) is an error.
  public func insertRow(_ db: Database) throws {
    try db.cachedStatement(sql: Self.columns.insertSQL).execute(arguments: Self.columns.arguments(self))
  }

  /// Overwrites the stored row with the record's key: every column but the key and the
  /// insert-only ones. No such row is `RecordError.recordNotFound`, as GRDB's `update` says.
  public func updateRow(_ db: Database) throws {
    try db.cachedStatement(sql: Self.columns.updateSQL).execute(arguments: Self.columns.updateArguments(self))
    guard db.changesCount > 0 else {
      let key = Self.columns.key.map { name in
        (name, Self.columns.reads[Self.columns.names.firstIndex(of: name)!](self)?.databaseValue ?? .null)
      }
      throw RecordError.recordNotFound(
        databaseTableName: Self.databaseTableName, key: Dictionary(key, uniquingKeysWith: { first, _ in first }))
    }
  }
}

/// One page of a table's records matching a filter, newest or oldest first (by rowid), and
/// the token of the next page ("" at the end).
public struct RecordPage<Record: FetchableRecord & TableRecord> {
  public var rows: [Record]
  public var nextPageToken: String

  public static func fetch(_ db: Database, filter: RowFilter, page: PageQuery, newestFirst: Bool) throws -> Self {
    var conditions = filter.conditions
    var arguments = filter.arguments
    if page.after > 0 {
      conditions.append(newestFirst ? "rowid < ?" : "rowid > ?")
      arguments += [page.after]
    }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    arguments += [page.size + 1]
    // Each record decoded from the statement's own row, which finds a column by name in a
    // table made once per query; a row fetched on its own (`Row.fetchAll`) lowercases every
    // column's name for each value read, hundreds of times per record.
    let cursor = try Row.fetchCursor(
      db.cachedStatement(
        sql: """
          SELECT rowid AS page_rowid, * FROM \(Record.databaseTableName) \(whereClause)
          ORDER BY rowid \(newestFirst ? "DESC" : "ASC") LIMIT ?
          """),
      arguments: arguments)
    var records: [Record] = []
    var last: Int64 = 0
    var more = false
    while let row = try cursor.next() {
      guard records.count < page.size else {
        more = true
        break
      }
      records.append(try Record(row: row))
      last = row[0]
    }
    return RecordPage(rows: records, nextPageToken: more ? PageQuery.token(after: last) : "")
  }
}

/// The WHERE clause of a list query, built from the filters a request sets. Values are
/// always bound; only column names, which come from the stores' own code, are in the SQL.
public struct RowFilter {
  public private(set) var conditions: [String] = []
  public private(set) var arguments: StatementArguments = []

  public init() {}

  /// `column = value` for each pair whose value is set; an empty value does not filter.
  public mutating func equal(_ pairs: KeyValuePairs<String, String>) {
    for (column, value) in pairs where !value.isEmpty { self.add("\(column) = ?", [value]) }
  }

  /// `column IN (values)`; no values, no filter.
  public mutating func oneOf(_ column: String, _ values: [Int32]) {
    guard !values.isEmpty else { return }
    self.add("\(column) IN (\(values.map { _ in "?" }.joined(separator: ", ")))", StatementArguments(values))
  }

  /// `column` in [from, before); 0 leaves that end open.
  public mutating func range(_ column: String, from: Int64, before: Int64) {
    if from > 0 { self.add("\(column) >= ?", [from]) }
    if before > 0 { self.add("\(column) < ?", [before]) }
  }

  public mutating func add(_ condition: String, _ arguments: StatementArguments = []) {
    self.conditions.append(condition)
    self.arguments += arguments
  }
}
