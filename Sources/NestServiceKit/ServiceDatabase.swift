// A service's own SQLite database through GRDB: WAL (DatabasePool, and read-only connections of
// its own for the reads made on the calling thread), writes by group commit (NestDatabase),
// every write durable (synchronous=FULL: money moves here), a busy timeout instead of
// immediate SQLITE_BUSY, foreign keys on, temporary files in memory, and the service's
// versioned migrations plus the kit's own.
import Foundation
public import GRDB
import Metrics
import NIOConcurrencyHelpers
import NestProto

public enum ServiceDatabase {
  /// Opens (creating if needed) and migrates the database at `path`.
  public static func open(
    path: String, migrations: (inout DatabaseMigrator) -> Void = { _ in }
  ) throws -> NestDatabase {
    var configuration = Configuration()
    configuration.busyMode = .timeout(5)
    configuration.foreignKeysEnabled = true
    // Temporary files in memory: group commit runs each job in a savepoint, so SQLite
    // journals every page a job touches into the transaction's statement journal, which past
    // 64 KiB it spills into a temporary file, made and deleted at every commit. Under load that
    // file took more than half of what a service wrote (docs/benchmarks.md).
    configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA temp_store = MEMORY") }
    let pool = try DatabasePool(path: path, configuration: configuration)
    // After opening: GRDB sets the writer to synchronous=NORMAL when it enables WAL, after
    // any prepareDatabase hook. The pool keeps one writer connection, so this holds.
    try pool.writeWithoutTransaction { db in
      try db.execute(sql: "PRAGMA synchronous = FULL")
      // Every commit of the writer, timed (nest_db_commit_duration on the admin port).
      db.add(transactionObserver: CommitTimer(), extent: .databaseLifetime)
    }
    var migrator = DatabaseMigrator()
    ClientTokens.registerMigrations(&migrator)
    migrations(&migrator)
    // Last: a kit table added after services had migrations of their own.
    EventLog.registerMigrations(&migrator)
    try migrator.migrate(pool)
    // The readers of reads on the calling thread (NestDatabase.nowReaders): as many as there
    // are threads to make such reads at once.
    return NestDatabase(
      pool, nowReaders: max(2, ProcessInfo.processInfo.activeProcessorCount), readerConfiguration: configuration)
  }
}

extension ServiceDatabase {
  /// A consistent copy of `pool` while it keeps serving: SQLite's online backup API, in one
  /// step from one read snapshot (WAL: writers go on meanwhile), into a file at `path`.
  public static func backup(_ database: NestDatabase, to path: String) throws {
    let destination = try DatabaseQueue(path: path)
    try database.backup(to: destination)
    try destination.close()
  }

  /// The copy's bytes (for the admin port's /backup).
  public static func backupBytes(_ database: NestDatabase) throws -> [UInt8] {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("nest-backup-\(UUID().uuidString).sqlite")
    defer { try? FileManager.default.removeItem(at: path) }
    try Self.backup(database, to: path.path)
    return Array(try Data(contentsOf: path))
  }
}

/// `column IN (...)` for a list of any length as one statement: the values travel as one
/// JSON array argument (SQLite's json_each), so that lists of every length share one cached
/// statement instead of each length preparing, and keeping on every connection, its own.
public enum ValueList {
  /// The SQL: `column IN (SELECT value FROM json_each(?))`.
  public static func sql(_ column: String) -> String { "\(column) IN (SELECT value FROM json_each(?))" }

  /// The one argument: the values as a JSON array of strings, written byte by byte
  /// (Foundation's JSONEncoder, for a few ids, cost about as much as the query they were for).
  public static func argument(_ values: [String]) -> String {
    var json: [UInt8] = [UInt8(ascii: "[")]
    json.reserveCapacity(values.reduce(2) { $0 + $1.utf8.count + 3 })
    for (index, value) in values.enumerated() {
      if index > 0 { json.append(UInt8(ascii: ",")) }
      JSONText.appendString(value, to: &json)
    }
    json.append(UInt8(ascii: "]"))
    return String(decoding: json, as: UTF8.self)
  }
}

extension Database {
  /// `ALTER TABLE table ADD COLUMN column definition`, unless the column exists: for a
  /// migration that adds columns which the current `createTables` of a later migration may
  /// already have made.
  public func addColumnIfMissing(_ table: String, _ column: String, _ definition: String) throws {
    guard try !self.columns(in: table).contains(where: { $0.name == column }) else { return }
    try self.execute(sql: "ALTER TABLE \(table) ADD COLUMN \(column) \(definition)")
  }
}

/// Times each commit from its start to its end (the fsync of synchronous=FULL included).
final class CommitTimer: TransactionObserver, Sendable {
  private let started = NIOLockedValueBox<ContinuousClock.Instant?>(nil)
  private let timer = Metrics.Timer(label: "nest_db_commit_duration")

  func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { false }
  func databaseDidChange(with event: DatabaseEvent) {}

  func databaseWillCommit() throws {
    self.started.withLockedValue { $0 = .now }
  }

  func databaseDidCommit(_ db: Database) {
    guard let start = self.started.withLockedValue({ $0 }) else { return }
    self.timer.record(duration: .now - start)
  }

  func databaseDidRollback(_ db: Database) {
    self.started.withLockedValue { $0 = nil }
  }
}
