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
    try Data.fetchOne(db, sql: sql, arguments: arguments).map { try M(serializedBytes: $0) }
  }

  /// Every message `sql` selects in its `body` column.
  public static func all<M: NestMessage>(
    _ db: Database, sql: String, arguments: StatementArguments = [], as type: M.Type = M.self
  ) throws -> [M] {
    try Data.fetchAll(db, sql: sql, arguments: arguments).map { try M(serializedBytes: $0) }
  }

  /// One page of `table`'s rows matching every condition (SQL with `?` placeholders bound to
  /// `arguments`), newest first or oldest first, and the token of the next page ("" at the end).
  public static func page<M: NestMessage>(
    _ db: Database, table: String, conditions: [String], arguments: StatementArguments, page: PageQuery,
    newestFirst: Bool, as type: M.Type = M.self
  ) throws -> (items: [M], nextPageToken: String) {
    var conditions = conditions
    var arguments = arguments
    if page.after > 0 {
      conditions.append(newestFirst ? "rowid < ?" : "rowid > ?")
      arguments += [page.after]
    }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    arguments += [page.size + 1]
    let rows = try Row.fetchAll(
      db,
      sql: "SELECT rowid, body FROM \(table) \(whereClause) ORDER BY rowid \(newestFirst ? "DESC" : "ASC") LIMIT ?",
      arguments: arguments)
    let items = try rows.prefix(page.size).map { try M(serializedBytes: $0["body"] as Data) }
    let next = rows.count > page.size ? PageQuery.token(after: rows[page.size - 1]["rowid"]) : ""
    return (items, next)
  }
}
