// The marketplace: list an ONLINE service with its plans (a derived service never below its
// wholesale price), delist it, read and list products.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension CatalogService {
  public func listOnMarketplace(request: Nest_Catalog_V1_ListOnMarketplaceRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_ListOnMarketplaceResponse
  {
    let access = try Access.forCall()
    let current = try await self.store.database.read { try Self.authorized(request.serviceID, access, in: $0) }
    guard current.status == .online else {
      throw DomainError(
        .failedPrecondition, "only an ONLINE service can be listed; \(current.id) is \(statusName(current.status))")
    }
    // A derived service's plans may not undercut the wholesale price it pays the ISV.
    var terms: Nest_Entitlement_V1_DistributionTerms? = nil
    if !current.baseServiceID.isEmpty {
      let authorization = try await self.distribution.activeAuthorization(
        baseServiceID: current.baseServiceID, distributorID: access.caller.subject)
      terms = authorization.terms ?? .init()
    }
    try PlanRules.check(request.plans, terms: terms)
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      var service = try Self.authorized(request.serviceID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "ListOnMarketplace", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var product =
          try CatalogStore.product(ofService: service.id, in: db)
          ?? .with {
            $0.id = Identifiers.new("prod")
            $0.serviceID = service.id
            $0.ownerID = service.ownerID
            $0.createdAtUnixMs = now
          }
        product.status = .listed
        product.plans = PlanRules.merge(listed: request.plans, previous: product.plans)
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
    let access = try Access.forCall()
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      var product = try access.authorize(
        try CatalogStore.product(request.productID, in: db),
        notFound: .notFound("product", request.productID, field: "product_id"))
      guard var service = try CatalogStore.service(product.serviceID, in: db) else {
        throw DomainError.notFound("product", request.productID, field: "product_id")
      }
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "DelistFromMarketplace", token: request.clientToken,
        request: request, nowUnixMs: now
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
    let access = try Access.forCall()
    return try self.store.database.readNow { db in
      let product: Nest_Catalog_V1_Product?
      let (field, id): (String, String)
      switch request.key {
      case .productID(let value)?:
        (field, id) = ("product_id", value)
        product = try CatalogStore.product(value, in: db)
      case .serviceID(let value)?:
        (field, id) = ("service_id", value)
        product = try CatalogStore.product(ofService: value, in: db)
      case nil: throw DomainError.invalid("key", "set product_id or service_id")
      }
      try DomainError.requireNonEmpty((field, id))
      return try .with { $0.product = try access.authorize(product, notFound: .notFound("product", id, field: field)) }
    }
  }

  /// GetProduct, GetService and ResolveScenario for a sale, from one read snapshot.
  public func getSaleTerms(request: Nest_Catalog_V1_GetSaleTermsRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_GetSaleTermsResponse
  {
    try DomainError.requireNonEmpty(("product_id", request.productID))
    return try self.store.database.readNow { db in
      guard let product = try CatalogStore.product(request.productID, in: db) else {
        throw DomainError.notFound("product", request.productID, field: "product_id")
      }
      guard let service = try CatalogStore.service(product.serviceID, in: db) else {
        throw DomainError.notFound("service", product.serviceID, field: "product_id")
      }
      let resolution = try Self.resolution(of: service, in: db)
      let version = service.defaultVersionID.isEmpty ? nil : try CatalogStore.version(service.defaultVersionID, in: db)
      let baseProduct =
        resolution.scenario == .scenario3 ? try CatalogStore.product(ofService: resolution.baseServiceID, in: db) : nil
      return .with {
        $0.product = product
        $0.service = service
        if let version { $0.defaultVersion = version }
        $0.resolution = resolution
        $0.baseProductID = baseProduct?.id ?? ""
      }
    }
  }

  public func listProducts(request: Nest_Catalog_V1_ListProductsRequest, context: ServerContext) async throws
    -> Nest_Catalog_V1_ListProductsResponse
  {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    var filter = ProductFilter()
    filter.ownerID = request.ownerID.isEmpty ? nil : request.ownerID
    filter.serviceID = request.serviceID.isEmpty ? nil : request.serviceID
    filter.status = request.status == .unspecified ? nil : request.status
    filter.serviceType = request.serviceType == .unspecified ? nil : request.serviceType
    filter.baseServiceID = request.baseServiceID.isEmpty ? nil : request.baseServiceID
    CatalogPolicy.scope(&filter, for: access.caller)
    let query = filter
    let result = try await self.store.database.read { try CatalogStore.products(query, page: page, in: $0) }
    return .with {
      $0.products = result.products
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }
}
