// The CatalogService RPCs (DESIGN section 8): authorize the caller (section 4), validate,
// apply the pure rules, and write through the store, mutating RPCs once per client token.
import Foundation
import GRDB
public import GRPCCore
import NestAuth
public import NestProto
import NestServiceKit
import NestTransport

public struct CatalogService: Nest_Catalog_V1_CatalogService.SimpleServiceProtocol {
  let store: CatalogStore
  let distribution: any DistributionChecking
  let now: @Sendable () -> Int64

  public init(
    store: CatalogStore, distribution: any DistributionChecking,
    now: @escaping @Sendable () -> Int64 = Clock.nowUnixMs
  ) {
    self.store = store
    self.distribution = distribution
    self.now = now
  }

  // MARK: Callers

  /// Whether `caller` may see `service` at all: customers see ONLINE services only, and
  /// nobody but its owner (and operators and services) sees a DRAFT.
  static func canSee(_ service: Nest_Catalog_V1_Service, _ caller: Principal) -> Bool {
    switch caller.role {
    case .operator, .service: return true
    case .customer: return service.status == .online
    default: return service.ownerID == caller.subject || service.status != .draft
    }
  }

  /// The service if `caller` may see it; NOT_FOUND (naming `field`) if it is missing or
  /// hidden, so that existence does not leak.
  static func visible(_ id: String, to caller: Principal, field: String = "service_id", in db: Database) throws
    -> Nest_Catalog_V1_Service
  {
    guard let service = try CatalogStore.service(id, in: db), canSee(service, caller) else {
      throw DomainError(.notFound, "no service \(id)", violations: [.init(field: field, description: "not found")])
    }
    return service
  }

  /// The service for someone who must own it: NOT_FOUND if they cannot see it,
  /// PERMISSION_DENIED if they can but do not own it.
  static func owned(_ id: String, by caller: Principal, in db: Database) throws -> Nest_Catalog_V1_Service {
    let service = try visible(id, to: caller, in: db)
    guard service.ownerID == caller.subject else {
      throw DomainError(.permissionDenied, "service \(id) belongs to another account")
    }
    return service
  }

  // MARK: Services

  /// A new DRAFT service with its DRAFT version 1, saved: what CreateService and
  /// CreateDerivedService share. `service` and `version` add what differs.
  static func createDraft(
    owner: String, name: String, description: String, type: Nest_Common_V1_ServiceType, versionLabel: String,
    now: Int64, in db: Database, service customizeService: (inout Nest_Catalog_V1_Service) -> Void = { _ in },
    version customizeVersion: (inout Nest_Catalog_V1_ServiceVersion) -> Void
  ) throws -> (Nest_Catalog_V1_Service, Nest_Catalog_V1_ServiceVersion) {
    var service = Nest_Catalog_V1_Service.with {
      $0.id = Caller.newID("svc")
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
      $0.id = Caller.newID("ver")
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
    let caller = try Caller.require(.isv)
    try CatalogValidation.check(request)
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "CreateService", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let (service, version) = try Self.createDraft(
          owner: caller.subject, name: request.name, description: request.description, type: request.type,
          versionLabel: request.versionLabel, now: now, in: db
        ) {
          $0.deploymentPackage = request.deploymentPackage; $0.parameterSets = request.parameterSets
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
    let caller = try Caller.require(.distributor)
    try CatalogValidation.check(request)
    let (base, baseVersion) = try await self.store.database.read { db in
      guard let base = try CatalogStore.service(request.baseServiceID, in: db), Self.canSee(base, caller),
        base.baseServiceID.isEmpty
      else {
        throw DomainError(
          .notFound, "no base service \(request.baseServiceID)",
          violations: [.init(field: "base_service_id", description: "not found")])
      }
      let versionID = request.baseVersionID.isEmpty ? base.defaultVersionID : request.baseVersionID
      guard let version = try CatalogStore.version(versionID, in: db), version.serviceID == base.id,
        version.status == .published
      else {
        throw DomainError(
          .failedPrecondition, "the base service has no published version \(versionID)",
          violations: [.init(field: "base_version_id", description: "must be a published version of the base service")])
      }
      return (base, version)
    }
    try ScenarioRules.checkDerivedType(base: base.type, derived: request.type)
    // Entitlement says whether this distributor may build on A at all.
    _ = try await self.distribution.activeAuthorization(baseServiceID: base.id, distributorID: caller.subject)
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "CreateDerivedService", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let (service, version) = try Self.createDraft(
          owner: caller.subject, name: request.name, description: request.description, type: request.type,
          versionLabel: request.versionLabel, now: now, in: db,
          service: {
            $0.baseServiceID = base.id; $0.baseVersionID = baseVersion.id
          }
        ) {
          $0.deploymentAdditions = request.deploymentAdditions; $0.parameterSets = request.parameterSets
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
    let caller = try Caller.require(.isv, .distributor)
    let now = self.now()
    return try await self.store.database.write { db in
      let service = try Self.owned(request.serviceID, by: caller, in: db)
      try CatalogValidation.check(request, derived: !service.baseServiceID.isEmpty)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "CreateServiceVersion", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let number = try CatalogStore.nextVersionNumber(ofService: service.id, in: db)
        let version = Nest_Catalog_V1_ServiceVersion.with {
          $0.id = Caller.newID("ver")
          $0.serviceID = service.id
          $0.number = number
          $0.label = request.label.isEmpty ? "\(number)" : request.label
          $0.status = .draft
          $0.deploymentPackage = request.deploymentPackage
          $0.deploymentAdditions = request.deploymentAdditions
          $0.parameterSets = request.parameterSets
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
    let caller = try Caller.require(.isv, .distributor)
    let current = try await self.store.database.read { try Self.owned(request.serviceID, by: caller, in: $0) }
    if !current.baseServiceID.isEmpty {
      _ = try await self.distribution.activeAuthorization(
        baseServiceID: current.baseServiceID, distributorID: caller.subject)
    }
    let now = self.now()
    return try await self.store.database.write { db in
      var service = try Self.owned(request.serviceID, by: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "PublishService", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        guard var version = try CatalogStore.version(request.versionID, in: db), version.serviceID == service.id else {
          throw DomainError(
            .notFound, "no version \(request.versionID) of service \(service.id)",
            violations: [.init(field: "version_id", description: "not found")])
        }
        try ServiceLifecycleRules.checkEditable(version.status)
        version.status = .published
        version.publishedAtUnixMs = now
        service.status = try ServiceLifecycleRules.publish(from: service.status)
        service.defaultVersionID = version.id
        service.updatedAtUnixMs = now
        try CatalogStore.save(version, in: db)
        try CatalogStore.save(service, in: db)
        return .with {
          $0.service = service
          $0.version = version
        }
      }
    }
  }

  public func takeServiceOffline(request: Nest_Catalog_V1_TakeServiceOfflineRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_TakeServiceOfflineResponse
  {
    try await self.updateOwnedService(
      request.serviceID, method: "TakeServiceOffline", token: request.clientToken, request: request
    ) {
      service in
      service.status = try ServiceLifecycleRules.takeOffline(from: service.status)
    } response: { service in
      .with { $0.service = service }
    }
  }

  public func enableDistribution(request: Nest_Catalog_V1_EnableDistributionRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_EnableDistributionResponse
  {
    try await self.setDistributable(
      true, request.serviceID, method: "EnableDistribution", token: request.clientToken, request: request
    ) { service in .with { $0.service = service } }
  }

  public func disableDistribution(request: Nest_Catalog_V1_DisableDistributionRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_DisableDistributionResponse
  {
    try await self.setDistributable(
      false, request.serviceID, method: "DisableDistribution", token: request.clientToken, request: request
    ) { service in .with { $0.service = service } }
  }

  private func setDistributable<Request: NestMessage, Response: NestMessage>(
    _ distributable: Bool, _ serviceID: String, method: String, token: String, request: Request,
    response: @escaping @Sendable (Nest_Catalog_V1_Service) -> Response
  ) async throws -> Response {
    let caller = try Caller.require(.isv)
    return try await self.updateOwnedService(serviceID, method: method, token: token, request: request, caller: caller)
    { service in
      guard service.baseServiceID.isEmpty else {
        throw DomainError(.failedPrecondition, "only a base service can be distributed; \(service.id) is derived")
      }
      service.distributable = distributable
    } response: {
      response($0)
    }
  }

  /// Loads a service the caller owns, changes it, saves it: once per client token.
  private func updateOwnedService<Request: NestMessage, Response: NestMessage>(
    _ serviceID: String, method: String, token: String, request: Request, caller: Principal? = nil,
    _ change: @escaping @Sendable (inout Nest_Catalog_V1_Service) throws -> Void,
    response: @escaping @Sendable (Nest_Catalog_V1_Service) -> Response
  ) async throws -> Response {
    let caller = try caller ?? Caller.require(.isv, .distributor)
    let now = self.now()
    return try await self.store.database.write { db in
      var service = try Self.owned(serviceID, by: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: method, token: token, request: request, nowUnixMs: now
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
    let caller = try Caller.require()
    return try await self.store.database.read { db in
      let service = try Self.visible(request.serviceID, to: caller, in: db)
      let owner = service.ownerID == caller.subject || caller.role == .operator || caller.role == .service
      let versions = try CatalogStore.versions(ofService: service.id, in: db).filter {
        owner || $0.status == .published
      }
      return .with {
        $0.service = service
        $0.versions = versions
      }
    }
  }

  public func listServices(request: Nest_Catalog_V1_ListServicesRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ListServicesResponse
  {
    let caller = try Caller.require()
    let page = try PageQuery(request.page)
    var filter = ServiceFilter()
    filter.ownerID = request.ownerID.isEmpty ? nil : request.ownerID
    filter.type = request.type == .unspecified ? nil : request.type
    filter.statuses = request.status == .unspecified ? nil : [request.status]
    if case .distributable(let value)? = request.distributableFilter { filter.distributable = value }
    if case .listedOnMarketplace(let value)? = request.listedFilter { filter.listed = value }
    filter.baseServiceID = request.baseServiceID.isEmpty ? nil : request.baseServiceID
    switch caller.role {
    case .customer:
      guard request.status == .unspecified || request.status == .online else {
        return .init()  // customers see ONLINE services only
      }
      filter.statuses = [.online]
    case .isv, .distributor:
      filter.visibleToNonOwner = caller.subject
    default:
      break
    }
    let query = filter
    let result = try await self.store.database.read { try CatalogStore.services(query, page: page, in: $0) }
    return .with {
      $0.services = result.services
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  // MARK: Marketplace

  public func listOnMarketplace(request: Nest_Catalog_V1_ListOnMarketplaceRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_ListOnMarketplaceResponse
  {
    let caller = try Caller.require(.isv, .distributor)
    let current = try await self.store.database.read { try Self.owned(request.serviceID, by: caller, in: $0) }
    guard current.status == .online else {
      throw DomainError(.failedPrecondition, "only an ONLINE service can be listed; \(current.id) is \(current.status)")
    }
    // A derived service's plans may not undercut the wholesale price it pays the ISV.
    var wholesale: Nest_Common_V1_Money? = nil
    if !current.baseServiceID.isEmpty {
      let authorization = try await self.distribution.activeAuthorization(
        baseServiceID: current.baseServiceID, distributorID: caller.subject)
      wholesale = authorization.terms?.wholesalePrice
    }
    try PlanRules.check(request.plans, wholesale: wholesale)
    let now = self.now()
    return try await self.store.database.write { db in
      var service = try Self.owned(request.serviceID, by: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "ListOnMarketplace", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var product =
          try CatalogStore.product(ofService: service.id, in: db)
          ?? .with {
            $0.id = Caller.newID("prod")
            $0.serviceID = service.id
            $0.ownerID = service.ownerID
            $0.createdAtUnixMs = now
          }
        product.status = .listed
        product.plans = request.plans
        product.name = service.name
        product.serviceType = service.type
        product.baseServiceID = service.baseServiceID
        product.updatedAtUnixMs = now
        service.listedOnMarketplace = true
        service.productID = product.id
        service.updatedAtUnixMs = now
        try CatalogStore.save(product, in: db)
        try CatalogStore.save(service, in: db)
        return .with { $0.product = product }
      }
    }
  }

  public func delistFromMarketplace(request: Nest_Catalog_V1_DelistFromMarketplaceRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_DelistFromMarketplaceResponse
  {
    let caller = try Caller.require(.isv, .distributor)
    let now = self.now()
    return try await self.store.database.write { db in
      guard var product = try CatalogStore.product(request.productID, in: db) else {
        throw DomainError(
          .notFound, "no product \(request.productID)",
          violations: [.init(field: "product_id", description: "not found")])
      }
      var service = try Self.owned(product.serviceID, by: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "DelistFromMarketplace", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        product.status = .delisted
        product.updatedAtUnixMs = now
        service.listedOnMarketplace = false
        service.updatedAtUnixMs = now
        try CatalogStore.save(product, in: db)
        try CatalogStore.save(service, in: db)
        return .with { $0.product = product }
      }
    }
  }

  public func getProduct(request: Nest_Catalog_V1_GetProductRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_GetProductResponse
  {
    let caller = try Caller.require()
    return try await self.store.database.read { db in
      let product: Nest_Catalog_V1_Product?
      switch request.key {
      case .productID(let id)?: product = try CatalogStore.product(id, in: db)
      case .serviceID(let id)?: product = try CatalogStore.product(ofService: id, in: db)
      case nil: throw DomainError.invalid([.init(field: "key", description: "set product_id or service_id")])
      }
      guard let product, caller.role != .customer || product.status == .listed || product.ownerID == caller.subject
      else {
        throw DomainError(.notFound, "no such product")
      }
      return .with { $0.product = product }
    }
  }

  public func listProducts(request: Nest_Catalog_V1_ListProductsRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ListProductsResponse
  {
    let caller = try Caller.require()
    let page = try PageQuery(request.page)
    var filter = ProductFilter()
    filter.ownerID = request.ownerID.isEmpty ? nil : request.ownerID
    filter.serviceID = request.serviceID.isEmpty ? nil : request.serviceID
    filter.status = request.status == .unspecified ? nil : request.status
    filter.serviceType = request.serviceType == .unspecified ? nil : request.serviceType
    filter.baseServiceID = request.baseServiceID.isEmpty ? nil : request.baseServiceID
    if caller.role == .customer { filter.status = .listed }
    let query = filter
    let result = try await self.store.database.read { try CatalogStore.products(query, page: page, in: $0) }
    return .with {
      $0.products = result.products
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func resolveScenario(request: Nest_Catalog_V1_ResolveScenarioRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ResolveScenarioResponse
  {
    let caller = try Caller.require()
    return try await self.store.database.read { db in
      let service = try Self.visible(request.serviceID, to: caller, in: db)
      func facts(_ service: Nest_Catalog_V1_Service, version: String) -> ServiceFacts {
        ServiceFacts(
          id: service.id, type: service.type, ownerID: service.ownerID, listed: service.listedOnMarketplace,
          versionID: version)
      }
      guard !service.baseServiceID.isEmpty else {
        guard !service.defaultVersionID.isEmpty else {
          throw DomainError(.failedPrecondition, "service \(service.id) has no published version")
        }
        let resolution = try ScenarioRules.resolve(
          base: facts(service, version: service.defaultVersionID), derived: nil)
        return .with { $0.resolution = resolution }
      }
      guard let base = try CatalogStore.service(service.baseServiceID, in: db) else {
        throw DomainError(.failedPrecondition, "the base service \(service.baseServiceID) is gone")
      }
      let resolution = try ScenarioRules.resolve(
        base: facts(base, version: service.baseVersionID), derived: facts(service, version: service.baseVersionID))
      return .with { $0.resolution = resolution }
    }
  }
}
