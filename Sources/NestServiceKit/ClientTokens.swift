// Client tokens (docs/design.md §6): every mutating RPC runs at most once per
// (caller, method, token). A retry with the same request gets the first response back,
// from the same transaction that did the work; the same token with a different request is
// ALREADY_EXISTS. An empty token opts out.
import Foundation
public import GRDB
import NestDomain
public import NestProto

public enum ClientTokens {
  static func registerMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("kit-1-client-tokens") { db in
      try db.create(table: "client_tokens") { table in
        table.column("caller", .text).notNull()
        table.column("method", .text).notNull()
        table.column("token", .text).notNull()
        table.column("request", .blob).notNull()
        table.column("response", .blob).notNull()
        table.column("created_at_unix_ms", .integer).notNull()
        table.primaryKey(["caller", "method", "token"])
      }
    }
  }

  /// Runs `operation` in `db`'s current transaction unless this token already did; then
  /// returns the stored response.
  public static func once<Request: NestMessage, Response: NestMessage>(
    _ db: Database, caller: String, method: String, token: String, request: Request,
    nowUnixMs: Int64, _ operation: () throws -> Response
  ) throws -> Response {
    guard !token.isEmpty else { return try operation() }
    let requestBytes = try request.serializedBytes()
    if let row = try Row.fetchOne(
      db.cachedStatement(
        sql: "SELECT request, response FROM client_tokens WHERE caller = ? AND method = ? AND token = ?"),
      arguments: [caller, method, token])
    {
      let stored = Array(row[0] as Data)
      guard stored == requestBytes else {
        throw DomainError(
          .alreadyExists, "client_token \"\(token)\" was already used for a different \(method) request",
          violations: [.init(field: "client_token", description: "already used for a different request")])
      }
      let response = Array(row[1] as Data)
      return try Response(serializedBytes: response)
    }
    let response = try operation()
    try db.cachedStatement(
      sql: """
        INSERT INTO client_tokens (caller, method, token, request, response, created_at_unix_ms)
        VALUES (?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      caller, method, token, Data(requestBytes), Data(try response.serializedBytes()), nowUnixMs,
    ])
    return response
  }
}
