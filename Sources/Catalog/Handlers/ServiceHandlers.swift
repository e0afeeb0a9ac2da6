// Services and their versions: create (A, or B on an authorized A), version, publish, take
// offline, enable or disable distribution, read and list.
import Foundation
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension CatalogService {
  /// The service for this call, as its declaration's relation allows: NOT_FOUND if the caller
  /// may not see it, PERMISSION_DENIED if it may see it but not act on it.
  static func authorized(_ id: String, _ access: Access, field: String = "service_id", in db: Database) throws
    -> Nest_Catalog_V1_Service
  {
    try access.authorize(try CatalogStore.service(id, in: db), notFound: .notFound("service", id, field: field))
  }

  /// Services as read: a derived one with where it stands against its base (each base and
  /// its versions read once, however many of its derived services are in `services`).
  static func presented(_ services: [Nest_Catalog_V1_Service], in db: Database) throws -> [Nest_Catalog_V1_Service] {
    var bases: [String: (Nest_Catalog_V1_Service, [Nest_Catalog_V1_ServiceVersion])?] = [:]
    return try services.map { service in
      guard !service.baseServiceID.isEmpty else { return service }
      if bases[service.baseServiceID] == nil {
        bases[service.baseServiceID] = try CatalogStore.service(service.baseServiceID, in: db).map {
          ($0, try CatalogStore.versions(ofService: $0.id, in: db))
        }
      }
      guard let (base, versions) = bases[service.baseServiceID] ?? nil else { return service }
      return VersionRules.behind(service, base: base, baseVersions: versions)
    }
  }

  /// What selling `service` means (ScenarioRules), read with its base.
  static func resolution(of service: Nest_Catalog_V1_Service, in db: Database) throws
    -> Nest_Common_V1_ScenarioResolution
  {
    let base = service.baseServiceID.isEmpty ? nil : try CatalogStore.service(service.baseServiceID, in: db)
    return try ScenarioRules.resolve(service: service, base: base)
  }

  static func presented(_ service: Nest_Catalog_V1_Service, in db: Database) throws -> Nest_Catalog_V1_Service {
    try Self.presented([service], in: db)[0]
  }

  /// Each derived service of `base` built on an older version than its new default gets a
  /// `service.base_updated` event to its owner.
  static func announceBaseUpdate(of base: Nest_Catalog_V1_Service, now: Int64, in db: Database) throws {
    var filter = ServiceFilter()
    filter.baseServiceID = base.id
    let versions = try CatalogStore.versions(ofService: base.id, in: db)
    var token = ""
    repeat {
      let query = try PageQuery(
        .with {
          $0.pageSize = 200
          $0.pageToken = token
        })
      let page = try CatalogStore.services(filter, page: query, in: db)
      for derived in page.services {
        let presented = VersionRules.behind(derived, base: base, baseVersions: versions)
        if !presented.baseLatestVersionID.isEmpty {
          try EventLog.record([CatalogEvents.baseUpdated(presented, at: now)], in: db)
        }
      }
      token = page.nextPageToken
    } while !token.isEmpty
  }

  /// A new DRAFT service with its DRAFT version 1, saved: what CreateService and
  /// CreateDerivedService share. `service` and `version` add what differs.
  static func createDraft(
    owner: String, name: String, description: String, type: Nest_Common_V1_ServiceType, versionLabel: String,
    now: Int64, in db: Database, service customizeService: (inout Nest_Catalog_V1_Service) -> Void = { _ in },
    version customizeVersion: (inout Nest_Catalog_V1_ServiceVersion) -> Void
  ) throws -> (Nest_Catalog_V1_Service, Nest_Catalog_V1_ServiceVersion) {
    var service = Nest_Catalog_V1_Service.with {
      $0.id = Identifiers.new("svc")
      $0.ownerID = owner
      $0.name = name
      $0.description = description
      $0.type = type
      $0.status = .draft
      $0.createdAtUnixMs = now
      $0.updatedAtUnixMs = now
    }
    customizeService(&service)
    var version = Nest_Catalog_V1_ServiceVersion.with {
      $0.id = Identifiers.new("ver")
      $0.serviceID = service.id
      $0.number = 1
      $0.label = versionLabel.isEmpty ? "1" : versionLabel
      $0.status = .draft
      $0.createdAtUnixMs = now
    }
    customizeVersion(&version)
    try CatalogStore.save(service, in: db)
    try CatalogStore.save(version, in: db)
    return (service, version)
  }

  public func createService(request: Nest_Catalog_V1_CreateServiceRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_CreateServiceResponse
  {
    let access = try Access.forCall()
    try CatalogValidation.check(request)
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateService", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let (service, version) = try Self.createDraft(
          owner: access.caller.subject, name: request.name, description: request.description, type: request.type,
          versionLabel: request.versionLabel, now: now, in: db
        ) {
          $0.deploymentPackage = request.deploymentPackage
          $0.parameterSets = request.parameterSets
        }
        return .with {
          $0.service = service
          $0.version = version
        }
      }
    }
  }

  public func createDerivedService(
    request: Nest_Catalog_V1_CreateDerivedServiceRequest, context: ServerContext
  ) async throws -> Nest_Catalog_V1_CreateDerivedServiceResponse {
    let access = try Access.forCall()
    try CatalogValidation.check(request)
    let (base, baseVersion) = try await self.store.database.read { db in
      let base = try access.authorize(
        try CatalogStore.service(request.baseServiceID, in: db), as: .viewer,
        notFound: .notFound("base service", request.baseServiceID, field: "base_service_id"))
      try ScenarioRules.checkBase(base)
      let versionID = request.baseVersionID.isEmpty ? base.defaultVersionID : request.baseVersionID
      return (
        base, try ScenarioRules.publishedVersion(try CatalogStore.version(versionID, in: db), of: base, id: versionID)
      )
    }
    try ScenarioRules.checkDerivedType(base: base.type, derived: request.type)
    // Entitlement says whether this distributor may build on A at all.
    _ = try await self.distribution.activeAuthorization(baseServiceID: base.id, distributorID: access.caller.subject)
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateDerivedService", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let (service, version) = try Self.createDraft(
          owner: access.caller.subject, name: request.name, description: request.description, type: request.type,
          versionLabel: request.versionLabel, now: now, in: db,
          service: {
            $0.baseServiceID = base.id
            $0.baseVersionID = baseVersion.id
          }
        ) {
          $0.deploymentAdditions = request.deploymentAdditions
          $0.parameterSets = request.parameterSets
          $0.baseVersionID = baseVersion.id
        }
        return .with {
          $0.service = service
          $0.version = version
        }
      }
    }
  }

  public func createServiceVersion(
    request: Nest_Catalog_V1_CreateServiceVersionRequest, context: ServerContext
  ) async throws -> Nest_Catalog_V1_CreateServiceVersionResponse {
    let access = try Access.forCall()
    // A derived service rebased on a version of A: that version must be published, and the
    // owner's authorization for A still ACTIVE.
    if !request.baseVersionID.isEmpty {
      let current = try await self.store.database.read { db in
        let service = try Self.authorized(request.serviceID, access, in: db)
        guard !service.baseServiceID.isEmpty else {
          throw DomainError.invalid("base_version_id", "must be empty for a base service")
        }
        guard let base = try CatalogStore.service(service.baseServiceID, in: db) else {
          throw DomainError.notFound("base service", service.baseServiceID, field: "base_version_id")
        }
        _ = try ScenarioRules.publishedVersion(
          try CatalogStore.version(request.baseVersionID, in: db), of: base, id: request.baseVersionID)
        return service
      }
      _ = try await self.distribution.activeAuthorization(
        baseServiceID: current.baseServiceID, distributorID: current.ownerID)
    }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let service = try Self.authorized(request.serviceID, access, in: db)
      try CatalogValidation.check(request, derived: !service.baseServiceID.isEmpty)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateServiceVersion", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let earlier = try CatalogStore.versions(ofService: service.id, in: db)
        try VersionRules.checkUpgradePaths(request.upgradableFromVersionIds, among: earlier)
        let number = try CatalogStore.nextVersionNumber(ofService: service.id, in: db)
        let version = Nest_Catalog_V1_ServiceVersion.with {
          $0.id = Identifiers.new("ver")
          $0.serviceID = service.id
          $0.number = number
          $0.label = request.label.isEmpty ? "\(number)" : request.label
          $0.status = .draft
          $0.deploymentPackage = request.deploymentPackage
          $0.deploymentAdditions = request.deploymentAdditions
          $0.parameterSets = request.parameterSets
          $0.upgradableFromVersionIds = request.upgradableFromVersionIds
          $0.supportsRollback = request.supportsRollback
          $0.securityRelease = request.securityRelease
          if !service.baseServiceID.isEmpty {
            $0.baseVersionID =
              request.baseVersionID.isEmpty
              ? VersionRules.baseVersion(of: service, latest: earlier.max { $0.number < $1.number })
              : request.baseVersionID
          }
          $0.createdAtUnixMs = now
        }
        try CatalogStore.save(version, in: db)
        return .with { $0.version = version }
      }
    }
  }

  public func publishService(request: Nest_Catalog_V1_PublishServiceRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_PublishServiceResponse
  {
    let access = try Access.forCall()
    let current = try await self.store.database.read { try Self.authorized(request.serviceID, access, in: $0) }
    if !current.baseServiceID.isEmpty {
      _ = try await self.distribution.activeAuthorization(
        baseServiceID: current.baseServiceID, distributorID: access.caller.subject)
    }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      var service = try Self.authorized(request.serviceID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "PublishService", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        guard var version = try CatalogStore.version(request.versionID, in: db), version.serviceID == service.id else {
          throw DomainError.notFound("version", "\(request.versionID) of service \(service.id)", field: "version_id")
        }
        try ServiceLifecycleRules.checkEditable(version.status)
        version.status = .published
        version.publishedAtUnixMs = now
        service.status = try ServiceLifecycleRules.publish(from: service.status)
        service.defaultVersionID = version.id
        if !version.baseVersionID.isEmpty { service.baseVersionID = version.baseVersionID }
        service.updatedAtUnixMs = now
        try CatalogStore.save(version, in: db)
        try CatalogStore.save(service, in: db)
        // A new version of A: the distributors of services built on an older one are told.
        if service.baseServiceID.isEmpty {
          try Self.announceBaseUpdate(of: service, now: now, in: db)
        }
        let presented = try Self.presented(service, in: db)
        return .with {
          $0.service = presented
          $0.version = version
        }
      }
    }
  }

  public func takeServiceOffline(request: Nest_Catalog_V1_TakeServiceOfflineRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_TakeServiceOfflineResponse
  {
    try await self.updateService(request.serviceID, method: "TakeServiceOffline", token: request.clientToken, request) {
      service in
      service.status = try ServiceLifecycleRules.takeOffline(from: service.status)
    } response: { service in
      .with { $0.service = service }
    }
  }

  public func enableDistribution(request: Nest_Catalog_V1_EnableDistributionRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_EnableDistributionResponse
  {
    try await self.updateService(request.serviceID, method: "EnableDistribution", token: request.clientToken, request) {
      service in
      try ServiceLifecycleRules.setDistributable(&service, true)
    } response: { service in
      .with { $0.service = service }
    }
  }

  public func disableDistribution(request: Nest_Catalog_V1_DisableDistributionRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_DisableDistributionResponse
  {
    try await self.updateService(request.serviceID, method: "DisableDistribution", token: request.clientToken, request)
    { service in
      try ServiceLifecycleRules.setDistributable(&service, false)
    } response: { service in
      .with { $0.service = service }
    }
  }

  /// Loads the service the call may act on, changes it, saves it: once per client token.
  private func updateService<Request: NestMessage, Response: NestMessage>(
    _ serviceID: String, method: String, token: String, _ request: Request,
    _ change: @escaping @Sendable (inout Nest_Catalog_V1_Service) throws -> Void,
    response: @escaping @Sendable (Nest_Catalog_V1_Service) -> Response
  ) async throws -> Response {
    let access = try Access.forCall()
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      var service = try Self.authorized(serviceID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        try change(&service)
        service.updatedAtUnixMs = now
        try CatalogStore.save(service, in: db)
        return response(service)
      }
    }
  }

  public func getService(request: Nest_Catalog_V1_GetServiceRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_GetServiceResponse
  {
    let access = try Access.forCall()
    return try self.store.database.readNow { db in
      let service = try Self.authorized(request.serviceID, access, in: db)
      // Drafts are the owner's (and the platform's) to see.
      let owner = access.isPlatform || service.holds(.owner, for: access.caller)
      let versions = try CatalogStore.versions(ofService: service.id, in: db).filter {
        owner || $0.status == .published
      }
      let presented = try Self.presented(service, in: db)
      return .with {
        $0.service = presented
        $0.versions = versions
      }
    }
  }

  public func listServices(request: Nest_Catalog_V1_ListServicesRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ListServicesResponse
  {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    var filter = ServiceFilter()
    filter.ownerID = request.ownerID.isEmpty ? nil : request.ownerID
    filter.type = request.type == .unspecified ? nil : request.type
    filter.statuses = request.status == .unspecified ? nil : [request.status]
    if case .distributable(let value)? = request.distributableFilter { filter.distributable = value }
    if case .listedOnMarketplace(let value)? = request.listedFilter { filter.listed = value }
    filter.baseServiceID = request.baseServiceID.isEmpty ? nil : request.baseServiceID
    guard CatalogPolicy.scope(&filter, for: access.caller) else { return .init() }
    let query = filter
    let result = try await self.store.database.read { db in
      let found = try CatalogStore.services(query, page: page, in: db)
      return (services: try Self.presented(found.services, in: db), found.nextPageToken)
    }
    return .with {
      $0.services = result.services
      $0.page = .with { $0.nextPageToken = result.1 }
    }
  }

  public func resolveScenario(request: Nest_Catalog_V1_ResolveScenarioRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ResolveScenarioResponse
  {
    let access = try Access.forCall()
    return try self.store.database.readNow { db in
      let service = try Self.authorized(request.serviceID, access, in: db)
      return try .with { $0.resolution = try Self.resolution(of: service, in: db) }
    }
  }
}
