import Foundation
import GRDB
import GRPCCore
import NIOConcurrencyHelpers
import NestDomain
import NestProto
import Testing

@testable import NestServiceKit

private func temporaryDatabase() -> String {
  FileManager.default.temporaryDirectory.appendingPathComponent("kit-\(UUID()).sqlite").path
}

@Suite("Service database")
struct ServiceDatabaseTests {
  @Test("a read on the calling thread does not wait for the readers that async reads hold")
  func readNowBesideAsyncReads() async throws {
    let path = temporaryDatabase()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path) { migrator in
      migrator.registerMigration("test-1") { db in
        try db.execute(sql: "CREATE TABLE things (id INTEGER PRIMARY KEY); INSERT INTO things VALUES (7)")
      }
    }
    // Every reader of the pool held by an async read that waits in its closure. Such a read
    // gives its reader back only once its task runs again on a cooperative thread: a read that
    // waited for one of them while holding every cooperative thread would never end.
    let readers = database.pool.configuration.maximumReaderCount
    let release = DispatchSemaphore(value: 0)
    let entered = NIOLockedValueBox(0)
    let held = Task {
      try await withThrowingTaskGroup(of: Int?.self) { group in
        for _ in 0..<readers {
          group.addTask {
            try await database.read { db in
              entered.withLockedValue { $0 += 1 }
              release.wait()
              return try Int.fetchOne(db, sql: "SELECT id FROM things")
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
    }
    defer { for _ in 0..<readers { release.signal() } }
    for _ in 0..<1_000 where entered.withLockedValue({ $0 }) < readers { try await Task.sleep(for: .milliseconds(10)) }
    #expect(entered.withLockedValue { $0 } == readers)
    // A read on the calling thread (a plain thread here) ends while they all still wait.
    let now = NIOLockedValueBox<Int??>(nil)
    Thread.detachNewThread {
      let value = try? database.readNow { try Int.fetchOne($0, sql: "SELECT id FROM things") }
      now.withLockedValue { $0 = .some(value) }
    }
    for _ in 0..<1_000 where now.withLockedValue({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
    #expect(now.withLockedValue { $0 } == .some(7))
    for _ in 0..<readers { release.signal() }
    #expect(try await held.value == Array(repeating: 7, count: readers))
  }

  @Test("WAL, synchronous=FULL, foreign keys, temporary files in memory, and migrations that run once")
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
    // The statement journals of group commit's savepoints stay in memory, writer and readers.
    #expect(try pool.write { try Int.fetchOne($0, sql: "PRAGMA temp_store") } == 2)  // MEMORY
    #expect(try pool.read { try Int.fetchOne($0, sql: "PRAGMA temp_store") } == 2)
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

  func pool() throws -> (NestDatabase, String) {
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

@Suite("Group commit")
struct GroupCommitTests {
  /// Counts the writer's commits.
  final class Commits: TransactionObserver, @unchecked Sendable {
    var count = 0
    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { false }
    func databaseDidChange(with event: DatabaseEvent) {}
    func databaseDidCommit(_ db: Database) { self.count += 1 }
    func databaseDidRollback(_ db: Database) {}
  }

  struct Refused: Error {}

  @Test("writes that wait for the writer together commit in one transaction; one that fails is undone alone")
  func batch() async throws {
    let path = temporaryDatabase()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path) { migrator in
      migrator.registerMigration("t") { try $0.create(table: "t") { $0.column("v", .integer) } }
    }
    let commits = Commits()
    database.add(transactionObserver: commits, extent: .databaseLifetime)
    // The writer is busy until every write below waits for it.
    let release = DispatchSemaphore(value: 0)
    database.pool.asyncWriteWithoutTransaction { _ in release.wait() }
    let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
      for value in 1...5 {
        group.addTask {
          do {
            try await database.write { db in
              try db.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: [value])
              if value == 3 { throw Refused() }
            }
            return (value, true)
          } catch is Refused {
            return (value, false)
          }
        }
      }
      while database.waitingWrites < 5 { await Task.yield() }
      release.signal()
      var results: [Int: Bool] = [:]
      for try await (value, succeeded) in group { results[value] = succeeded }
      return results
    }
    #expect(results == [1: true, 2: true, 3: false, 4: true, 5: true])
    #expect(try await database.read { try Int.fetchAll($0, sql: "SELECT v FROM t ORDER BY v") } == [1, 2, 4, 5])
    #expect(commits.count == 1)
  }

  @Test("a write alone commits alone, and its caller reads it at once")
  func alone() async throws {
    let path = temporaryDatabase()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path) { migrator in
      migrator.registerMigration("t") { try $0.create(table: "t") { $0.column("v", .integer) } }
    }
    for value in 1...3 {
      try await database.write { try $0.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: [value]) }
      #expect(try await database.read { try Int.fetchOne($0, sql: "SELECT max(v) FROM t") } == value)
    }
    await #expect(throws: Refused.self) {
      try await database.write { db in
        try db.execute(sql: "INSERT INTO t (v) VALUES (4)")
        throw Refused()
      }
    }
    #expect(try await database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 3)
  }
}
