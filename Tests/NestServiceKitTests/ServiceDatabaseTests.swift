import Foundation
import GRDB
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import Testing

private func temporaryDatabase() -> String {
  FileManager.default.temporaryDirectory.appendingPathComponent("kit-\(UUID()).sqlite").path
}

@Suite("Service database")
struct ServiceDatabaseTests {
  @Test("WAL, synchronous=FULL, foreign keys, and migrations that run once")
  func bootstrap() throws {
    let path = temporaryDatabase()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let migrations: (inout DatabaseMigrator) -> Void = { migrator in
      migrator.registerMigration("test-1") { db in
        try db.create(table: "things") { $0.column("id", .text).primaryKey() }
        try db.execute(sql: "INSERT INTO things (id) VALUES ('first')")
      }
    }
    let pool = try ServiceDatabase.open(path: path, migrations: migrations)
    let (journal, synchronous, foreignKeys) = try pool.write { db in
      (
        try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"),
        try Int.fetchOne(db, sql: "PRAGMA foreign_keys")
      )
    }
    #expect(journal == "wal")
    #expect(synchronous == 2)  // FULL
    #expect(foreignKeys == 1)
    // Reopening runs no migration twice and keeps the data.
    let reopened = try ServiceDatabase.open(path: path, migrations: migrations)
    #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM things") } == 1)
  }
}

@Suite("Client tokens")
struct ClientTokenTests {
  let request = Nest_Common_V1_Money.with {
    $0.currency = "USD"
    $0.amountMinor = 100
  }

  func pool() throws -> (DatabasePool, String) {
    let path = temporaryDatabase()
    return (try ServiceDatabase.open(path: path), path)
  }

  @Test("a retry with the same token and request gets the first response, and the work runs once")
  func retry() throws {
    let (pool, path) = try self.pool()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var runs = 0
    let first = try pool.write { db in
      try ClientTokens.once(
        db, caller: "cust-1", method: "CreateOrder", token: "t-1", request: self.request, nowUnixMs: 1
      ) {
        runs += 1
        return Nest_Common_V1_Party.with { $0.accountID = "order-\(runs)" }
      }
    }
    let second = try pool.write { db in
      try ClientTokens.once(
        db, caller: "cust-1", method: "CreateOrder", token: "t-1", request: self.request, nowUnixMs: 2
      ) {
        runs += 1
        return Nest_Common_V1_Party.with { $0.accountID = "order-\(runs)" }
      }
    }
    #expect(runs == 1)
    #expect(first.accountID == "order-1")
    #expect(second == first)
  }

  @Test("the same token with a different request is ALREADY_EXISTS, and changes nothing")
  func conflict() throws {
    let (pool, path) = try self.pool()
    defer { try? FileManager.default.removeItem(atPath: path) }
    _ = try pool.write { db in
      try ClientTokens.once(
        db, caller: "cust-1", method: "CreateOrder", token: "t-1", request: self.request, nowUnixMs: 1
      ) {
        Nest_Common_V1_Party()
      }
    }
    var other = self.request
    other.amountMinor = 999
    #expect {
      try pool.write { db in
        try ClientTokens.once(db, caller: "cust-1", method: "CreateOrder", token: "t-1", request: other, nowUnixMs: 2) {
          Issue.record("the operation must not run")
          return Nest_Common_V1_Party()
        }
      }
    } throws: { ($0 as? DomainError)?.code == .alreadyExists }
  }

  @Test("tokens are per caller and per method; an empty token never deduplicates")
  func scope() throws {
    let (pool, path) = try self.pool()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var runs = 0
    let calls: [(String, String, String)] = [
      ("cust-1", "CreateOrder", "t"), ("cust-2", "CreateOrder", "t"), ("cust-1", "PayOrder", "t"),
      ("cust-1", "CreateOrder", ""), ("cust-1", "CreateOrder", ""),
    ]
    for (caller, method, token) in calls {
      _ = try pool.write { db in
        try ClientTokens.once(db, caller: caller, method: method, token: token, request: self.request, nowUnixMs: 1) {
          runs += 1
          return Nest_Common_V1_Party()
        }
      }
    }
    #expect(runs == 5)
  }

  @Test("work that fails stores no token, so the retry runs it again")
  func failureIsNotRemembered() throws {
    let (pool, path) = try self.pool()
    defer { try? FileManager.default.removeItem(atPath: path) }
    struct Boom: Error {}
    #expect(throws: Boom.self) {
      try pool.write { db in
        try ClientTokens.once(db, caller: "c", method: "M", token: "t", request: self.request, nowUnixMs: 1) {
          () throws -> Nest_Common_V1_Party in throw Boom()
        }
      }
    }
    let response = try pool.write { db in
      try ClientTokens.once(db, caller: "c", method: "M", token: "t", request: self.request, nowUnixMs: 2) {
        Nest_Common_V1_Party.with { $0.accountID = "second try" }
      }
    }
    #expect(response.accountID == "second try")
  }
}
