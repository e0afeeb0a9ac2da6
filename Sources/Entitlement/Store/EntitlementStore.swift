// The entitlement service's SQLite database: authorizations, instances, permission requests
// and instance slots as typed columns (what is queried or must hold is a column, with CHECK
// constraints), their status histories append-only beside them, and what nobody queries (a
// license, parameters) as a document. The license signing key lives here too. Only this file
// knows the schema.
import Foundation
public import GRDB
import NestDomain
public import NestProto
public import NestServiceKit

public struct EntitlementStore: Sendable {
  public let database: NestDatabase

  public init(database: NestDatabase) {
    self.database = database
  }

  static let authorizationHistory = HistoryTable("authorization_history")
  static let instanceHistory = HistoryTable("instance_history")

  @Sendable public static func migrations(_ migrator: inout DatabaseMigrator) {
    // Release 0.1: each resource as its encoded message beside a few filter columns.
    migrator.registerMigration("entitlement-1") { db in
      try db.create(table: "authorizations") { t in
        t.column("id", .text).primaryKey()
        t.column("base_service_id", .text).notNull()
        t.column("isv_id", .text).notNull().indexed()
        t.column("distributor_id", .text).notNull().indexed()
        t.column("status", .integer).notNull()
        t.column("valid_until_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(index: "authorizations_pair", on: "authorizations", columns: ["base_service_id", "distributor_id"])
      try db.create(table: "instances") { t in
        t.column("id", .text).primaryKey()
        t.column("order_id", .text).notNull().unique()
        t.column("request", .blob).notNull()
        t.column("customer_id", .text).notNull().indexed()
        t.column("distributor_id", .text).notNull().indexed()
        t.column("isv_id", .text).notNull().indexed()
        t.column("service_id", .text).notNull()
        t.column("base_service_id", .text).notNull()
        t.column("authorization_id", .text).notNull().indexed()
        t.column("license_id", .text).indexed()
        t.column("status", .integer).notNull()
        t.column("expires_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "permission_requests") { t in
        t.column("id", .text).primaryKey()
        t.column("instance_id", .text).notNull().indexed().references("instances")
        t.column("requester_id", .text).notNull().indexed()
        t.column("owner_id", .text).notNull().indexed()
        t.column("operation", .text).notNull()
        t.column("status", .integer).notNull()
        t.column("created_at_unix_ms", .integer).notNull()
        t.column("grant_expires_at_unix_ms", .integer).notNull()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "signing_keys") { t in
        t.column("key_id", .text).primaryKey()
        t.column("private_key", .blob).notNull()
        t.column("created_at_unix_ms", .integer).notNull()
      }
    }
    // Columns for every field, histories apart, instance slots: rows of release 0.1 are read
    // from their messages and written again.
    migrator.registerMigration("entitlement-2-columns") { db in
      let authorizations = try Row.fetchAll(db.cachedStatement(sql: "SELECT body FROM authorizations ORDER BY rowid"))
        .map {
          try Document.decode($0["body"] as Data, as: Nest_Entitlement_V1_DistributionAuthorization.self)
        }
      let instances = try Row.fetchAll(db.cachedStatement(sql: "SELECT body, request FROM instances ORDER BY rowid"))
        .map {
          (
            try Document.decode($0["body"] as Data, as: Nest_Entitlement_V1_ServiceInstance.self),
            try Document.decode($0["request"] as Data, as: Nest_Entitlement_V1_CreateServiceInstanceRequest.self)
          )
        }
      let requests = try Row.fetchAll(db.cachedStatement(sql: "SELECT body FROM permission_requests ORDER BY rowid"))
        .map {
          try Document.decode($0["body"] as Data, as: Nest_Entitlement_V1_PermissionRequest.self)
        }
      try db.drop(table: "permission_requests")
      try db.drop(table: "instances")
      try db.drop(table: "authorizations")
      try Self.createTables(db)
      for authorization in authorizations { try Self.save(authorization, in: db) }
      for (instance, request) in instances { try Self.insert(instance, request: request, in: db) }
      for request in requests { try Self.save(request, in: db) }
    }
    // Subscriptions: the business status and auto-renew of instances as columns (the
    // background finds what is due by them); the rest of the subscription in the document.
    migrator.registerMigration("entitlement-3-subscriptions") { db in
      try Self.addSubscriptionColumns(db)
    }
    // Each expiry announced once: an instance's term end, an authorization's valid_until.
    migrator.registerMigration("entitlement-4-expiry-notices") { db in
      try db.create(table: "expiry_notices") { t in
        t.column("subject", .text).notNull()
        t.column("expires_at_unix_ms", .integer).notNull()
        t.primaryKey(["subject", "expires_at_unix_ms"])
      }
    }
    // Calls to providers' fulfilment endpoints, in the order they were made per instance.
    migrator.registerMigration("entitlement-5-fulfilment-calls") { db in
      try db.create(table: "fulfilment_calls") { t in
        t.autoIncrementedPrimaryKey("seq")
        t.column("key", .text).notNull().unique()
        t.column("instance_id", .text).notNull().indexed()
        t.column("action", .text).notNull()
        t.column("service_id", .text).notNull()
        t.column("status", .text).notNull()
          .check(sql: "status IN ('pending', 'done', 'failed', 'skipped')")
        t.column("attempts", .integer).notNull().defaults(to: 0)
        t.column("first_attempt_at_unix_ms", .integer).notNull().defaults(to: 0)
        t.column("next_attempt_at_unix_ms", .integer).notNull()
        t.column("last_error", .text).notNull().defaults(to: "")
        t.column("created_at_unix_ms", .integer).notNull()
      }
      try db.create(
        index: "fulfilment_calls_due", on: "fulfilment_calls", columns: ["status", "next_attempt_at_unix_ms"])
    }
    // What the upgrade driver reads: a service's live instances.
    migrator.registerMigration("entitlement-6-instances-by-service") { db in
      try db.create(index: "instances_service", on: "instances", columns: ["service_id", "status"])
    }
    // What every order asks: the deployment driver's instances not yet deployed (it scanned
    // the whole table each round), and the places taken under an authorization (it read each
    // of the authorization's instances, documents and all, for every reservation). Both grew
    // with every instance ever sold; now each is a search of an index.
    migrator.registerMigration("entitlement-7-order-path-indexes") { db in
      try db.create(index: "instances_status", on: "instances", columns: ["status"])
      try db.create(
        index: "instances_authorization_live", on: "instances", columns: ["authorization_id", "status", "order_id"])
      try db.create(
        index: "instance_slots_held", on: "instance_slots",
        columns: ["authorization_id", "status", "expires_at_unix_ms"])
    }
    // The places taken under an authorization, kept by SQLite as instances come, change and
    // go: counting them in the index (entitlement-7) still read one entry per instance ever
    // sold under it, twice per order (CheckDistribution, ReserveInstanceSlot): 0.16 ms at
    // 2,000 instances, 9 ms at 100,000.
    migrator.registerMigration("entitlement-8-live-instance-counts") { db in
      try Self.createLiveInstanceCounts(db)
      // entitlement-7's index for counting them: nothing reads it now, and every instance
      // written paid for it.
      try db.execute(sql: "DROP INDEX IF EXISTS instances_authorization_live")
    }
  }

  /// Instances that hold a place under their authorization: not RELEASED (sold directly,
  /// without an authorization, they hold none).
  static func holdsPlaceSQL(_ row: String) -> String {
    "(\(row).authorization_id != '' AND \(row).status != \(Nest_Entitlement_V1_DeploymentStatus.released.rawValue))"
  }

  /// entitlement-8: one row per authorization with its live instances, filled from the
  /// instances there are and kept by triggers on every insert, update and delete of one (the
  /// CHECK refuses a count below zero, so a miscount cannot pass silently).
  static func createLiveInstanceCounts(_ db: Database) throws {
    try db.execute(
      sql: """
        CREATE TABLE authorization_live_instances (
          authorization_id TEXT PRIMARY KEY NOT NULL,
          live INTEGER NOT NULL CHECK (live >= 0)
        ) WITHOUT ROWID;
        INSERT INTO authorization_live_instances (authorization_id, live)
          SELECT authorization_id, COUNT(*) FROM instances i WHERE \(Self.holdsPlaceSQL("i")) GROUP BY authorization_id;
        CREATE TRIGGER instances_live_insert AFTER INSERT ON instances WHEN \(Self.holdsPlaceSQL("NEW"))
        BEGIN
          INSERT INTO authorization_live_instances (authorization_id, live) VALUES (NEW.authorization_id, 1)
            ON CONFLICT (authorization_id) DO UPDATE SET live = live + 1;
        END;
        CREATE TRIGGER instances_live_update AFTER UPDATE OF authorization_id, status ON instances
          WHEN \(Self.holdsPlaceSQL("OLD")) IS NOT \(Self.holdsPlaceSQL("NEW"))
            OR OLD.authorization_id IS NOT NEW.authorization_id
        BEGIN
          UPDATE authorization_live_instances SET live = live - 1
            WHERE authorization_id = OLD.authorization_id AND \(Self.holdsPlaceSQL("OLD"));
          INSERT INTO authorization_live_instances (authorization_id, live)
            SELECT NEW.authorization_id, 1 WHERE \(Self.holdsPlaceSQL("NEW"))
            ON CONFLICT (authorization_id) DO UPDATE SET live = live + 1;
        END;
        CREATE TRIGGER instances_live_delete AFTER DELETE ON instances WHEN \(Self.holdsPlaceSQL("OLD"))
        BEGIN
          UPDATE authorization_live_instances SET live = live - 1 WHERE authorization_id = OLD.authorization_id;
        END;
        """)
  }

  /// The columns of entitlement-3 (createTables makes them for a new database).
  static func addSubscriptionColumns(_ db: Database) throws {
    try db.addColumnIfMissing(
      "instances", "subscription_status", "INTEGER NOT NULL DEFAULT 0 CHECK (subscription_status >= 0)")
    try db.addColumnIfMissing("instances", "auto_renew", "BOOLEAN NOT NULL DEFAULT 0")
    try db.execute(
      sql: "CREATE INDEX IF NOT EXISTS instances_term ON instances(expires_at_unix_ms) WHERE expires_at_unix_ms > 0")
  }

  static func createTables(_ db: Database) throws {
    try db.create(table: "authorizations") { t in
      t.column("id", .text).primaryKey()
      t.column("base_service_id", .text).notNull()
      t.column("isv_id", .text).notNull().indexed()
      t.column("distributor_id", .text).notNull().indexed()
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("has_terms", .boolean).notNull()
      t.column("wholesale_currency", .text).notNull()
      t.column("wholesale_amount_minor", .integer).notNull().check { $0 >= 0 }
      t.column("valid_until_unix_ms", .integer).notNull()
      t.column("max_instances", .integer).notNull().check { $0 >= 0 }
      t.column("application_message", .text).notNull()
      t.column("status_reason", .text).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
      t.column("updated_at_unix_ms", .integer).notNull()
      t.column("document", .blob).notNull()
    }
    try db.create(index: "authorizations_pair", on: "authorizations", columns: ["base_service_id", "distributor_id"])
    try Self.authorizationHistory.create(in: db)
    try db.create(table: "instances") { t in
      t.column("id", .text).primaryKey()
      t.column("order_id", .text).notNull().unique()
      // The CreateServiceInstance request it was made from: a redelivery must match it.
      t.column("request", .blob).notNull()
      t.column("service_id", .text).notNull()
      t.column("version_id", .text).notNull()
      t.column("base_service_id", .text).notNull()
      t.column("customer_id", .text).notNull().indexed()
      t.column("distributor_id", .text).notNull().indexed()
      t.column("isv_id", .text).notNull().indexed()
      t.column("authorization_id", .text).notNull().indexed()
      t.column("scenario", .integer).notNull().check { $0 >= 1 }
      t.column("resource_owner_role", .integer).notNull()
      t.column("resource_owner_id", .text).notNull()
      t.column("fee_payer_role", .integer).notNull()
      t.column("fee_payer_id", .text).notNull()
      t.column("access_mode", .integer).notNull().check { $0 >= 1 }
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("logon_url", .text).notNull()
      t.column("license_id", .text).indexed()
      t.column("parameter_set_name", .text).notNull()
      t.column("quantity", .integer).notNull().check { $0 >= 1 }
      t.column("billing_period", .integer).notNull()
      t.column("expires_at_unix_ms", .integer).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
      t.column("updated_at_unix_ms", .integer).notNull()
      t.column("document", .blob).notNull()
    }
    try Self.instanceHistory.create(in: db)
    try Self.addSubscriptionColumns(db)
    try db.create(table: "permission_requests") { t in
      t.column("id", .text).primaryKey()
      t.column("instance_id", .text).notNull().indexed().references("instances")
      t.column("requester_id", .text).notNull().indexed()
      t.column("owner_role", .integer).notNull()
      t.column("owner_id", .text).notNull().indexed()
      t.column("operation", .text).notNull()
      t.column("reason", .text).notNull()
      t.column("requested_duration_seconds", .integer).notNull().check { $0 > 0 }
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("decision_reason", .text).notNull()
      t.column("decided_by", .text).notNull()
      t.column("granted_duration_seconds", .integer).notNull().check { $0 >= 0 }
      t.column("grant_expires_at_unix_ms", .integer).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
      t.column("decided_at_unix_ms", .integer).notNull()
      t.column("updated_at_unix_ms", .integer).notNull()
    }
    try db.create(table: "instance_slots") { t in
      t.column("order_id", .text).primaryKey()
      t.column("authorization_id", .text).notNull().indexed()
      t.column("status", .integer).notNull().check { $0 >= 1 }
      t.column("expires_at_unix_ms", .integer).notNull()
      t.column("created_at_unix_ms", .integer).notNull()
    }
  }

  // MARK: Signing keys

  /// The license signer: the key made on first start, kept in the database.
  public func signer() throws -> LicenseSigner {
    try self.database.write { db in
      if let row = try Row.fetchOne(
        db.cachedStatement(sql: "SELECT key_id, private_key FROM signing_keys ORDER BY rowid LIMIT 1"))
      {
        return try LicenseSigner(rawPrivateKey: Array(row["private_key"] as Data), keyID: row["key_id"])
      }
      let signer = try LicenseSigner.generate(keyID: Identifiers.new("key"))
      try db.cachedStatement(sql: "INSERT INTO signing_keys (key_id, private_key, created_at_unix_ms) VALUES (?, ?, ?)")
        .execute(arguments: [signer.keyID, Data(signer.rawPrivateKey), NestClock.system.nowUnixMs()])
      return signer
    }
  }

  // MARK: Authorizations

  struct AuthorizationRow: ColumnRecord {
    static let databaseTableName = "authorizations"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.baseServiceId = try row.decode(forColumn: "base_service_id")
      self.isvId = try row.decode(forColumn: "isv_id")
      self.distributorId = try row.decode(forColumn: "distributor_id")
      self.status = try row.decode(forColumn: "status")
      self.hasTerms = try row.decode(forColumn: "has_terms")
      self.wholesaleCurrency = try row.decode(forColumn: "wholesale_currency")
      self.wholesaleAmountMinor = try row.decode(forColumn: "wholesale_amount_minor")
      self.validUntilUnixMs = try row.decode(forColumn: "valid_until_unix_ms")
      self.maxInstances = try row.decode(forColumn: "max_instances")
      self.applicationMessage = try row.decode(forColumn: "application_message")
      self.statusReason = try row.decode(forColumn: "status_reason")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.updatedAtUnixMs = try row.decode(forColumn: "updated_at_unix_ms")
      self.document = try row.decode(forColumn: "document")
    }

    static let columns = ColumnLayout<AuthorizationRow>(
      table: "authorizations", key: ["id"],
      [
        "id": { $0.id },
        "base_service_id": { $0.baseServiceId },
        "isv_id": { $0.isvId },
        "distributor_id": { $0.distributorId },
        "status": { $0.status },
        "has_terms": { $0.hasTerms },
        "wholesale_currency": { $0.wholesaleCurrency },
        "wholesale_amount_minor": { $0.wholesaleAmountMinor },
        "valid_until_unix_ms": { $0.validUntilUnixMs },
        "max_instances": { $0.maxInstances },
        "application_message": { $0.applicationMessage },
        "status_reason": { $0.statusReason },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "updated_at_unix_ms": { $0.updatedAtUnixMs },
        "document": { $0.document },
      ])

    var id: String
    var baseServiceId: String
    var isvId: String
    var distributorId: String
    var status: Int32
    var hasTerms: Bool
    var wholesaleCurrency: String
    var wholesaleAmountMinor: Int64
    var validUntilUnixMs: Int64
    var maxInstances: Int32
    var applicationMessage: String
    var statusReason: String
    var createdAtUnixMs: Int64
    var updatedAtUnixMs: Int64
    var document: Data

    init(_ a: Nest_Entitlement_V1_DistributionAuthorization) throws {
      var rest = a
      (rest.id, rest.baseServiceID, rest.isvID, rest.distributorID) = ("", "", "", "")
      (rest.status, rest.terms, rest.applicationMessage, rest.statusReason) = (.unspecified, nil, "", "")
      (rest.history, rest.createdAtUnixMs, rest.updatedAtUnixMs) = ([], 0, 0)
      // The per-period wholesale prices (nobody queries them) stay in the document.
      if let prices = a.terms?.wholesalePrices, !prices.isEmpty { rest.terms = .with { $0.wholesalePrices = prices } }
      self.id = a.id
      self.baseServiceId = a.baseServiceID
      self.isvId = a.isvID
      self.distributorId = a.distributorID
      self.status = a.status.rawValue
      self.hasTerms = a.terms != nil
      self.wholesaleCurrency = a.terms?.wholesalePrice?.currency ?? ""
      self.wholesaleAmountMinor = a.terms?.wholesalePrice?.amountMinor ?? 0
      self.validUntilUnixMs = a.terms?.validUntilUnixMs ?? 0
      self.maxInstances = a.terms?.maxInstances ?? 0
      self.applicationMessage = a.applicationMessage
      self.statusReason = a.statusReason
      self.createdAtUnixMs = a.createdAtUnixMs
      self.updatedAtUnixMs = a.updatedAtUnixMs
      self.document = try Document.encode(rest)
    }

    func message(history: [Nest_Common_V1_StatusChange]) throws -> Nest_Entitlement_V1_DistributionAuthorization {
      var a = try Document.decode(self.document, as: Nest_Entitlement_V1_DistributionAuthorization.self)
      let prices = a.terms?.wholesalePrices ?? []
      a.id = self.id
      a.baseServiceID = self.baseServiceId
      a.isvID = self.isvId
      a.distributorID = self.distributorId
      a.status = .init(rawValue: self.status)
      if self.hasTerms {
        a.terms = .with {
          if !self.wholesaleCurrency.isEmpty {
            $0.wholesalePrice = MoneyMath.money(self.wholesaleCurrency, self.wholesaleAmountMinor)
          }
          $0.validUntilUnixMs = self.validUntilUnixMs
          $0.maxInstances = self.maxInstances
          $0.wholesalePrices = prices
        }
      }
      a.applicationMessage = self.applicationMessage
      a.statusReason = self.statusReason
      a.history = history
      a.createdAtUnixMs = self.createdAtUnixMs
      a.updatedAtUnixMs = self.updatedAtUnixMs
      return a
    }
  }

  public static func save(_ authorization: Nest_Entitlement_V1_DistributionAuthorization, in db: Database) throws {
    try AuthorizationRow(authorization).upsert(db)
    let entered = try Self.authorizationHistory.append(authorization.history, for: authorization.id, in: db)
    try EventLog.record(EntitlementEvents.drafts(authorization, entered: entered), in: db)
  }

  static func authorizations(_ rows: [AuthorizationRow], in db: Database) throws
    -> [Nest_Entitlement_V1_DistributionAuthorization]
  {
    let histories = try Self.authorizationHistory.entries(for: rows.map(\.id), in: db)
    return try rows.map { try $0.message(history: histories[$0.id] ?? []) }
  }

  public static func authorization(_ id: String, in db: Database) throws
    -> Nest_Entitlement_V1_DistributionAuthorization?
  {
    try Self.authorizations(AuthorizationRow.fetchAll(db, where: "id", is: id), in: db).first
  }

  /// The newest authorization for (A, distributor): the one that decides what may happen next.
  public static func latestAuthorization(baseServiceID: String, distributorID: String, in db: Database) throws
    -> Nest_Entitlement_V1_DistributionAuthorization?
  {
    try Self.authorizations(
      AuthorizationRow.fetchAll(
        db.cachedStatement(
          sql:
            "SELECT * FROM authorizations WHERE base_service_id = ? AND distributor_id = ? ORDER BY rowid DESC LIMIT 1"),
        arguments: [baseServiceID, distributorID]), in: db
    ).first
  }

  public static func authorizations(
    _ filter: Nest_Entitlement_V1_ListDistributionAuthorizationsRequest, page: PageQuery, nowUnixMs: Int64,
    in db: Database
  ) throws -> (items: [Nest_Entitlement_V1_DistributionAuthorization], nextPageToken: String) {
    var rows = RowFilter()
    rows.equal([
      "base_service_id": filter.baseServiceID, "isv_id": filter.isvID, "distributor_id": filter.distributorID,
    ])
    if filter.status != .unspecified {
      Self.statusCondition(
        filter.status.rawValue, live: Nest_Entitlement_V1_DistributionAuthorizationStatus.active.rawValue,
        expired: Nest_Entitlement_V1_DistributionAuthorizationStatus.expired.rawValue, deadline: "valid_until_unix_ms",
        nowUnixMs: nowUnixMs, rows: &rows)
    }
    let page = try RecordPage<AuthorizationRow>.fetch(db, filter: rows, page: page, newestFirst: true)
    return (try Self.authorizations(page.rows, in: db), page.nextPageToken)
  }

  /// Filters on a status that time can change: `live` past its (non-zero) `deadline` column
  /// counts as `expired`.
  static func statusCondition(
    _ status: Int32, live: Int32, expired: Int32, deadline: String, nowUnixMs: Int64, rows: inout RowFilter
  ) {
    switch status {
    case live:
      rows.add("status = ? AND (\(deadline) = 0 OR \(deadline) > ?)", [live, nowUnixMs])
    case expired:
      rows.add("(status = ? OR (status = ? AND \(deadline) > 0 AND \(deadline) <= ?))", [expired, live, nowUnixMs])
    default:
      rows.add("status = ?", [status])
    }
  }

  // MARK: Instances

  struct InstanceRow: ColumnRecord {
    static let databaseTableName = "instances"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.orderId = try row.decode(forColumn: "order_id")
      self.request = try row.decode(forColumn: "request")
      self.serviceId = try row.decode(forColumn: "service_id")
      self.versionId = try row.decode(forColumn: "version_id")
      self.baseServiceId = try row.decode(forColumn: "base_service_id")
      self.customerId = try row.decode(forColumn: "customer_id")
      self.distributorId = try row.decode(forColumn: "distributor_id")
      self.isvId = try row.decode(forColumn: "isv_id")
      self.authorizationId = try row.decode(forColumn: "authorization_id")
      self.scenario = try row.decode(forColumn: "scenario")
      self.resourceOwnerRole = try row.decode(forColumn: "resource_owner_role")
      self.resourceOwnerId = try row.decode(forColumn: "resource_owner_id")
      self.feePayerRole = try row.decode(forColumn: "fee_payer_role")
      self.feePayerId = try row.decode(forColumn: "fee_payer_id")
      self.accessMode = try row.decode(forColumn: "access_mode")
      self.status = try row.decode(forColumn: "status")
      self.logonUrl = try row.decode(forColumn: "logon_url")
      self.licenseId = try row.decode(forColumn: "license_id")
      self.parameterSetName = try row.decode(forColumn: "parameter_set_name")
      self.quantity = try row.decode(forColumn: "quantity")
      self.billingPeriod = try row.decode(forColumn: "billing_period")
      self.expiresAtUnixMs = try row.decode(forColumn: "expires_at_unix_ms")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.updatedAtUnixMs = try row.decode(forColumn: "updated_at_unix_ms")
      self.subscriptionStatus = try row.decode(forColumn: "subscription_status")
      self.autoRenew = try row.decode(forColumn: "auto_renew")
      self.document = try row.decode(forColumn: "document")
    }

    static let columns = ColumnLayout<InstanceRow>(
      table: "instances", key: ["id"], insertOnly: ["request"],
      [
        "id": { $0.id },
        "order_id": { $0.orderId },
        "request": { $0.request },
        "service_id": { $0.serviceId },
        "version_id": { $0.versionId },
        "base_service_id": { $0.baseServiceId },
        "customer_id": { $0.customerId },
        "distributor_id": { $0.distributorId },
        "isv_id": { $0.isvId },
        "authorization_id": { $0.authorizationId },
        "scenario": { $0.scenario },
        "resource_owner_role": { $0.resourceOwnerRole },
        "resource_owner_id": { $0.resourceOwnerId },
        "fee_payer_role": { $0.feePayerRole },
        "fee_payer_id": { $0.feePayerId },
        "access_mode": { $0.accessMode },
        "status": { $0.status },
        "logon_url": { $0.logonUrl },
        "license_id": { $0.licenseId },
        "parameter_set_name": { $0.parameterSetName },
        "quantity": { $0.quantity },
        "billing_period": { $0.billingPeriod },
        "expires_at_unix_ms": { $0.expiresAtUnixMs },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "updated_at_unix_ms": { $0.updatedAtUnixMs },
        "subscription_status": { $0.subscriptionStatus },
        "auto_renew": { $0.autoRenew },
        "document": { $0.document },
      ])

    var id: String
    var orderId: String
    var request: Data
    var serviceId: String
    var versionId: String
    var baseServiceId: String
    var customerId: String
    var distributorId: String
    var isvId: String
    var authorizationId: String
    var scenario: Int32
    var resourceOwnerRole: Int32
    var resourceOwnerId: String
    var feePayerRole: Int32
    var feePayerId: String
    var accessMode: Int32
    var status: Int32
    var logonUrl: String
    var licenseId: String?
    var parameterSetName: String
    var quantity: Int32
    var billingPeriod: Int32
    var expiresAtUnixMs: Int64
    var createdAtUnixMs: Int64
    var updatedAtUnixMs: Int64
    var subscriptionStatus: Int32
    var autoRenew: Bool
    /// The license (if any) and the parameters.
    var document: Data

    init(_ i: Nest_Entitlement_V1_ServiceInstance, request: Data) throws {
      var rest = Nest_Entitlement_V1_ServiceInstance()
      if let subscription = i.subscription { rest.subscription = subscription }
      if case .license(let license)? = i.access { rest.access = .license(license) }
      rest.parameters = i.parameters
      rest.providerFacts = i.providerFacts
      rest.upgradeStatus = i.upgradeStatus
      rest.upgrades = i.upgrades
      rest.upgradableToVersionID = i.upgradableToVersionID
      rest.upgradableSecurityRelease = i.upgradableSecurityRelease
      rest.autoUpgrade = i.autoUpgrade
      rest.unknownFields = i.unknownFields
      self.id = i.id
      self.orderId = i.orderID
      self.request = request
      self.serviceId = i.serviceID
      self.versionId = i.versionID
      self.baseServiceId = i.baseServiceID
      self.customerId = i.customerID
      self.distributorId = i.distributorID
      self.isvId = i.isvID
      self.authorizationId = i.authorizationID
      self.scenario = i.scenario.rawValue
      self.resourceOwnerRole = i.resourceOwner?.role.rawValue ?? 0
      self.resourceOwnerId = i.resourceOwner?.accountID ?? ""
      self.feePayerRole = i.feePayer?.role.rawValue ?? 0
      self.feePayerId = i.feePayer?.accountID ?? ""
      self.accessMode = i.accessMode.rawValue
      self.status = i.status.rawValue
      if case .logonURL(let url)? = i.access { self.logonUrl = url } else { self.logonUrl = "" }
      if case .license(let license)? = i.access { self.licenseId = license.licenseID } else { self.licenseId = nil }
      self.parameterSetName = i.parameterSetName
      self.quantity = i.quantity
      self.billingPeriod = i.billingPeriod.rawValue
      self.expiresAtUnixMs = i.expiresAtUnixMs
      self.createdAtUnixMs = i.createdAtUnixMs
      self.updatedAtUnixMs = i.updatedAtUnixMs
      self.subscriptionStatus = i.subscription?.status.rawValue ?? 0
      self.autoRenew = i.subscription?.autoRenew ?? false
      self.document = try Document.encode(rest)
    }

    func message(history: [Nest_Common_V1_StatusChange]) throws -> Nest_Entitlement_V1_ServiceInstance {
      var i = try Document.decode(self.document, as: Nest_Entitlement_V1_ServiceInstance.self)
      i.id = self.id
      i.orderID = self.orderId
      i.serviceID = self.serviceId
      i.versionID = self.versionId
      i.baseServiceID = self.baseServiceId
      i.customerID = self.customerId
      i.distributorID = self.distributorId
      i.isvID = self.isvId
      i.authorizationID = self.authorizationId
      i.scenario = .init(rawValue: self.scenario)
      i.resourceOwner = .with {
        $0.role = .init(rawValue: self.resourceOwnerRole)
        $0.accountID = self.resourceOwnerId
      }
      i.feePayer = .with {
        $0.role = .init(rawValue: self.feePayerRole)
        $0.accountID = self.feePayerId
      }
      i.accessMode = .init(rawValue: self.accessMode)
      i.status = .init(rawValue: self.status)
      if !self.logonUrl.isEmpty { i.access = .logonURL(self.logonUrl) }
      i.parameterSetName = self.parameterSetName
      i.quantity = self.quantity
      i.billingPeriod = .init(rawValue: self.billingPeriod)
      i.expiresAtUnixMs = self.expiresAtUnixMs
      i.history = history
      i.createdAtUnixMs = self.createdAtUnixMs
      i.updatedAtUnixMs = self.updatedAtUnixMs
      return i
    }
  }

  static func instances(_ rows: [InstanceRow], in db: Database) throws -> [Nest_Entitlement_V1_ServiceInstance] {
    let histories = try Self.instanceHistory.entries(for: rows.map(\.id), in: db)
    return try rows.map { try $0.message(history: histories[$0.id] ?? []) }
  }

  public static func insert(
    _ instance: Nest_Entitlement_V1_ServiceInstance, request: Nest_Entitlement_V1_CreateServiceInstanceRequest,
    in db: Database
  ) throws {
    try InstanceRow(instance, request: Document.encode(request)).insertRow(db)
    let entered = try Self.instanceHistory.append(instance.history, for: instance.id, in: db)
    try EventLog.record(
      EntitlementEvents.drafts(instance, before: nil, entered: entered, now: instance.updatedAtUnixMs), in: db)
  }

  public static func update(_ instance: Nest_Entitlement_V1_ServiceInstance, in db: Database) throws {
    guard let stored = try InstanceRow.fetchOne(db, where: "id", is: instance.id) else { return }
    try Self.update(instance, before: stored.message(history: []), in: db)
  }

  /// Saves `instance` over `before`, the instance as stored and read in this transaction
  /// (with its whole history when it was read with it; never as presented to a party, whose
  /// history may hold an entry not stored): the caller already has it, and need not have it
  /// read again. The request the instance was made from stays as it was inserted.
  static func update(
    _ instance: Nest_Entitlement_V1_ServiceInstance, before: Nest_Entitlement_V1_ServiceInstance, in db: Database
  ) throws {
    try InstanceRow(instance, request: Data()).updateRow(db)
    let entered = try Self.instanceHistory.append(
      instance.history, for: instance.id, stored: before.history.isEmpty ? nil : before.history.count, in: db)
    try EventLog.record(
      EntitlementEvents.drafts(instance, before: before, entered: entered, now: instance.updatedAtUnixMs), in: db)
    try Self.tellProvider(before: before, after: instance, in: db)
  }

  public static func instance(_ id: String, in db: Database) throws -> Nest_Entitlement_V1_ServiceInstance? {
    try Self.instances(InstanceRow.fetchAll(db, where: "id", is: id), in: db).first
  }

  /// The instance made for an order, and the request it was made from.
  public static func instance(orderID: String, in db: Database) throws
    -> (instance: Nest_Entitlement_V1_ServiceInstance, request: Nest_Entitlement_V1_CreateServiceInstanceRequest)?
  {
    guard let row = try InstanceRow.fetchOne(db, where: "order_id", is: orderID) else { return nil }
    return (try Self.instances([row], in: db)[0], try Document.decode(row.request))
  }

  public static func instance(licenseID: String, in db: Database) throws -> Nest_Entitlement_V1_ServiceInstance? {
    try Self.instances(InstanceRow.fetchAll(db, where: "license_id", is: licenseID), in: db).first
  }

  /// Instances whose deployment has not finished: CREATED, or DEPLOYING when a restart cut it short.
  static let undeployedInstancesSQL = """
    SELECT * FROM instances WHERE status IN (?, ?)
      AND NOT EXISTS (SELECT 1 FROM fulfilment_calls c WHERE c.instance_id = instances.id)
    ORDER BY rowid LIMIT 100
    """

  public static func undeployedInstances(in db: Database) throws -> [Nest_Entitlement_V1_ServiceInstance] {
    try Self.instances(
      InstanceRow.fetchAll(
        db.cachedStatement(sql: Self.undeployedInstancesSQL),
        arguments: [
          Nest_Entitlement_V1_DeploymentStatus.created.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.deploying.rawValue,
        ]), in: db)
  }

  /// Instances whose term ends by `horizon` (auto-renewals to place, expiries) or ended
  /// `grace` before now (releases), oldest end first: what the term driver looks at.
  /// Records that `subject`'s expiry at `expiresAt` is announced; whether it is news.
  public static func announce(expiryOf subject: String, at expiresAt: Int64, in db: Database) throws -> Bool {
    try db.cachedStatement(sql: "INSERT OR IGNORE INTO expiry_notices (subject, expires_at_unix_ms) VALUES (?, ?)")
      .execute(arguments: [subject, expiresAt])
    return db.changesCount > 0
  }

  /// Live instances whose term ends in (now, horizon], not yet announced.
  public static func instancesExpiring(after now: Int64, by horizon: Int64, limit: Int, in db: Database) throws
    -> [Nest_Entitlement_V1_ServiceInstance]
  {
    try Self.instances(
      InstanceRow.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT * FROM instances i WHERE expires_at_unix_ms > ? AND expires_at_unix_ms <= ? AND status IN (?, ?, ?, ?)
            AND NOT EXISTS (SELECT 1 FROM expiry_notices n
              WHERE n.subject = 'instance/' || i.id AND n.expires_at_unix_ms = i.expires_at_unix_ms)
            ORDER BY expires_at_unix_ms LIMIT ?
            """),
        arguments: [
          now, horizon, Nest_Entitlement_V1_DeploymentStatus.created.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.deploying.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.deployed.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.suspended.rawValue, limit,
        ]), in: db)
  }

  /// ACTIVE authorizations valid until a time in (now, horizon], not yet announced.
  public static func authorizationsExpiring(after now: Int64, by horizon: Int64, limit: Int, in db: Database) throws
    -> [Nest_Entitlement_V1_DistributionAuthorization]
  {
    try Self.authorizations(
      AuthorizationRow.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT * FROM authorizations a WHERE valid_until_unix_ms > ? AND valid_until_unix_ms <= ? AND status = ?
            AND NOT EXISTS (SELECT 1 FROM expiry_notices n
              WHERE n.subject = 'authorization/' || a.id AND n.expires_at_unix_ms = a.valid_until_unix_ms)
            ORDER BY valid_until_unix_ms LIMIT ?
            """),
        arguments: [now, horizon, Nest_Entitlement_V1_DistributionAuthorizationStatus.active.rawValue, limit]), in: db)
  }

  public static func instancesWithTermEndingBy(
    _ horizon: Int64, releasingBy release: Int64, limit: Int, in db: Database
  )
    throws -> [Nest_Entitlement_V1_ServiceInstance]
  {
    try Self.instances(
      InstanceRow.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT * FROM instances WHERE expires_at_unix_ms > 0 AND (
              (status IN (?, ?, ?, ?) AND expires_at_unix_ms <= ?) OR (status = ? AND expires_at_unix_ms <= ?))
            ORDER BY expires_at_unix_ms LIMIT ?
            """),
        arguments: [
          Nest_Entitlement_V1_DeploymentStatus.created.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.deploying.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.deployed.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.suspended.rawValue, horizon,
          Nest_Entitlement_V1_DeploymentStatus.expired.rawValue, release, limit,
        ]), in: db)
  }

  public static func instances(
    _ filter: Nest_Entitlement_V1_ListServiceInstancesRequest, page: PageQuery, nowUnixMs: Int64, in db: Database
  ) throws -> (items: [Nest_Entitlement_V1_ServiceInstance], nextPageToken: String) {
    var rows = RowFilter()
    rows.equal([
      "customer_id": filter.customerID, "distributor_id": filter.distributorID, "isv_id": filter.isvID,
      "service_id": filter.serviceID, "base_service_id": filter.baseServiceID,
    ])
    if filter.status != .unspecified {
      Self.statusCondition(
        filter.status.rawValue, live: Nest_Entitlement_V1_DeploymentStatus.deployed.rawValue,
        expired: Nest_Entitlement_V1_DeploymentStatus.expired.rawValue, deadline: "expires_at_unix_ms",
        nowUnixMs: nowUnixMs, rows: &rows)
    }
    let page = try RecordPage<InstanceRow>.fetch(db, filter: rows, page: page, newestFirst: true)
    return (try Self.instances(page.rows, in: db), page.nextPageToken)
  }

  // MARK: Instance slots

  struct SlotRow: ColumnRecord {
    static let databaseTableName = "instance_slots"

    init(row: Row) throws {
      self.orderId = try row.decode(forColumn: "order_id")
      self.authorizationId = try row.decode(forColumn: "authorization_id")
      self.status = try row.decode(forColumn: "status")
      self.expiresAtUnixMs = try row.decode(forColumn: "expires_at_unix_ms")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
    }

    static let columns = ColumnLayout<SlotRow>(
      table: "instance_slots", key: ["order_id"],
      [
        "order_id": { $0.orderId },
        "authorization_id": { $0.authorizationId },
        "status": { $0.status },
        "expires_at_unix_ms": { $0.expiresAtUnixMs },
        "created_at_unix_ms": { $0.createdAtUnixMs },
      ])

    var orderId: String
    var authorizationId: String
    var status: Int32
    var expiresAtUnixMs: Int64
    var createdAtUnixMs: Int64

    init(_ slot: Nest_Entitlement_V1_InstanceSlot) {
      self.orderId = slot.orderID
      self.authorizationId = slot.authorizationID
      self.status = slot.status.rawValue
      self.expiresAtUnixMs = slot.expiresAtUnixMs
      self.createdAtUnixMs = slot.createdAtUnixMs
    }

    var message: Nest_Entitlement_V1_InstanceSlot {
      .with {
        $0.orderID = self.orderId
        $0.authorizationID = self.authorizationId
        $0.status = .init(rawValue: self.status)
        $0.expiresAtUnixMs = self.expiresAtUnixMs
        $0.createdAtUnixMs = self.createdAtUnixMs
      }
    }
  }

  public static func slot(orderID: String, in db: Database) throws -> Nest_Entitlement_V1_InstanceSlot? {
    try SlotRow.fetchOne(db, where: "order_id", is: orderID)?.message
  }

  public static func save(_ slot: Nest_Entitlement_V1_InstanceSlot, in db: Database) throws {
    try SlotRow(slot).upsert(db)
  }

  /// The authorization's places taken, but for `orderID`'s: its instances that are not
  /// RELEASED (the count SQLite keeps, less the order's own instance if it holds one), and the
  /// unexpired holds of other orders that have no instance yet.
  static let slotsInUseSQL = """
    SELECT coalesce((SELECT live FROM authorization_live_instances WHERE authorization_id = ?1), 0)
      - (SELECT COUNT(*) FROM instances WHERE order_id = ?3 AND authorization_id = ?1 AND status != ?2)
      + (SELECT COUNT(*) FROM instance_slots s WHERE s.authorization_id = ?1 AND s.status = ?4
           AND s.expires_at_unix_ms > ?5 AND s.order_id != ?3)
    """

  public static func slotsInUse(authorizationID: String, except orderID: String, now: Int64, in db: Database) throws
    -> Int32
  {
    Int32(
      try Int.fetchOne(
        db.cachedStatement(sql: Self.slotsInUseSQL),
        arguments: [
          authorizationID, Nest_Entitlement_V1_DeploymentStatus.released.rawValue, orderID,
          Nest_Entitlement_V1_InstanceSlotStatus.held.rawValue, now,
        ]) ?? 0)
  }

  /// Instances under an authorization that are not RELEASED, as SQLite counts them.
  public static func liveInstanceCount(authorizationID: String, in db: Database) throws -> Int32 {
    Int32(
      try Int.fetchOne(
        db.cachedStatement(sql: "SELECT live FROM authorization_live_instances WHERE authorization_id = ?"),
        arguments: [authorizationID]) ?? 0)
  }

  // MARK: Permission requests

  struct PermissionRequestRow: ColumnRecord {
    static let databaseTableName = "permission_requests"

    init(row: Row) throws {
      self.id = try row.decode(forColumn: "id")
      self.instanceId = try row.decode(forColumn: "instance_id")
      self.requesterId = try row.decode(forColumn: "requester_id")
      self.ownerRole = try row.decode(forColumn: "owner_role")
      self.ownerId = try row.decode(forColumn: "owner_id")
      self.operation = try row.decode(forColumn: "operation")
      self.reason = try row.decode(forColumn: "reason")
      self.requestedDurationSeconds = try row.decode(forColumn: "requested_duration_seconds")
      self.status = try row.decode(forColumn: "status")
      self.decisionReason = try row.decode(forColumn: "decision_reason")
      self.decidedBy = try row.decode(forColumn: "decided_by")
      self.grantedDurationSeconds = try row.decode(forColumn: "granted_duration_seconds")
      self.grantExpiresAtUnixMs = try row.decode(forColumn: "grant_expires_at_unix_ms")
      self.createdAtUnixMs = try row.decode(forColumn: "created_at_unix_ms")
      self.decidedAtUnixMs = try row.decode(forColumn: "decided_at_unix_ms")
      self.updatedAtUnixMs = try row.decode(forColumn: "updated_at_unix_ms")
    }

    static let columns = ColumnLayout<PermissionRequestRow>(
      table: "permission_requests", key: ["id"],
      [
        "id": { $0.id },
        "instance_id": { $0.instanceId },
        "requester_id": { $0.requesterId },
        "owner_role": { $0.ownerRole },
        "owner_id": { $0.ownerId },
        "operation": { $0.operation },
        "reason": { $0.reason },
        "requested_duration_seconds": { $0.requestedDurationSeconds },
        "status": { $0.status },
        "decision_reason": { $0.decisionReason },
        "decided_by": { $0.decidedBy },
        "granted_duration_seconds": { $0.grantedDurationSeconds },
        "grant_expires_at_unix_ms": { $0.grantExpiresAtUnixMs },
        "created_at_unix_ms": { $0.createdAtUnixMs },
        "decided_at_unix_ms": { $0.decidedAtUnixMs },
        "updated_at_unix_ms": { $0.updatedAtUnixMs },
      ])

    var id: String
    var instanceId: String
    var requesterId: String
    var ownerRole: Int32
    var ownerId: String
    var operation: String
    var reason: String
    var requestedDurationSeconds: Int64
    var status: Int32
    var decisionReason: String
    var decidedBy: String
    var grantedDurationSeconds: Int64
    var grantExpiresAtUnixMs: Int64
    var createdAtUnixMs: Int64
    var decidedAtUnixMs: Int64
    var updatedAtUnixMs: Int64

    init(_ r: Nest_Entitlement_V1_PermissionRequest) {
      self.id = r.id
      self.instanceId = r.instanceID
      self.requesterId = r.requesterID
      self.ownerRole = r.owner?.role.rawValue ?? 0
      self.ownerId = r.owner?.accountID ?? ""
      self.operation = r.operation
      self.reason = r.reason
      self.requestedDurationSeconds = r.requestedDurationSeconds
      self.status = r.status.rawValue
      self.decisionReason = r.decisionReason
      self.decidedBy = r.decidedBy
      self.grantedDurationSeconds = r.grantedDurationSeconds
      self.grantExpiresAtUnixMs = r.grantExpiresAtUnixMs
      self.createdAtUnixMs = r.createdAtUnixMs
      self.decidedAtUnixMs = r.decidedAtUnixMs
      self.updatedAtUnixMs = r.updatedAtUnixMs
    }

    var message: Nest_Entitlement_V1_PermissionRequest {
      .with {
        $0.id = self.id
        $0.instanceID = self.instanceId
        $0.requesterID = self.requesterId
        $0.owner = .with {
          $0.role = .init(rawValue: self.ownerRole)
          $0.accountID = self.ownerId
        }
        $0.operation = self.operation
        $0.reason = self.reason
        $0.requestedDurationSeconds = self.requestedDurationSeconds
        $0.status = .init(rawValue: self.status)
        $0.decisionReason = self.decisionReason
        $0.decidedBy = self.decidedBy
        $0.grantedDurationSeconds = self.grantedDurationSeconds
        $0.grantExpiresAtUnixMs = self.grantExpiresAtUnixMs
        $0.createdAtUnixMs = self.createdAtUnixMs
        $0.decidedAtUnixMs = self.decidedAtUnixMs
        $0.updatedAtUnixMs = self.updatedAtUnixMs
      }
    }
  }

  public static func save(_ request: Nest_Entitlement_V1_PermissionRequest, in db: Database) throws {
    let before = try PermissionRequestRow.fetchOne(db, where: "id", is: request.id)?.message.status
    try PermissionRequestRow(request).upsert(db)
    try EventLog.record(EntitlementEvents.drafts(request, before: before), in: db)
  }

  public static func permissionRequest(_ id: String, in db: Database) throws -> Nest_Entitlement_V1_PermissionRequest? {
    try PermissionRequestRow.fetchOne(db, where: "id", is: id)?.message
  }

  /// The APPROVED, unexpired grant for the operation lasting longest, if any.
  public static func activeGrant(
    instanceID: String, requesterID: String, operation: String, nowUnixMs: Int64, in db: Database
  ) throws -> Nest_Entitlement_V1_PermissionRequest? {
    try PermissionRequestRow.fetchOne(
      db.cachedStatement(
        sql: """
          SELECT * FROM permission_requests
          WHERE instance_id = ? AND requester_id = ? AND operation = ? AND status = ? AND grant_expires_at_unix_ms > ?
          ORDER BY grant_expires_at_unix_ms DESC LIMIT 1
          """),
      arguments: [
        instanceID, requesterID, operation, Nest_Entitlement_V1_PermissionRequestStatus.approved.rawValue, nowUnixMs,
      ])?.message
  }

  public static func permissionRequests(
    _ filter: Nest_Entitlement_V1_ListPermissionRequestsRequest, page: PageQuery, nowUnixMs: Int64, in db: Database
  ) throws -> (items: [Nest_Entitlement_V1_PermissionRequest], nextPageToken: String) {
    var rows = RowFilter()
    rows.equal([
      "instance_id": filter.instanceID, "requester_id": filter.requesterID, "owner_id": filter.ownerID,
    ])
    typealias Status = Nest_Entitlement_V1_PermissionRequestStatus
    let pendingDeadline = nowUnixMs - PermissionRules.decisionWindowMs
    switch filter.status {
    case .unspecified: break
    case .pending:
      rows.add("status = ? AND created_at_unix_ms > ?", [Status.pending.rawValue, pendingDeadline])
    case .approved:
      rows.add("status = ? AND grant_expires_at_unix_ms > ?", [Status.approved.rawValue, nowUnixMs])
    case .expired:
      rows.add(
        "(status = ? OR (status = ? AND created_at_unix_ms <= ?) OR (status = ? AND grant_expires_at_unix_ms <= ?))",
        [Status.expired.rawValue, Status.pending.rawValue, pendingDeadline, Status.approved.rawValue, nowUnixMs])
    default:
      rows.add("status = ?", [filter.status.rawValue])
    }
    let page = try RecordPage<PermissionRequestRow>.fetch(db, filter: rows, page: page, newestFirst: true)
    return (page.rows.map(\.message), page.nextPageToken)
  }
}

// MARK: Fulfilment calls

/// One call to a provider's fulfilment endpoint, as stored.
public struct FulfilmentCall: Sendable, Equatable {
  public enum Status: String, Sendable { case pending, done, failed, skipped }
  public var seq: Int64
  public var key: String
  public var instanceID: String
  public var action: FulfilmentAction
  public var serviceID: String
  public var status: Status
  public var attempts: Int
  public var firstAttemptAtUnixMs: Int64
  public var nextAttemptAtUnixMs: Int64
  public var lastError: String
  public var createdAtUnixMs: Int64

  init(row: Row) {
    self.seq = row["seq"]
    self.key = row["key"]
    self.instanceID = row["instance_id"]
    self.action = FulfilmentAction(rawValue: row["action"]) ?? .create
    self.serviceID = row["service_id"]
    self.status = Status(rawValue: row["status"]) ?? .pending
    self.attempts = row["attempts"]
    self.firstAttemptAtUnixMs = row["first_attempt_at_unix_ms"]
    self.nextAttemptAtUnixMs = row["next_attempt_at_unix_ms"]
    self.lastError = row["last_error"]
    self.createdAtUnixMs = row["created_at_unix_ms"]
  }
}

extension EntitlementStore {
  /// Queues a call (once per key), due now.
  public static func queue(
    _ action: FulfilmentAction, key: String, instanceID: String, serviceID: String, now: Int64, in db: Database
  ) throws {
    try db.cachedStatement(
      sql: """
        INSERT OR IGNORE INTO fulfilment_calls
          (key, instance_id, action, service_id, status, next_attempt_at_unix_ms, created_at_unix_ms)
        VALUES (?, ?, ?, ?, 'pending', ?, ?)
        """
    ).execute(arguments: [key, instanceID, action.rawValue, serviceID, now, now])
  }

  /// After a change to an instance its provider created: the calls that tell the provider.
  static func tellProvider(
    before: Nest_Entitlement_V1_ServiceInstance, after: Nest_Entitlement_V1_ServiceInstance, in db: Database
  ) throws {
    guard let provider = FulfilmentRules.provider(of: after) else { return }
    let calls = FulfilmentRules.calls(before: before, after: after)
    guard !calls.isEmpty, try Self.providerRuns(after.id, in: db) else { return }
    for call in calls {
      try Self.queue(
        call.action, key: call.key, instanceID: after.id, serviceID: provider.serviceID, now: after.updatedAtUnixMs,
        in: db)
    }
  }

  /// Whether the instance's provider created it (through its fulfilment endpoint): then the
  /// provider is told of each change and makes each upgrade.
  public static func providerRuns(_ instanceID: String, in db: Database) throws -> Bool {
    try Bool.fetchOne(
      db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM fulfilment_calls WHERE key = ?)"),
      arguments: [FulfilmentRules.createKey(instanceID)]) == true
  }

  /// The services that have live (DEPLOYED or SUSPENDED) instances.
  public static func servicesWithLiveInstances(in db: Database) throws -> [String] {
    try String.fetchAll(
      db.cachedStatement(sql: "SELECT DISTINCT service_id FROM instances WHERE status IN (?, ?) LIMIT 10000"),
      arguments: [
        Nest_Entitlement_V1_DeploymentStatus.deployed.rawValue,
        Nest_Entitlement_V1_DeploymentStatus.suspended.rawValue,
      ])
  }

  /// A service's live instances, oldest first.
  public static func liveInstances(ofService serviceID: String, in db: Database) throws
    -> [Nest_Entitlement_V1_ServiceInstance]
  {
    try Self.instances(
      InstanceRow.fetchAll(
        db.cachedStatement(
          sql: "SELECT * FROM instances WHERE service_id = ? AND status IN (?, ?) ORDER BY rowid LIMIT 10000"),
        arguments: [
          serviceID, Nest_Entitlement_V1_DeploymentStatus.deployed.rawValue,
          Nest_Entitlement_V1_DeploymentStatus.suspended.rawValue,
        ]), in: db)
  }

  /// The calls due at `now`: per instance, only its oldest call not yet ended.
  public static func dueFulfilmentCalls(now: Int64, limit: Int, excluding: Set<Int64>, in db: Database) throws
    -> [FulfilmentCall]
  {
    try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT * FROM fulfilment_calls c
          WHERE c.status = 'pending' AND c.next_attempt_at_unix_ms <= ?
            AND NOT EXISTS (
              SELECT 1 FROM fulfilment_calls p WHERE p.instance_id = c.instance_id AND p.status = 'pending' AND p.seq < c.seq)
          ORDER BY c.next_attempt_at_unix_ms, c.seq LIMIT ?
          """), arguments: [now, limit + excluding.count]
    ).map(FulfilmentCall.init(row:)).filter { !excluding.contains($0.seq) }.prefix(limit).map { $0 }
  }

  public static func fulfilmentCall(_ seq: Int64, in db: Database) throws -> FulfilmentCall? {
    try Row.fetchOne(
      db.cachedStatement(sql: "SELECT * FROM fulfilment_calls WHERE seq = ?"), arguments: [seq]
    ).map(FulfilmentCall.init(row:))
  }

  /// An instance's calls, oldest first.
  public static func fulfilmentCalls(ofInstance instanceID: String, in db: Database) throws -> [FulfilmentCall] {
    try Row.fetchAll(
      db.cachedStatement(sql: "SELECT * FROM fulfilment_calls WHERE instance_id = ? ORDER BY seq"),
      arguments: [instanceID]
    ).map(FulfilmentCall.init(row:))
  }

  public static func save(_ call: FulfilmentCall, in db: Database) throws {
    try db.cachedStatement(
      sql: """
        UPDATE fulfilment_calls SET status = ?, attempts = ?, first_attempt_at_unix_ms = ?,
          next_attempt_at_unix_ms = ?, last_error = ? WHERE seq = ?
        """
    ).execute(arguments: [
      call.status.rawValue, call.attempts, call.firstAttemptAtUnixMs, call.nextAttemptAtUnixMs, call.lastError,
      call.seq,
    ])
  }
}
