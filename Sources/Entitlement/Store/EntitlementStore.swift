// The entitlement service's SQLite database: authorizations, instances and permission
// requests stored as their encoded message beside the columns that lists filter on, and
// the license signing key. Only this file knows the schema.
import Foundation
public import GRDB
public import NestProto
public import NestServiceKit

public struct EntitlementStore: Sendable {
  public let database: DatabasePool

  public static func migrations(_ migrator: inout DatabaseMigrator) {
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
        // The CreateServiceInstance request it was made from: a redelivery must match it.
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
  }

  public init(path: String) throws {
    self.database = try ServiceDatabase.open(path: path, migrations: Self.migrations)
  }

  // MARK: Signing keys

  /// The license signer: the key made on first start, kept in the database.
  public func signer() throws -> LicenseSigner {
    try self.database.write { db in
      if let row = try Row.fetchOne(db, sql: "SELECT key_id, private_key FROM signing_keys ORDER BY rowid LIMIT 1") {
        return try LicenseSigner(rawPrivateKey: Array(row["private_key"] as Data), keyID: row["key_id"])
      }
      let signer = LicenseSigner.generate(keyID: Caller.newID("key"))
      try db.execute(
        sql: "INSERT INTO signing_keys (key_id, private_key, created_at_unix_ms) VALUES (?, ?, ?)",
        arguments: [signer.keyID, Data(signer.rawPrivateKey), Clock.nowUnixMs()])
      return signer
    }
  }

  // MARK: Authorizations

  public static func save(_ authorization: Nest_Entitlement_V1_DistributionAuthorization, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO authorizations (id, base_service_id, isv_id, distributor_id, status, valid_until_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status,
          valid_until_unix_ms = excluded.valid_until_unix_ms, body = excluded.body
        """,
      arguments: [
        authorization.id, authorization.baseServiceID, authorization.isvID, authorization.distributorID,
        authorization.status.rawValue, authorization.terms?.validUntilUnixMs ?? 0,
        Data(try authorization.serializedBytes()),
      ])
  }

  public static func authorization(_ id: String, in db: Database) throws
    -> Nest_Entitlement_V1_DistributionAuthorization?
  {
    try MessageRows.one(db, sql: "SELECT body FROM authorizations WHERE id = ?", arguments: [id])
  }

  /// The newest authorization for (A, distributor): the one that decides what may happen next.
  public static func latestAuthorization(baseServiceID: String, distributorID: String, in db: Database) throws
    -> Nest_Entitlement_V1_DistributionAuthorization?
  {
    try MessageRows.one(
      db,
      sql:
        "SELECT body FROM authorizations WHERE base_service_id = ? AND distributor_id = ? ORDER BY rowid DESC LIMIT 1",
      arguments: [baseServiceID, distributorID])
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
    return try MessageRows.page(
      db, table: "authorizations", filter: rows, page: page, newestFirst: true)
  }

  /// Filters on a status that time can change: `live` past its (non-zero) `deadline` column
  /// counts as `expired`.
  static func statusCondition(
    _ status: Int32, live: Int32, expired: Int32, deadline: String, nowUnixMs: Int64,
    rows: inout RowFilter
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

  public static func insert(
    _ instance: Nest_Entitlement_V1_ServiceInstance, request: Nest_Entitlement_V1_CreateServiceInstanceRequest,
    in db: Database
  ) throws {
    try db.execute(
      sql: """
        INSERT INTO instances (id, order_id, request, customer_id, distributor_id, isv_id, service_id,
          base_service_id, authorization_id, license_id, status, expires_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [
        instance.id, instance.orderID, Data(try request.serializedBytes()), instance.customerID,
        instance.distributorID, instance.isvID, instance.serviceID, instance.baseServiceID, instance.authorizationID,
        Self.licenseID(of: instance), instance.status.rawValue, instance.expiresAtUnixMs,
        Data(try instance.serializedBytes()),
      ])
  }

  public static func update(_ instance: Nest_Entitlement_V1_ServiceInstance, in db: Database) throws {
    try db.execute(
      sql: "UPDATE instances SET status = ?, expires_at_unix_ms = ?, body = ? WHERE id = ?",
      arguments: [
        instance.status.rawValue, instance.expiresAtUnixMs, Data(try instance.serializedBytes()), instance.id,
      ])
  }

  static func licenseID(of instance: Nest_Entitlement_V1_ServiceInstance) -> String? {
    if case .license(let license)? = instance.access { return license.licenseID }
    return nil
  }

  public static func instance(_ id: String, in db: Database) throws -> Nest_Entitlement_V1_ServiceInstance? {
    try MessageRows.one(db, sql: "SELECT body FROM instances WHERE id = ?", arguments: [id])
  }

  public static func instance(orderID: String, in db: Database) throws
    -> (instance: Nest_Entitlement_V1_ServiceInstance, request: [UInt8])?
  {
    guard
      let row = try Row.fetchOne(
        db, sql: "SELECT body, request FROM instances WHERE order_id = ?", arguments: [orderID])
    else { return nil }
    return (
      try Nest_Entitlement_V1_ServiceInstance(serializedBytes: row["body"] as Data), Array(row["request"] as Data)
    )
  }

  public static func instance(licenseID: String, in db: Database) throws -> Nest_Entitlement_V1_ServiceInstance? {
    try MessageRows.one(db, sql: "SELECT body FROM instances WHERE license_id = ?", arguments: [licenseID])
  }

  /// Instances whose deployment has not finished: CREATED, or DEPLOYING when a restart cut it short.
  public static func undeployedInstances(in db: Database) throws -> [Nest_Entitlement_V1_ServiceInstance] {
    try MessageRows.all(
      db, sql: "SELECT body FROM instances WHERE status IN (?, ?) ORDER BY rowid LIMIT 100",
      arguments: [
        Nest_Entitlement_V1_DeploymentStatus.created.rawValue, Nest_Entitlement_V1_DeploymentStatus.deploying.rawValue,
      ])
  }

  /// Instances under an authorization that are not RELEASED.
  public static func liveInstanceCount(authorizationID: String, in db: Database) throws -> Int32 {
    Int32(
      try Int.fetchOne(
        db, sql: "SELECT COUNT(*) FROM instances WHERE authorization_id = ? AND status != ?",
        arguments: [authorizationID, Nest_Entitlement_V1_DeploymentStatus.released.rawValue]) ?? 0)
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
    return try MessageRows.page(
      db, table: "instances", filter: rows, page: page, newestFirst: true)
  }

  // MARK: Permission requests

  public static func save(_ request: Nest_Entitlement_V1_PermissionRequest, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO permission_requests (id, instance_id, requester_id, owner_id, operation, status,
          created_at_unix_ms, grant_expires_at_unix_ms, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status,
          grant_expires_at_unix_ms = excluded.grant_expires_at_unix_ms, body = excluded.body
        """,
      arguments: [
        request.id, request.instanceID, request.requesterID, request.owner?.accountID ?? "", request.operation,
        request.status.rawValue, request.createdAtUnixMs, request.grantExpiresAtUnixMs,
        Data(try request.serializedBytes()),
      ])
  }

  public static func permissionRequest(_ id: String, in db: Database) throws -> Nest_Entitlement_V1_PermissionRequest? {
    try MessageRows.one(db, sql: "SELECT body FROM permission_requests WHERE id = ?", arguments: [id])
  }

  /// The APPROVED, unexpired grant for the operation lasting longest, if any.
  public static func activeGrant(
    instanceID: String, requesterID: String, operation: String, nowUnixMs: Int64, in db: Database
  ) throws -> Nest_Entitlement_V1_PermissionRequest? {
    try MessageRows.one(
      db,
      sql: """
        SELECT body FROM permission_requests
        WHERE instance_id = ? AND requester_id = ? AND operation = ? AND status = ? AND grant_expires_at_unix_ms > ?
        ORDER BY grant_expires_at_unix_ms DESC LIMIT 1
        """,
      arguments: [
        instanceID, requesterID, operation, Nest_Entitlement_V1_PermissionRequestStatus.approved.rawValue, nowUnixMs,
      ])
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
    return try MessageRows.page(
      db, table: "permission_requests", filter: rows, page: page, newestFirst: true)
  }
}
