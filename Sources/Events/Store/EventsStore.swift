// The events service's database: the feed (each event once, by id, in the order it arrived,
// with the parties that may read it as rows to query), the webhooks, and one delivery row per
// event and webhook. A webhook's delivery of a subject's event waits for that webhook's
// deliveries of the subject's earlier events.
import Foundation
public import GRDB
import NestDomain
public import NestProto
public import NestServiceKit

public struct EventsStore: Sendable {
  public let database: NestDatabase

  public init(database: NestDatabase) {
    self.database = database
  }

  public static func migrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("events-1") { db in
      try db.create(table: "events") { t in
        t.autoIncrementedPrimaryKey("seq")
        t.column("id", .text).notNull().unique()
        t.column("type", .text).notNull()
        t.column("subject", .text).notNull()
        t.column("sequence", .integer).notNull().check { $0 > 0 }
        t.column("source", .text).notNull()
        t.column("occurred_at_unix_ms", .integer).notNull()
        t.column("received_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(index: "events_by_type", on: "events", columns: ["type", "seq"])
      try db.create(index: "events_by_subject", on: "events", columns: ["subject", "seq"])
      try db.create(table: "event_parties") { t in
        t.column("role", .integer).notNull()
        t.column("account_id", .text).notNull()
        t.column("seq", .integer).notNull().references("events", onDelete: .cascade)
        t.primaryKey(["role", "account_id", "seq"])
      }
      try db.create(index: "event_parties_by_seq", on: "event_parties", columns: ["seq"])
      try db.create(table: "webhooks") { t in
        t.primaryKey("id", .text)
        t.column("owner_role", .integer).notNull()
        t.column("owner_id", .text).notNull()
        t.column("url", .text).notNull()
        t.column("types", .text).notNull()
        t.column("status", .integer).notNull()
        t.column("disabled_reason", .text).notNull()
        t.column("secret", .text).notNull()
        t.column("previous_secret", .text).notNull()
        t.column("previous_secret_expires_at_unix_ms", .integer).notNull()
        t.column("failing_since_unix_ms", .integer).notNull()
        t.column("created_at_unix_ms", .integer).notNull()
        t.column("updated_at_unix_ms", .integer).notNull()
      }
      try db.create(index: "webhooks_by_owner", on: "webhooks", columns: ["owner_role", "owner_id"])
      try db.create(table: "webhook_deliveries") { t in
        t.autoIncrementedPrimaryKey("rowid")
        t.column("id", .text).notNull().unique()
        t.column("webhook_id", .text).notNull().references("webhooks", onDelete: .cascade)
        t.column("event_seq", .integer).notNull().references("events", onDelete: .cascade)
        t.column("subject", .text).notNull()
        t.column("status", .integer).notNull()
        t.column("attempts", .integer).notNull()
        t.column("last_error", .text).notNull()
        t.column("last_attempt_at_unix_ms", .integer).notNull()
        t.column("next_attempt_at_unix_ms", .integer).notNull()
        t.column("delivered_at_unix_ms", .integer).notNull()
        t.column("created_at_unix_ms", .integer).notNull()
      }
      // Pending deliveries in event order: `due` walks it and stops at its limit.
      try db.create(index: "deliveries_pending", on: "webhook_deliveries", columns: ["status", "event_seq"])
      try db.create(
        index: "deliveries_in_order", on: "webhook_deliveries",
        columns: ["webhook_id", "subject", "status", "event_seq"])
    }
  }

  // MARK: The feed

  /// Stores `event` unless its id is known; then gives each webhook that may read it and
  /// wants its type a delivery. Whether it was new.
  @discardableResult
  public static func insert(_ event: Event, now: Int64, in db: Database) throws -> Bool {
    try db.cachedStatement(
      sql: """
        INSERT INTO events (id, type, subject, sequence, source, occurred_at_unix_ms, received_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING
        """
    ).execute(arguments: [
      event.id, event.type, event.subject, event.sequence, event.source, event.occurredAtUnixMs, now,
      Data(try event.serializedBytes()),
    ])
    guard db.changesCount > 0 else { return false }
    let seq = db.lastInsertedRowID
    for party in Set(event.parties.map { PartyKey(role: $0.role.rawValue, accountID: $0.accountID) }) {
      try db.cachedStatement(sql: "INSERT OR IGNORE INTO event_parties (role, account_id, seq) VALUES (?, ?, ?)")
        .execute(arguments: [party.role, party.accountID, seq])
    }
    let webhooks = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT id, types FROM webhooks w WHERE status IN (?, ?) AND (owner_role = ? OR EXISTS (
            SELECT 1 FROM event_parties p WHERE p.seq = ? AND p.role = w.owner_role AND p.account_id = w.owner_id))
          """),
      arguments: [
        Nest_Events_V1_WebhookStatus.active.rawValue, Nest_Events_V1_WebhookStatus.paused.rawValue,
        Nest_Common_V1_Role.operator.rawValue, seq,
      ])
    for webhook in webhooks {
      let types = Self.types(webhook["types"])
      guard types.isEmpty || types.contains(event.type) else { continue }
      try Self.queue(webhookID: webhook["id"], eventSeq: seq, subject: event.subject, now: now, in: db)
    }
    return true
  }

  struct PartyKey: Hashable {
    var role: Int32
    var accountID: String
  }

  /// A new PENDING delivery of one event to one webhook, due now.
  @discardableResult
  static func queue(webhookID: String, eventSeq: Int64, subject: String, now: Int64, in db: Database) throws -> String {
    let id = Identifiers.new("whd")
    try db.cachedStatement(
      sql: """
        INSERT INTO webhook_deliveries (id, webhook_id, event_seq, subject, status, attempts, last_error,
          last_attempt_at_unix_ms, next_attempt_at_unix_ms, delivered_at_unix_ms, created_at_unix_ms)
        VALUES (?, ?, ?, ?, ?, 0, '', 0, ?, 0, ?)
        """
    ).execute(arguments: [
      id, webhookID, eventSeq, subject, Nest_Events_V1_WebhookDeliveryStatus.pending.rawValue, now, now,
    ])
    return id
  }

  /// The feed after `after` (a seq), as `reader` may read it (nil: every event), oldest first.
  public static func events(
    after: Int64, reader: (role: Int32, accountID: String)?, types: [String], subject: String, limit: Int,
    in db: Database
  ) throws -> [Event] {
    var sql = "SELECT e.seq, e.body FROM events e"
    var arguments: StatementArguments = []
    if let reader {
      sql += " JOIN event_parties p ON p.seq = e.seq AND p.role = ? AND p.account_id = ?"
      arguments += [reader.role, reader.accountID]
    }
    sql += " WHERE e.seq > ?"
    arguments += [after]
    if !types.isEmpty {
      sql += " AND e.type IN (\(types.map { _ in "?" }.joined(separator: ", ")))"
      arguments += StatementArguments(types)
    }
    if !subject.isEmpty {
      sql += " AND e.subject = ?"
      arguments += [subject]
    }
    sql += " ORDER BY e.seq LIMIT ?"
    arguments += [limit]
    return try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map { try Self.event($0) }
  }

  static func event(_ row: Row) throws -> Event {
    var event = try Event(serializedBytes: row["body"] as Data)
    event.cursor = String(row["seq"] as Int64)
    return event
  }

  public static func event(id: String, in db: Database) throws -> Event? {
    try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, body FROM events WHERE id = ?"), arguments: [id])
      .map { try Self.event($0) }
  }

  static func event(seq: Int64, in db: Database) throws -> Event? {
    try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, body FROM events WHERE seq = ?"), arguments: [seq])
      .map { try Self.event($0) }
  }

  /// Removes events received before `cutoff` that no pending delivery still needs.
  public static func forget(receivedBefore cutoff: Int64, in db: Database) throws -> Int {
    try db.execute(
      sql: """
        DELETE FROM events WHERE received_at_unix_ms < ? AND seq NOT IN (
          SELECT event_seq FROM webhook_deliveries WHERE status = ?)
        """, arguments: [cutoff, Nest_Events_V1_WebhookDeliveryStatus.pending.rawValue])
    return db.changesCount
  }

  // MARK: Webhooks

  /// A webhook with its secrets (which the message never carries).
  public struct StoredWebhook: Sendable {
    public var webhook: Webhook
    public var secret: String
    public var previousSecret: String
    public var failingSinceUnixMs: Int64

    /// The secrets that sign a delivery at `now`.
    public func secrets(now: Int64) -> [String] {
      [self.secret]
        + (!self.previousSecret.isEmpty && now < self.webhook.previousSecretExpiresAtUnixMs
          ? [self.previousSecret] : [])
    }
  }

  static func types(_ text: String) -> [String] {
    text.split(separator: ",").map(String.init)
  }

  static func webhook(_ row: Row) -> StoredWebhook {
    StoredWebhook(
      webhook: .with {
        $0.id = row["id"]
        $0.owner = .with {
          $0.role = Nest_Common_V1_Role(rawValue: row["owner_role"])
          $0.accountID = row["owner_id"]
        }
        $0.url = row["url"]
        $0.types = Self.types(row["types"])
        $0.status = Nest_Events_V1_WebhookStatus(rawValue: row["status"])
        $0.disabledReason = row["disabled_reason"]
        $0.createdAtUnixMs = row["created_at_unix_ms"]
        $0.updatedAtUnixMs = row["updated_at_unix_ms"]
        $0.previousSecretExpiresAtUnixMs = row["previous_secret_expires_at_unix_ms"]
      },
      secret: row["secret"], previousSecret: row["previous_secret"], failingSinceUnixMs: row["failing_since_unix_ms"])
  }

  public static func save(_ stored: StoredWebhook, in db: Database) throws {
    let webhook = stored.webhook
    try db.cachedStatement(
      sql: """
        INSERT INTO webhooks (id, owner_role, owner_id, url, types, status, disabled_reason, secret, previous_secret,
          previous_secret_expires_at_unix_ms, failing_since_unix_ms, created_at_unix_ms, updated_at_unix_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET url = excluded.url, types = excluded.types, status = excluded.status,
          disabled_reason = excluded.disabled_reason, secret = excluded.secret,
          previous_secret = excluded.previous_secret,
          previous_secret_expires_at_unix_ms = excluded.previous_secret_expires_at_unix_ms,
          failing_since_unix_ms = excluded.failing_since_unix_ms, updated_at_unix_ms = excluded.updated_at_unix_ms
        """
    ).execute(arguments: [
      webhook.id, webhook.owner?.role.rawValue ?? 0, webhook.owner?.accountID ?? "", webhook.url,
      webhook.types.joined(separator: ","), webhook.status.rawValue, webhook.disabledReason, stored.secret,
      stored.previousSecret, webhook.previousSecretExpiresAtUnixMs, stored.failingSinceUnixMs,
      webhook.createdAtUnixMs, webhook.updatedAtUnixMs,
    ])
  }

  public static func webhook(_ id: String, in db: Database) throws -> StoredWebhook? {
    try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM webhooks WHERE id = ?"), arguments: [id]).map(Self.webhook)
  }

  /// A page of webhooks, newest first: the owner's, or (nil) everyone's.
  public static func webhooks(
    owner: (role: Int32, accountID: String)?, page: PageQuery, in db: Database
  ) throws -> (items: [Webhook], nextPageToken: String) {
    var sql = "SELECT rowid AS r, * FROM webhooks WHERE (? = 0 OR rowid < ?)"
    var arguments: StatementArguments = [page.after, page.after]
    if let owner {
      sql += " AND owner_role = ? AND owner_id = ?"
      arguments += [owner.role, owner.accountID]
    }
    sql += " ORDER BY rowid DESC LIMIT ?"
    arguments += [page.size + 1]
    let rows = try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    let items = rows.prefix(page.size)
    let next = rows.count > page.size ? PageQuery.token(after: items.last!["r"]) : ""
    return (items.map { Self.webhook($0).webhook }, next)
  }

  public static func delete(webhook id: String, in db: Database) throws {
    try db.execute(sql: "DELETE FROM webhooks WHERE id = ?", arguments: [id])
  }

  // MARK: Deliveries

  /// A delivery due, with what it takes to make it.
  public struct DueDelivery: Sendable {
    public var delivery: WebhookDelivery
    public var webhook: StoredWebhook
    public var event: Event
  }

  static func delivery(_ row: Row, event: Event?) -> WebhookDelivery {
    .with {
      $0.id = row["id"]
      $0.webhookID = row["webhook_id"]
      $0.eventID = event?.id ?? ""
      $0.eventType = event?.type ?? ""
      $0.subject = row["subject"]
      $0.sequence = event?.sequence ?? 0
      $0.status = Nest_Events_V1_WebhookDeliveryStatus(rawValue: row["status"])
      $0.attempts = UInt32(row["attempts"] as Int64)
      $0.lastError = row["last_error"]
      $0.lastAttemptAtUnixMs = row["last_attempt_at_unix_ms"]
      $0.nextAttemptAtUnixMs = row["next_attempt_at_unix_ms"]
      $0.deliveredAtUnixMs = row["delivered_at_unix_ms"]
      $0.createdAtUnixMs = row["created_at_unix_ms"]
    }
  }

  /// PENDING deliveries of ACTIVE webhooks due at `now`, each the earliest pending one of
  /// its webhook and subject, oldest event first; none of `excluding` (in flight).
  public static func due(now: Int64, limit: Int, excluding: Set<String>, in db: Database) throws -> [DueDelivery] {
    let pending = Nest_Events_V1_WebhookDeliveryStatus.pending.rawValue
    let rows = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT d.*, ev.seq AS seq, ev.body AS body FROM webhook_deliveries d
          JOIN webhooks w ON w.id = d.webhook_id JOIN events ev ON ev.seq = d.event_seq
          WHERE d.status = ? AND w.status = ? AND d.next_attempt_at_unix_ms <= ?
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id
            AND e.subject = d.subject AND e.status = ? AND e.event_seq < d.event_seq)
          ORDER BY d.event_seq LIMIT ?
          """),
      arguments: [pending, Nest_Events_V1_WebhookStatus.active.rawValue, now, pending, limit + excluding.count])
    var result: [DueDelivery] = []
    var webhooks: [String: StoredWebhook] = [:]
    for row in rows where !excluding.contains(row["id"]) {
      let webhookID: String = row["webhook_id"]
      if webhooks[webhookID] == nil { webhooks[webhookID] = try Self.webhook(webhookID, in: db) }
      guard let webhook = webhooks[webhookID] else { continue }
      let event = try Self.event(row)  // read with the delivery, not one query more per row
      result.append(DueDelivery(delivery: Self.delivery(row, event: event), webhook: webhook, event: event))
      if result.count == limit { break }
    }
    return result
  }

  public static func delivery(_ id: String, in db: Database) throws -> WebhookDelivery? {
    guard
      let row = try Row.fetchOne(
        db.cachedStatement(sql: "SELECT * FROM webhook_deliveries WHERE id = ?"), arguments: [id])
    else { return nil }
    return Self.delivery(row, event: try Self.event(seq: row["event_seq"], in: db))
  }

  public static func save(_ delivery: WebhookDelivery, in db: Database) throws {
    try db.cachedStatement(
      sql: """
        UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?, last_attempt_at_unix_ms = ?,
          next_attempt_at_unix_ms = ?, delivered_at_unix_ms = ? WHERE id = ?
        """
    ).execute(arguments: [
      delivery.status.rawValue, delivery.attempts, delivery.lastError, delivery.lastAttemptAtUnixMs,
      delivery.nextAttemptAtUnixMs, delivery.deliveredAtUnixMs, delivery.id,
    ])
  }

  /// Gives up a webhook's pending deliveries (it was disabled).
  public static func failPending(webhookID: String, in db: Database) throws {
    try db.execute(
      sql: "UPDATE webhook_deliveries SET status = ?, next_attempt_at_unix_ms = 0 WHERE webhook_id = ? AND status = ?",
      arguments: [
        Nest_Events_V1_WebhookDeliveryStatus.failed.rawValue, webhookID,
        Nest_Events_V1_WebhookDeliveryStatus.pending.rawValue,
      ])
  }

  /// A page of a webhook's deliveries, newest first.
  public static func deliveries(
    webhookID: String, statuses: [Nest_Events_V1_WebhookDeliveryStatus], page: PageQuery, in db: Database
  ) throws -> (items: [WebhookDelivery], nextPageToken: String) {
    var sql = """
      SELECT d.*, ev.seq AS seq, ev.body AS body FROM webhook_deliveries d JOIN events ev ON ev.seq = d.event_seq
      WHERE d.webhook_id = ? AND (? = 0 OR d.rowid < ?)
      """
    var arguments: StatementArguments = [webhookID, page.after, page.after]
    if !statuses.isEmpty {
      sql += " AND d.status IN (\(statuses.map { _ in "?" }.joined(separator: ", ")))"
      arguments += StatementArguments(statuses.map(\.rawValue))
    }
    sql += " ORDER BY d.rowid DESC LIMIT ?"
    arguments += [page.size + 1]
    let rows = try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    let items = rows.prefix(page.size)
    let next = rows.count > page.size ? PageQuery.token(after: items.last!["rowid"]) : ""
    return (try items.map { Self.delivery($0, event: try Self.event($0)) }, next)
  }

  /// Pending deliveries and the oldest one's creation time.
  public static func pendingDeliveries(in db: Database) throws -> (count: Int, oldest: Int64?) {
    let row = try Row.fetchOne(
      db,
      sql: "SELECT COUNT(*) AS n, MIN(created_at_unix_ms) AS oldest FROM webhook_deliveries WHERE status = ?",
      arguments: [Nest_Events_V1_WebhookDeliveryStatus.pending.rawValue])
    return (row?["n"] ?? 0, row?["oldest"])
  }
}
