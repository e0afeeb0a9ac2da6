// The catalog's SQLite database: each resource stored as its encoded message beside the
// columns that lists filter and sort on. Only this file knows the schema.
import Foundation
public import GRDB
public import NestProto
public import NestServiceKit

public struct CatalogStore: Sendable {
  public let database: NestDatabase

  public init(database: NestDatabase) {
    self.database = database
  }

  @Sendable public static func migrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("catalog-1") { db in
      try db.create(table: "services") { t in
        t.column("id", .text).primaryKey()
        t.column("owner_id", .text).notNull().indexed()
        t.column("type", .integer).notNull()
        t.column("status", .integer).notNull()
        t.column("distributable", .boolean).notNull()
        t.column("listed", .boolean).notNull()
        t.column("base_service_id", .text).notNull().indexed()
        t.column("body", .blob).notNull()
      }
      try db.create(table: "versions") { t in
        t.column("id", .text).primaryKey()
        t.column("service_id", .text).notNull().references("services")
        t.column("number", .integer).notNull()
        t.column("status", .integer).notNull()
        t.column("body", .blob).notNull()
        t.uniqueKey(["service_id", "number"])
      }
      try db.create(table: "products") { t in
        t.column("id", .text).primaryKey()
        t.column("service_id", .text).notNull().unique().references("services")
        t.column("owner_id", .text).notNull().indexed()
        t.column("status", .integer).notNull()
        t.column("service_type", .integer).notNull()
        t.column("base_service_id", .text).notNull()
        t.column("body", .blob).notNull()
      }
    }
    migrator.registerMigration("catalog-2-fulfilment-endpoints") { db in
      try db.create(table: "fulfilment_endpoints") { t in
        t.column("service_id", .text).primaryKey().references("services")
        t.column("body", .blob).notNull()
      }
    }
  }

  // MARK: Services

  public static func save(_ service: Nest_Catalog_V1_Service, in db: Database) throws {
    let before = try Self.service(service.id, in: db)
    try EventLog.record(CatalogEvents.drafts(service, before: before), in: db)
    try db.cachedStatement(
      sql: """
        INSERT INTO services (id, owner_id, type, status, distributable, listed, base_service_id, body)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET owner_id = excluded.owner_id, type = excluded.type,
          status = excluded.status, distributable = excluded.distributable, listed = excluded.listed,
          base_service_id = excluded.base_service_id, body = excluded.body
        """
    ).execute(arguments: [
      service.id, service.ownerID, service.type.rawValue, service.status.rawValue, service.distributable,
      service.listedOnMarketplace, service.baseServiceID, Data(try service.serializedBytes()),
    ])
  }

  public static func service(_ id: String, in db: Database) throws -> Nest_Catalog_V1_Service? {
    try MessageRows.one(db, sql: "SELECT body FROM services WHERE id = ?", arguments: [id])
  }

  /// A page of services matching `filter`, in creation order.
  public static func services(
    _ filter: ServiceFilter, page: PageQuery, in db: Database
  ) throws -> (services: [Nest_Catalog_V1_Service], nextPageToken: String) {
    var rows = RowFilter()
    if let owner = filter.ownerID { rows.add("owner_id = ?", [owner]) }
    if let type = filter.type { rows.add("type = ?", [type.rawValue]) }
    if let statuses = filter.statuses {
      rows.oneOf("status", statuses.map(\.rawValue))
    }
    if let distributable = filter.distributable { rows.add("distributable = ?", [distributable]) }
    if let listed = filter.listed { rows.add("listed = ?", [listed]) }
    if let base = filter.baseServiceID { rows.add("base_service_id = ?", [base]) }
    if let visibleTo = filter.visibleToNonOwner {
      // Others' drafts stay private.
      rows.add("(owner_id = ? OR status != ?)", [visibleTo, Nest_Catalog_V1_ServiceStatus.draft.rawValue])
    }
    let result = try MessageRows.page(
      db, table: "services", filter: rows, page: page,
      newestFirst: false, as: Nest_Catalog_V1_Service.self)
    return (result.items, result.nextPageToken)
  }

  // MARK: Versions

  public static func save(_ version: Nest_Catalog_V1_ServiceVersion, in db: Database) throws {
    try db.cachedStatement(
      sql: """
        INSERT INTO versions (id, service_id, number, status, body) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body
        """
    ).execute(arguments: [
      version.id, version.serviceID, version.number, version.status.rawValue, Data(try version.serializedBytes()),
    ])
  }

  public static func version(_ id: String, in db: Database) throws -> Nest_Catalog_V1_ServiceVersion? {
    try MessageRows.one(db, sql: "SELECT body FROM versions WHERE id = ?", arguments: [id])
  }

  public static func versions(ofService serviceID: String, in db: Database) throws -> [Nest_Catalog_V1_ServiceVersion] {
    try MessageRows.all(
      db, sql: "SELECT body FROM versions WHERE service_id = ? ORDER BY number", arguments: [serviceID])
  }

  public static func nextVersionNumber(ofService serviceID: String, in db: Database) throws -> Int32 {
    Int32(
      try Int.fetchOne(
        db.cachedStatement(sql: "SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE service_id = ?"),
        arguments: [serviceID]) ?? 1)
  }

  // MARK: Products

  public static func save(_ product: Nest_Catalog_V1_Product, in db: Database) throws {
    try db.cachedStatement(
      sql: """
        INSERT INTO products (id, service_id, owner_id, status, service_type, base_service_id, body)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body
        """
    ).execute(arguments: [
      product.id, product.serviceID, product.ownerID, product.status.rawValue, product.serviceType.rawValue,
      product.baseServiceID, Data(try product.serializedBytes()),
    ])
  }

  public static func product(_ id: String, in db: Database) throws -> Nest_Catalog_V1_Product? {
    try MessageRows.one(db, sql: "SELECT body FROM products WHERE id = ?", arguments: [id])
  }

  public static func product(ofService serviceID: String, in db: Database) throws -> Nest_Catalog_V1_Product? {
    try MessageRows.one(db, sql: "SELECT body FROM products WHERE service_id = ?", arguments: [serviceID])
  }

  /// A page of products matching `filter`, in creation order.
  public static func products(
    _ filter: ProductFilter, page: PageQuery, in db: Database
  ) throws -> (products: [Nest_Catalog_V1_Product], nextPageToken: String) {
    var rows = RowFilter()
    if let owner = filter.ownerID {
      rows.add("owner_id = ?", [owner])
    }
    if let service = filter.serviceID {
      rows.add("service_id = ?", [service])
    }
    if let status = filter.status {
      rows.add("status = ?", [status.rawValue])
    }
    if let type = filter.serviceType {
      rows.add("service_type = ?", [type.rawValue])
    }
    if let base = filter.baseServiceID {
      rows.add("base_service_id = ?", [base])
    }
    let result = try MessageRows.page(
      db, table: "products", filter: rows, page: page,
      newestFirst: false, as: Nest_Catalog_V1_Product.self)
    return (result.items, result.nextPageToken)
  }

  // MARK: Fulfilment endpoints

  public static func fulfilmentEndpoint(ofService serviceID: String, in db: Database) throws
    -> Nest_Catalog_V1_FulfilmentEndpoint?
  {
    try MessageRows.one(db, sql: "SELECT body FROM fulfilment_endpoints WHERE service_id = ?", arguments: [serviceID])
  }

  /// Stores the endpoint of its service, or with nil removes the service's endpoint.
  public static func save(
    _ endpoint: Nest_Catalog_V1_FulfilmentEndpoint?, ofService serviceID: String, in db: Database
  ) throws {
    guard let endpoint else {
      try db.execute(sql: "DELETE FROM fulfilment_endpoints WHERE service_id = ?", arguments: [serviceID])
      return
    }
    try db.execute(
      sql: """
        INSERT INTO fulfilment_endpoints (service_id, body) VALUES (?, ?)
        ON CONFLICT(service_id) DO UPDATE SET body = excluded.body
        """, arguments: [serviceID, Data(try endpoint.serializedBytes())])
  }
}

/// What a list of services may be narrowed to; nil fields do not filter.
public struct ServiceFilter: Sendable {
  public var ownerID: String?
  public var type: Nest_Common_V1_ServiceType?
  public var statuses: [Nest_Catalog_V1_ServiceStatus]?
  public var distributable: Bool?
  public var listed: Bool?
  public var baseServiceID: String?
  /// Set to the caller's id for callers who may not see others' drafts.
  public var visibleToNonOwner: String?

  public init() {}
}

/// What a list of products may be narrowed to; nil fields do not filter.
public struct ProductFilter: Sendable {
  public var ownerID: String?
  public var serviceID: String?
  public var status: Nest_Catalog_V1_ProductStatus?
  public var serviceType: Nest_Common_V1_ServiceType?
  public var baseServiceID: String?

  public init() {}
}
