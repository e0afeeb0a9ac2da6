// The status history of an aggregate (an order, an instance, an obligation...) in its own
// append-only table: one row per status entered, in order. Rows are never changed or
// removed (triggers refuse it), so the history is what happened, not what was last saved.
import Foundation
public import GRDB
public import NestProto

public struct HistoryTable: Sendable {
  /// e.g. "instance_history".
  public let name: String

  public init(_ name: String) {
    self.name = name
  }

  /// Creates the table and its triggers (in a migration).
  public func create(in db: Database) throws {
    try db.create(table: self.name) { t in
      t.column("subject_id", .text).notNull()
      t.column("seq", .integer).notNull().check { $0 >= 0 }
      t.column("status", .text).notNull()
      t.column("actor", .text).notNull()
      t.column("reason", .text).notNull()
      t.column("changed_at_unix_ms", .integer).notNull()
      t.primaryKey(["subject_id", "seq"])
    }
    for operation in ["UPDATE", "DELETE"] {
      try db.execute(
        sql: """
          CREATE TRIGGER \(self.name)_no_\(operation.lowercased()) BEFORE \(operation) ON \(self.name)
          BEGIN SELECT RAISE(ABORT, 'history is append-only'); END
          """)
    }
  }

  /// Stores the entries of `history` past those already stored for `id`; returns them.
  /// `stored`: how many are stored, when the caller read them in this transaction (else they
  /// are counted).
  @discardableResult
  public func append(
    _ history: [Nest_Common_V1_StatusChange], for id: String, stored: Int? = nil, in db: Database
  ) throws -> [Nest_Common_V1_StatusChange] {
    let stored =
      try stored
      ?? Int.fetchOne(
        db.cachedStatement(sql: "SELECT COUNT(*) FROM \(self.name) WHERE subject_id = ?"), arguments: [id]) ?? 0
    for (seq, entry) in history.enumerated().dropFirst(stored) {
      try db.cachedStatement(
        sql: """
          INSERT INTO \(self.name) (subject_id, seq, status, actor, reason, changed_at_unix_ms)
          VALUES (?, ?, ?, ?, ?, ?)
          """
      ).execute(arguments: [id, seq, entry.status, entry.actorID, entry.reason, entry.changedAtUnixMs])
    }
    return Array(history.dropFirst(stored))
  }

  /// The history of each of `ids`, oldest first.
  public func entries(for ids: [String], in db: Database) throws -> [String: [Nest_Common_V1_StatusChange]] {
    guard !ids.isEmpty else { return [:] }
    var result: [String: [Nest_Common_V1_StatusChange]] = [:]
    // Columns by position: a row fetched on its own finds a column by name by lowercasing
    // every column's name, for every value read.
    let rows = try Row.fetchCursor(
      db.cachedStatement(
        sql: """
          SELECT subject_id, status, actor, reason, changed_at_unix_ms FROM \(self.name)
          WHERE \(ValueList.sql("subject_id")) ORDER BY subject_id, seq
          """),
      arguments: [ValueList.argument(ids)])
    while let row = try rows.next() {
      result[row[0] as String, default: []].append(
        .with {
          $0.status = row[1]
          $0.actorID = row[2]
          $0.reason = row[3]
          $0.changedAtUnixMs = row[4]
        })
    }
    return result
  }
}

/// The part of a message no column holds (document-shaped fields nobody queries: a license,
/// parameters, labels), stored as its encoding; columns are filled back in on reading.
public enum Document {
  public static func encode<M: NestMessage>(_ message: M) throws -> Data {
    Data(try message.serializedBytes())
  }

  public static func decode<M: NestMessage>(_ data: Data, as type: M.Type = M.self) throws -> M {
    try M(serializedBytes: data)
  }
}
