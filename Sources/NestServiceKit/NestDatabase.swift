// A service's database as its handlers use it: reads on the calling thread from read-only
// connections of its own, async reads from GRDB's pool of readers, and writes by group
// commit. Writes that arrive while the writer is busy wait for it together
// and then run in one transaction, each in its own savepoint, with one commit (one fsync,
// and each shared page written once) for all of them. A write that throws is rolled back
// to its savepoint and fails alone; a failed commit fails every write of the batch; no
// caller hears of success before its batch is durable. Under no load a batch is one write,
// as before.
import Foundation
public import GRDB
import Metrics
import NIOConcurrencyHelpers

public final class NestDatabase: Sendable {
  /// The pool itself, for what is not a handler's read or write (backups, observers,
  /// synchronous set-up and tests).
  public let pool: DatabasePool
  /// Readers of their own for the reads made on the calling thread (`readNow`, and the
  /// synchronous `read`). The pool's async reads give their reader back only once their task
  /// runs again on one of Swift's cooperative threads; a read that blocked such a thread
  /// waiting for one of those readers could wait forever once every cooperative thread did
  /// (two on a two-core machine). It did: marketplace-order stopped under the benchmark with
  /// both threads in `readNow` and every reader held by an async read waiting to resume. A
  /// reader of these is held only by a thread running a synchronous read, which ends.
  private let nowReaders: CallerReaders
  private let queue = NIOLockedValueBox(Queue())
  private let batchSizes = Recorder(label: "nest_db_group_commit_writes")

  private struct Queue {
    var waiting: [Job] = []
    /// A batch is scheduled on the writer or running.
    var writing = false
  }

  /// One write waiting for its batch: `run` does it in the batch's transaction (in a
  /// savepoint of its own unless it is `alone` in the batch) and returns how its caller is
  /// told once the batch is committed; `fail` tells it of an error.
  private struct Job: Sendable {
    let run: @Sendable (Database, _ alone: Bool) -> Result<@Sendable () -> Void, any Error>
    let fail: @Sendable (any Error) -> Void
  }

  /// `pool` for writes and async reads; for the reads made on the calling thread, up to
  /// `nowReaders` read-only connections of their own to the same file, opened with
  /// `readerConfiguration` as they are first needed.
  public init(_ pool: DatabasePool, nowReaders: Int, readerConfiguration: Configuration) {
    self.pool = pool
    var configuration = readerConfiguration
    configuration.readonly = true
    self.nowReaders = CallerReaders(path: pool.path, configuration: configuration, limit: nowReaders)
  }

  /// Reads in a read-only transaction of one of the pool's readers (WAL: never waits for
  /// the writer).
  public func read<T: Sendable>(_ value: @Sendable (Database) throws -> T) async throws -> T {
    try await self.pool.read(value)
  }

  /// A read of a few rows by key, on the calling thread: handing such a read to a reader's
  /// thread and back costs two thread wake-ups, more than the read itself. Not for pages or
  /// scans, which would hold the caller's event loop.
  public func readNow<T>(_ value: (Database) throws -> T) throws -> T {
    try self.nowReaders.read(value)
  }

  /// A consistent copy into `destination` from one read snapshot, on one of the readers of
  /// reads on the calling thread (the backup is such a read).
  public func backup(to destination: DatabaseQueue) throws {
    try self.nowReaders.with { try $0.backup(to: destination) }
  }

  /// Runs `updates` in a transaction shared with the writes that wait with it; returns
  /// once that transaction is committed.
  public func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
    try Task.checkCancellation()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
      let job = Job(
        run: { db, alone in
          do {
            let result: T
            if alone {
              result = try updates(db)
            } else {
              result = try db.savepoint { try updates(db) }
            }
            return .success { continuation.resume(returning: result) }
          } catch {
            return .failure(error)
          }
        },
        fail: { continuation.resume(throwing: $0) })
      let start = self.queue.withLockedValue { queue in
        queue.waiting.append(job)
        guard !queue.writing else { return false }
        queue.writing = true
        return true
      }
      if start { self.schedule() }
    }
  }

  /// A synchronous write in a transaction of its own (set-up, tests).
  public func write<T>(_ updates: (Database) throws -> T) throws -> T {
    try self.pool.write(updates)
  }

  /// Writes waiting for their batch.
  var waitingWrites: Int { self.queue.withLockedValue { $0.waiting.count } }

  public func add(transactionObserver: some TransactionObserver, extent: Database.TransactionObservationExtent) {
    self.pool.add(transactionObserver: transactionObserver, extent: extent)
  }

  /// One batch on the writer's queue: whatever waits now. Another is scheduled after it
  /// when more arrived meanwhile, so that other users of the writer get their turn.
  private func schedule() {
    self.pool.asyncWriteWithoutTransaction { db in
      let jobs = self.queue.withLockedValue { queue in
        defer { queue.waiting.removeAll(keepingCapacity: true) }
        return queue.waiting
      }
      self.commit(jobs, in: db)
      let more = self.queue.withLockedValue { queue in
        if queue.waiting.isEmpty { queue.writing = false }
        return queue.writing
      }
      if more { self.schedule() }
    }
  }

  private func commit(_ jobs: [Job], in db: Database) {
    guard !jobs.isEmpty else { return }
    self.batchSizes.record(jobs.count)
    if jobs.count == 1 {
      // Alone: its own transaction, rolled back if it throws, without a savepoint's two
      // statements.
      var outcome: Result<@Sendable () -> Void, any Error> = .failure(CancellationError())
      do {
        try db.inTransaction {
          outcome = jobs[0].run(db, true)
          if case .failure = outcome { return .rollback }
          return .commit
        }
      } catch {
        return jobs[0].fail(error)
      }
      switch outcome {
      case .success(let resume): resume()
      case .failure(let error): jobs[0].fail(error)
      }
      return
    }
    var outcomes: [Result<@Sendable () -> Void, any Error>] = []
    outcomes.reserveCapacity(jobs.count)
    do {
      try db.inTransaction {
        for job in jobs {
          // An error that ends SQLite's transaction (a full disk, an I/O error) would leave
          // the next writes in autocommit mode: they are not run.
          guard db.isInsideTransaction else {
            outcomes.append(
              .failure(DatabaseError(resultCode: .SQLITE_ABORT, message: "the batch's transaction ended")))
            continue
          }
          outcomes.append(job.run(db, false))
        }
        return .commit
      }
    } catch {
      // Nothing of the batch is committed: each write fails, with its own error if it had one.
      for (index, job) in jobs.enumerated() {
        if index < outcomes.count, case .failure(let own) = outcomes[index] { job.fail(own) } else { job.fail(error) }
      }
      return
    }
    for (job, outcome) in zip(jobs, outcomes) {
      switch outcome {
      case .success(let resume): resume()
      case .failure(let error): job.fail(error)
      }
    }
  }
}

/// Read-only connections for the reads made on the calling thread, handed out under a lock.
/// A read of GRDB's pool costs more than a read of a few rows by key: its pool takes a
/// barrier queue, a semaphore, a dispatch group and a lock, and instantiates a generic key
/// path at run time, on every read; the read then reads the schema version and switches the
/// connection into and out of query-only mode. Here a read is the lock, the connection's own
/// queue (run on the calling thread) and one deferred transaction, its BEGIN and COMMIT
/// compiled once. The schemas do not change while a service runs (its migrations run before
/// it serves), and SQLite prepares a statement again by itself if one did.
final class CallerReaders: Sendable {
  private let path: String
  private let configuration: Configuration
  /// One per connection, open or not yet: a reader waits here when all are in use.
  private let slots: DispatchSemaphore
  /// Connections opened and not in use (never more than `limit` in all: a thread opens one
  /// only when none is idle, holding a slot).
  private let idle = NIOLockedValueBox<[DatabaseQueue]>([])

  init(path: String, configuration: Configuration, limit: Int) {
    self.path = path
    self.configuration = configuration
    self.slots = DispatchSemaphore(value: limit)
  }

  /// `value` in a read transaction of its own: one snapshot of the database.
  func read<T>(_ value: (Database) throws -> T) throws -> T {
    try self.with { connection in
      try connection.inDatabase { db in
        try db.cachedStatement(sql: "BEGIN DEFERRED TRANSACTION").execute()
        // A failed read or a failed COMMIT rolls back: a connection goes back to the others
        // outside any transaction (GRDB stops the process on one left open).
        do {
          let result = try value(db)
          try db.cachedStatement(sql: "COMMIT").execute()
          return result
        } catch {
          if db.isInsideTransaction { try? db.cachedStatement(sql: "ROLLBACK").execute() }
          throw error
        }
      }
    }
  }

  /// `body` with a connection no other thread uses meanwhile.
  func with<T>(_ body: (DatabaseQueue) throws -> T) throws -> T {
    self.slots.wait()
    defer { self.slots.signal() }
    let connection =
      try self.idle.withLockedValue { $0.popLast() }
      ?? DatabaseQueue(path: self.path, configuration: self.configuration)
    defer { self.idle.withLockedValue { $0.append(connection) } }
    return try body(connection)
  }
}

extension Database {
  /// `body` in a savepoint of the transaction under way: released when it returns, rolled
  /// back to (and released) when it throws. GRDB's `inSavepoint` does the same with SQL it
  /// compiles anew on every call, two statements per write of a batch; these are compiled
  /// once per connection. If the body's writes cannot be undone, the whole transaction is
  /// rolled back: nothing of it may then be committed (GRDB's transaction block answers
  /// SQLITE_ABORT to whatever follows).
  public func savepoint<T>(_ body: () throws -> T) throws -> T {
    precondition(self.isInsideTransaction, "a savepoint of a transaction under way")
    try self.cachedStatement(sql: "SAVEPOINT nest").execute()
    let value: T
    do {
      value = try body()
    } catch {
      // An error that ended the transaction (a full disk, an I/O error) left no savepoint.
      if self.isInsideTransaction {
        do {
          try self.cachedStatement(sql: "ROLLBACK TO SAVEPOINT nest").execute()
          try self.cachedStatement(sql: "RELEASE SAVEPOINT nest").execute()
        } catch {
          try? self.cachedStatement(sql: "ROLLBACK TRANSACTION").execute()
        }
      }
      throw error
    }
    try self.cachedStatement(sql: "RELEASE SAVEPOINT nest").execute()
    return value
  }
}
