// Domain events, written with the change: a service records each event in the same SQLite
// transaction as the change it describes (so an event exists exactly when its change does),
// numbered per subject, in an outbox table; `EventPublisher` sends the outbox to the events
// service in commit order, at least once (the events service keeps each id once), and
// removes what it acknowledged.
import Foundation
public import GRDB
import GRPCCore
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NestDomain
public import NestProto
public import ServiceLifecycle

public enum EventLog {
  static func registerMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("kit-2-events") { db in
      // Events recorded and not yet acknowledged by the events service, in commit order.
      try db.create(table: "event_outbox") { table in
        table.autoIncrementedPrimaryKey("seq")
        table.column("event", .blob).notNull()
        table.column("recorded_at_unix_ms", .integer).notNull()
      }
      // The last sequence number of each subject.
      try db.create(table: "event_subjects") { table in
        table.primaryKey("subject", .text)
        table.column("sequence", .integer).notNull().check { $0 > 0 }
      }
    }
  }

  /// Records `drafts` in `db`'s current transaction, numbered (`numbered`), for the
  /// publisher.
  /// While a migration runs (before kit-2-events, the last one, has made the outbox), a
  /// service's own migrations re-save old rows: that is no change to tell anyone of.
  public static func record(_ drafts: [EventDraft], in db: Database) throws {
    guard !drafts.isEmpty, try db.tableExists("event_outbox") else { return }
    for draft in drafts {
      try db.cachedStatement(sql: "INSERT INTO event_outbox (event, recorded_at_unix_ms) VALUES (?, ?)")
        .execute(arguments: [Data(try Self.numbered(draft, in: db).serializedBytes()), draft.occurredAtUnixMs])
    }
  }

  /// The event of `draft`: a new id and its subject's next sequence number (counted in
  /// `db`'s current transaction).
  public static func numbered(_ draft: EventDraft, in db: Database) throws -> Nest_Events_V1_Event {
    let sequence =
      try Int64.fetchOne(
        db.cachedStatement(
          sql: """
            INSERT INTO event_subjects (subject, sequence) VALUES (?, 1)
            ON CONFLICT (subject) DO UPDATE SET sequence = sequence + 1 RETURNING sequence
            """), arguments: [draft.subject]) ?? 1
    return .with {
      $0.id = Identifiers.new("evt")
      $0.type = draft.type
      $0.occurredAtUnixMs = draft.occurredAtUnixMs
      $0.subject = draft.subject
      $0.sequence = sequence
      $0.parties = draft.parties
      $0.payload = draft.payload
    }
  }

  /// Up to `limit` events after outbox number `after`, oldest first, with their numbers.
  static func pending(after: Int64, limit: Int, in db: Database) throws -> [(seq: Int64, event: Nest_Events_V1_Event)] {
    try Row.fetchAll(
      db.cachedStatement(sql: "SELECT seq, event FROM event_outbox WHERE seq > ? ORDER BY seq LIMIT ?"),
      arguments: [after, limit]
    ).map { row in (row["seq"], try Nest_Events_V1_Event(serializedBytes: row["event"] as Data)) }
  }
}

/// Sends a service's recorded events to the events service: shortly (`gather`) after a
/// commit that recorded some, with those of the commits in between in the same call, and
/// every second for what a failure or a restart left. What was
/// acknowledged is remembered in memory and removed from the outbox at most every few
/// seconds (one commit then, not one per batch: the writer is the service's scarce part);
/// after a crash the rest is sent again, and the events service keeps each id once.
public final class EventPublisher: Service, Sendable {
  let database: NestDatabase
  let events: any Nest_Events_V1_EventsService.ClientProtocol
  let source: String
  let logger: Logger
  let cleanupInterval: Duration
  /// How long after a commit with events the publisher waits for more before it calls
  /// (under a steady trickle of orders, one call per commit cost more than the commits).
  let gather: Duration
  private let wakeups = Wakeups()
  /// The last outbox number acknowledged, and when acknowledged rows were last removed.
  private let progress = NIOLockedValueBox<(acknowledged: Int64, removed: Int64, cleaned: ContinuousClock.Instant)>(
    (0, 0, .now))

  public init(
    database: NestDatabase, events: any Nest_Events_V1_EventsService.ClientProtocol, source: String, logger: Logger,
    cleanupInterval: Duration = .seconds(5), gather: Duration = .milliseconds(25)
  ) {
    self.database = database
    self.events = events
    self.source = source
    self.logger = logger
    self.cleanupInterval = cleanupInterval
    self.gather = gather
    database.add(transactionObserver: OutboxObserver(wakeups: self.wakeups), extent: .databaseLifetime)
  }

  public func run() async throws {
    await self.wakeups.run(every: .seconds(1), gather: self.gather) {
      await self.publishDue()
      await self.removeAcknowledged()
    }
  }

  /// Publishes batches until the outbox is empty or a call fails.
  public func publishDue() async {
    while !Task.isCancelled {
      do {
        let after = self.progress.withLockedValue { $0.acknowledged }
        let batch = try await self.database.read { try EventLog.pending(after: after, limit: 200, in: $0) }
        guard let last = batch.last?.seq else { return }
        let source = self.source
        _ = try await self.events.publishEvents(
          .with {
            $0.events = batch.map { pending in
              var event = pending.event
              event.source = source
              return event
            }
          })
        self.progress.withLockedValue { $0.acknowledged = max($0.acknowledged, last) }
        Counter(label: "nest_events_published_total").increment(by: batch.count)
      } catch is CancellationError {
        return
      } catch {
        Counter(label: "nest_events_publish_failures_total").increment()
        self.logger.debug("cannot publish events yet", metadata: ["error": "\(error)"])
        return
      }
    }
  }

  /// Removes the acknowledged rows, when there are some and the interval has passed.
  func removeAcknowledged() async {
    let (acknowledged, due) = self.progress.withLockedValue {
      ($0.acknowledged, $0.acknowledged > $0.removed && ContinuousClock.now - $0.cleaned >= self.cleanupInterval)
    }
    guard due else { return }
    do {
      try await self.database.write { db in
        try db.execute(sql: "DELETE FROM event_outbox WHERE seq <= ?", arguments: [acknowledged])
      }
      self.progress.withLockedValue {
        $0.removed = acknowledged
        $0.cleaned = .now
      }
    } catch {
      self.logger.debug("cannot remove published events yet", metadata: ["error": "\(error)"])
    }
  }
}

/// Wakes the publisher when a commit recorded events.
private final class OutboxObserver: TransactionObserver, Sendable {
  let wakeups: Wakeups
  private let recorded = NIOLockedValueBox(false)

  init(wakeups: Wakeups) { self.wakeups = wakeups }

  func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool {
    if case .insert(let table) = eventKind { return table == "event_outbox" }
    return false
  }

  func databaseDidChange(with event: DatabaseEvent) {
    self.recorded.withLockedValue { $0 = true }
    stopObservingDatabaseChangesUntilNextTransaction()
  }

  func databaseDidCommit(_ db: Database) {
    let recorded = self.recorded.withLockedValue { recorded in
      defer { recorded = false }
      return recorded
    }
    if recorded { self.wakeups.signal() }
  }

  func databaseDidRollback(_ db: Database) {
    self.recorded.withLockedValue { $0 = false }
  }
}
