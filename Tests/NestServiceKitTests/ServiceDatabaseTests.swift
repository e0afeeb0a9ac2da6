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
    #expect(try pool.readNow { try Int.fetchOne($0, sql: "PRAGMA temp_store") } == 2)
    // Reopening runs no migration twice and keeps the data.
    let reopened = try ServiceDatabase.open(path: path, migrations: migrations)
    #expect(try reopened.readNow { try Int.fetchOne($0, sql: "SELECT count(*) FROM things") } == 1)
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

@Suite("Reads on the calling thread")
struct CallerReadTests {
  func database() throws -> (NestDatabase, String) {
    let path = temporaryDatabase()
    let database = try ServiceDatabase.open(path: path) { migrator in
      migrator.registerMigration("t") { try $0.create(table: "t") { $0.column("v", .integer) } }
    }
    return (database, path)
  }

  @Test("each read sees every write committed before it, and one read is one snapshot")
  func snapshots() async throws {
    let (database, path) = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    for value in 1...3 {
      try await database.write { try $0.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: [value]) }
      #expect(try database.readNow { try Int.fetchOne($0, sql: "SELECT max(v) FROM t") } == value)
    }
    // A write committed while a read runs is not seen by that read, and is by the next.
    let counts = try database.readNow { db -> (Int?, Int?) in
      let first = try Int.fetchOne(db, sql: "SELECT count(*) FROM t")
      try database.write { try $0.execute(sql: "INSERT INTO t (v) VALUES (4)") }
      return (first, try Int.fetchOne(db, sql: "SELECT count(*) FROM t"))
    }
    #expect(counts.0 == 3 && counts.1 == 3)
    #expect(try database.readNow { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 4)
  }

  @Test("a read that throws ends its transaction, and its connection serves the next read")
  func failedRead() throws {
    let (database, path) = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect(throws: DatabaseError.self) { try database.readNow { try Int.fetchOne($0, sql: "SELECT nothing FROM t") } }
    #expect(throws: DatabaseError.self) { try database.readNow { try $0.execute(sql: "INSERT INTO t (v) VALUES (1)") } }
    // More reads than there are connections: every one got a connection out of a transaction.
    for _ in 0..<8 {
      #expect(
        try database.readNow { db in (db.isInsideTransaction, try Int.fetchOne(db, sql: "SELECT count(*) FROM t")) }
          == (true, 0))
    }
  }

  @Test("more threads than connections: the others wait for one, and every read ends")
  func moreThreadsThanConnections() async throws {
    let (database, path) = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    try await database.write { try $0.execute(sql: "INSERT INTO t (v) VALUES (7)") }
    let done = NIOLockedValueBox<[Int?]>([])
    let threads = 4 * max(2, ProcessInfo.processInfo.activeProcessorCount)
    for _ in 0..<threads {
      Thread.detachNewThread {
        let value = try? database.readNow { db -> Int? in
          Thread.sleep(forTimeInterval: 0.01)  // holds its connection while the others ask
          return try Int.fetchOne(db, sql: "SELECT v FROM t")
        }
        done.withLockedValue { $0.append(value) }
      }
    }
    for _ in 0..<1_000 where done.withLockedValue({ $0.count }) < threads {
      try await Task.sleep(for: .milliseconds(10))
    }
    #expect(done.withLockedValue { $0 } == Array(repeating: 7, count: threads))
  }

  @Test("a savepoint undoes what its body wrote when the body throws, and keeps the rest of the transaction")
  func savepoint() throws {
    let (database, path) = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    struct Refused: Error {}
    let refusals = try database.write { db -> [Bool] in
      try db.execute(sql: "INSERT INTO t (v) VALUES (1)")
      var refused: [Bool] = []
      do {
        try db.savepoint {
          try db.execute(sql: "INSERT INTO t (v) VALUES (2)")
          throw Refused()
        }
      } catch is Refused { refused.append(true) }
      // Nested, as RecordSales' sales are inside a batch's write.
      try db.savepoint {
        try db.execute(sql: "INSERT INTO t (v) VALUES (3)")
        do {
          try db.savepoint {
            try db.execute(sql: "INSERT INTO t (v) VALUES (4)")
            throw Refused()
          }
        } catch is Refused { refused.append(true) }
        try db.execute(sql: "INSERT INTO t (v) VALUES (5)")
      }
      return refused
    }
    #expect(refusals == [true, true])
    #expect(try database.readNow { try Int.fetchAll($0, sql: "SELECT v FROM t ORDER BY v") } == [1, 3, 5])
  }
}

@Suite("Column records")
struct ColumnRecordTests {
  struct Thing: ColumnRecord {
    static let databaseTableName = "things"
    static let columns = ColumnLayout<Thing>(
      table: "things", key: ["id"], insertOnly: ["origin"],
      ["id": { $0.id }, "origin": { $0.origin }, "status": { $0.status }])
    var id: String
    var origin: String
    var status: Int
    init(id: String, origin: String, status: Int) {
      (self.id, self.origin, self.status) = (id, origin, status)
    }
    init(row: Row) throws {
      (self.id, self.origin, self.status) = (row["id"], row["origin"], row["status"])
    }
  }

  @Test("insert refuses a taken key; update and upsert change every column but the key and the insert-only ones")
  func writes() throws {
    let path = temporaryDatabase()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path) { migrator in
      migrator.registerMigration("t") { db in
        try db.execute(sql: "CREATE TABLE things (id TEXT PRIMARY KEY, origin TEXT NOT NULL, status INTEGER NOT NULL)")
      }
    }
    let stored = { try database.readNow { try Thing.fetchOne($0, where: "id", is: "a") } }
    try database.write { try Thing(id: "a", origin: "made", status: 1).insertRow($0) }
    #expect(throws: DatabaseError.self) {
      try database.write { try Thing(id: "a", origin: "again", status: 9).insertRow($0) }
    }
    #expect(try stored().map { [$0.origin, "\($0.status)"] } == ["made", "1"])
    try database.write { try Thing(id: "a", origin: "", status: 2).updateRow($0) }
    #expect(try stored().map { [$0.origin, "\($0.status)"] } == ["made", "2"])
    try database.write { try Thing(id: "a", origin: "other", status: 3).upsert($0) }
    #expect(try stored().map { [$0.origin, "\($0.status)"] } == ["made", "3"])
    #expect(throws: RecordError.self) { try database.write { try Thing(id: "b", origin: "", status: 1).updateRow($0) } }
    #expect(try database.readNow { try Int.fetchOne($0, sql: "SELECT count(*) FROM things") } == 1)
  }
}

@Suite("Value lists")
struct ValueListTests {
  @Test("every string reaches SQLite as it was: quotes, backslashes, control characters, any script")
  func roundTrip() throws {
    let values = ["ord_1", "", "a\"b", "back\\slash", "tab\there", "line\nbreak", "\u{1}\u{1F}", "é漢字🙂", "[,]"]
    let database = try DatabaseQueue()
    let read = try database.read { db in
      try String.fetchAll(db, sql: "SELECT value FROM json_each(?)", arguments: [ValueList.argument(values)])
    }
    #expect(read == values)
    #expect(ValueList.argument([]) == "[]")
    let found = try database.read { db in
      try String.fetchAll(
        db, sql: "SELECT v FROM (SELECT 'a\"b' AS v UNION SELECT 'x') WHERE \(ValueList.sql("v"))",
        arguments: [ValueList.argument(["a\"b", "y"])])
    }
    #expect(found == ["a\"b"])
  }
}
