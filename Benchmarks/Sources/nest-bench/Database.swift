// nest-bench database: what a service's database costs per operation on the calling thread,
// each of the project's paths beside the GRDB path it replaced, in one run and alternating
// round by round (the machine's speed drifts within minutes):
//
// - a read of one row by key: `NestDatabase.readNow` (read-only connections of its own,
//   handed out under a lock, BEGIN and COMMIT compiled once) against `DatabasePool.read` (a
//   read-only pool of GRDB's, what readNow used before);
// - one write of a batch in its savepoint: `Database.savepoint` (statements compiled once)
//   against GRDB's `inSavepoint` (compiled on every call), inside one transaction.
//
//   Benchmarks/.build/release/nest-bench database [--operations N] [--rounds N]
import Foundation
import GRDB
import NestServiceKit

func databaseBench(operations: Int, rounds: Int) throws {
  let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-bench-db-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: directory) }
  let path = directory.appendingPathComponent("bench.sqlite").path
  let database = try ServiceDatabase.open(path: path) { migrator in
    migrator.registerMigration("bench-1") { db in
      try db.execute(sql: "CREATE TABLE items (id TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL)")
    }
  }
  let body = Data(repeating: 7, count: 600)
  try database.write { db in
    for index in 0..<1000 {
      try db.execute(sql: "INSERT INTO items VALUES (?, ?, ?)", arguments: ["item-\(index)", index % 7, body])
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
  func measure(_ body: (Int) throws -> Void) rethrows -> (cpu: Double, wall: Double) {
    let cpuBefore = selfCPUSeconds()
    let start = ContinuousClock.now
    for index in 0..<operations { try body(index) }
    let wall = (ContinuousClock.now - start).seconds
    return ((selfCPUSeconds() - cpuBefore) * 1e6 / Double(operations), wall * 1e6 / Double(operations))
  }

  print("nest-bench database: \(operations) operations per row, \(rounds) rounds")
  print("  operation                           path                      CPU us/op   wall us/op")
  func row(_ operation: String, _ path: String, _ figures: (cpu: Double, wall: Double)) {
    print(
      "  \(operation.padding(toLength: 34, withPad: " ", startingAt: 0))  \(path.padding(toLength: 24, withPad: " ", startingAt: 0))"
        + String(format: "  %9.2f  %11.2f", figures.cpu, figures.wall))
  }
  var ratios: [(read: Double, savepoint: Double)] = []
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
    ratios.append((grdb.cpu / own.cpu, grdbSavepoint.cpu / ownSavepoint.cpu))
  }
  let median = { (values: [Double]) in values.sorted()[values.count / 2] }
  print(
    String(
      format: "  CPU per op, GRDB's path over the project's, median of the rounds: read %.2fx, savepoint %.2fx",
      median(ratios.map(\.read)), median(ratios.map(\.savepoint))))
}
