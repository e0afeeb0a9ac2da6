// nest-bench database: what a service's database costs per operation on the calling thread,
// each of the project's paths beside the GRDB path it replaced, in one run and alternating
// round by round (the machine's speed drifts within minutes):
//
// - a read of one row by key: `NestDatabase.readNow` (read-only connections of its own,
//   handed out under a lock, BEGIN and COMMIT compiled once) against `DatabasePool.read` (a
//   read-only pool of GRDB's, what readNow used before);
// - one write of a batch in its savepoint: `Database.savepoint` (statements compiled once)
//   against GRDB's `inSavepoint` (compiled on every call), inside one transaction;
// - a page of 100 records of 12 columns: `RecordPage.fetch` (each record decoded from the
//   statement's row) against records decoded from rows fetched on their own (`Row.fetchAll`,
//   what it did before);
// - the argument of a `ValueList` of three ids: written by hand against Foundation's
//   JSONEncoder (what it used before).
//
//   Benchmarks/.build/release/nest-bench database [--operations N] [--rounds N]
import Foundation
import GRDB
import NestProto
import NestServiceKit

func databaseBench(operations: Int, rounds: Int) throws {
  let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-bench-db-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: directory) }
  let path = directory.appendingPathComponent("bench.sqlite").path
  let database = try ServiceDatabase.open(path: path) { migrator in
    migrator.registerMigration("bench-1") { db in
      try db.execute(sql: "CREATE TABLE items (id TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL)")
      try db.execute(
        sql:
          "CREATE TABLE wide (id TEXT PRIMARY KEY, \((1...10).map { "c\($0) TEXT NOT NULL" }.joined(separator: ", ")), n INTEGER)"
      )
    }
  }
  let body = Data(repeating: 7, count: 600)
  try database.write { db in
    for index in 0..<1000 {
      try db.execute(sql: "INSERT INTO items VALUES (?, ?, ?)", arguments: ["item-\(index)", index % 7, body])
      try db.execute(
        sql: "INSERT INTO wide VALUES (?, \((1...10).map { _ in "?" }.joined(separator: ", ")), ?)",
        arguments: StatementArguments(["w-\(index)"] + (1...10).map { "value \($0) of \(index)" } + ["\(index)"]))
    }
  }
  var readers = Configuration()
  readers.readonly = true
  let grdbReaders = try DatabasePool(path: path, configuration: readers)

  func readOne(_ db: Database, _ index: Int) throws -> Int {
    try Row.fetchOne(
      db.cachedStatement(sql: "SELECT status, body FROM items WHERE id = ?"), arguments: ["item-\(index % 1000)"])?[0]
      ?? -1
  }
  func writeOne(_ db: Database, _ index: Int) throws {
    try db.cachedStatement(sql: "UPDATE items SET status = ? WHERE id = ?").execute(arguments: [
      index, "item-\(index % 1000)",
    ])
  }

  /// CPU and wall microseconds per operation of `body`, run `operations` times.
  func measure(_ count: Int = operations, _ body: (Int) throws -> Void) rethrows -> (cpu: Double, wall: Double) {
    let cpuBefore = selfCPUSeconds()
    let start = ContinuousClock.now
    for index in 0..<count { try body(index) }
    let wall = (ContinuousClock.now - start).seconds
    return ((selfCPUSeconds() - cpuBefore) * 1e6 / Double(count), wall * 1e6 / Double(count))
  }

  let pages = max(operations / 50, 1)
  print("nest-bench database: \(operations) operations per row (pages: \(pages)), \(rounds) rounds")
  print("  operation                           path                        CPU us/op   wall us/op")
  func row(_ operation: String, _ path: String, _ figures: (cpu: Double, wall: Double)) {
    print(
      "  \(operation.padding(toLength: 34, withPad: " ", startingAt: 0))  \(path.padding(toLength: 26, withPad: " ", startingAt: 0))"
        + String(format: "  %9.2f  %11.2f", figures.cpu, figures.wall))
  }
  var ratios: [String: [Double]] = [:]
  let ids = ["ord_01JD4Z8Q2K7T3M9XW5N6R1B0CA", "ord_01JD4Z8Q2K7T3M9XW5N6R1B0CB", "ord_01JD4Z8Q2K7T3M9XW5N6R1B0CC"]
  let encoder = JSONEncoder()
  for round in 1...rounds {
    // Warm each path's connections and statement caches first.
    _ = try grdbReaders.read { try readOne($0, 0) }
    _ = try database.readNow { try readOne($0, 0) }
    let grdb = try measure { index in _ = try grdbReaders.read { try readOne($0, index) } }
    let own = try measure { index in _ = try database.readNow { try readOne($0, index) } }
    row("read one row by key (round \(round))", "GRDB DatabasePool.read", grdb)
    row("", "NestDatabase.readNow", own)
    // Both inside one transaction, rolled back at the end: what a batch's writes pay for
    // their savepoints, not the commit.
    let (grdbSavepoint, ownSavepoint) = try database.pool.writeWithoutTransaction { db in
      var figures = (grdb: (cpu: 0.0, wall: 0.0), own: (cpu: 0.0, wall: 0.0))
      try db.inTransaction {
        figures.grdb = try measure { index in
          try db.inSavepoint {
            try writeOne(db, index)
            return .commit
          }
        }
        figures.own = try measure { index in try db.savepoint { try writeOne(db, index) } }
        return .rollback
      }
      return figures
    }
    row("one write in its savepoint", "GRDB inSavepoint", grdbSavepoint)
    row("", "Database.savepoint", ownSavepoint)
    let (grdbPage, ownPage) = try database.readNow { db in
      let statement = try db.cachedStatement(sql: "SELECT rowid AS page_rowid, * FROM wide ORDER BY rowid DESC LIMIT ?")
      let grdb = try measure(pages) { _ in
        let rows = try Row.fetchAll(statement, arguments: [101])
        _ = try rows.prefix(100).map { try Wide(row: $0) }
      }
      let page = try PageQuery(.with { $0.pageSize = 100 })
      let own = try measure(pages) { _ in
        _ = try RecordPage<Wide>.fetch(db, filter: RowFilter(), page: page, newestFirst: true)
      }
      return (grdb, own)
    }
    row("a page of 100 records, 12 columns", "Row.fetchAll, then decode", grdbPage)
    row("", "RecordPage.fetch", ownPage)
    let json = measure { _ in _ = String(decoding: try! encoder.encode(ids), as: UTF8.self) }
    let list = measure { _ in _ = ValueList.argument(ids) }
    row("a ValueList argument of three ids", "JSONEncoder", json)
    row("", "ValueList.argument", list)
    ratios["read", default: []].append(grdb.cpu / own.cpu)
    ratios["savepoint", default: []].append(grdbSavepoint.cpu / ownSavepoint.cpu)
    ratios["page", default: []].append(grdbPage.cpu / ownPage.cpu)
    ratios["value list", default: []].append(json.cpu / list.cpu)
  }
  let median = { (values: [Double]) in values.sorted()[values.count / 2] }
  print(
    "  CPU per op, the earlier path over the project's, median of the rounds: "
      + ["read", "savepoint", "page", "value list"].map { String(format: "%@ %.2fx", $0, median(ratios[$0]!)) }
      .joined(separator: ", "))
}

/// A record of the `wide` table, decoded by column name as the stores' records are.
struct Wide: FetchableRecord, TableRecord {
  static let databaseTableName = "wide"
  var values: [String] = []
  var n: Int
  init(row: Row) throws {
    self.values = try (1...10).map { try row.decode(forColumn: "c\($0)") }
    self.values.append(try row.decode(forColumn: "id"))
    self.n = try row.decode(forColumn: "n")
  }
}
