// What marketplace-order asks the other services, over RPC as role `service`: the catalog
// for prices and scenarios, entitlement for authorizations and instances, settlement for
// the ledger.
public import GRPCCore
public import NestProto

public protocol OrderPeers: Sendable {
  func product(_ id: String) async throws -> Nest_Catalog_V1_Product
  func product(ofService serviceID: String) async throws -> Nest_Catalog_V1_Product
  func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse
  func resolveScenario(_ serviceID: String) async throws -> Nest_Common_V1_ScenarioResolution
  func checkDistribution(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_CheckDistributionResponse
  func createInstance(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  func releaseInstance(_ request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest) async throws
  func recordSale(_ request: Nest_Settlement_V1_RecordSaleRequest) async throws -> Nest_Settlement_V1_RecordSaleResponse
  func recordRefund(_ request: Nest_Settlement_V1_RecordRefundRequest) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
}

public struct RPCOrderPeers<Transport: ClientTransport>: OrderPeers {
  private let catalog: Nest_Catalog_V1_CatalogService.Client<Transport>
  private let entitlement: Nest_Entitlement_V1_EntitlementService.Client<Transport>
  private let settlement: Nest_Settlement_V1_SettlementService.Client<Transport>
  /// A delivery attempt that takes longer than this fails DEADLINE_EXCEEDED and is retried.
  private let options: CallOptions

  public init(
    catalog: GRPCClient<Transport>, entitlement: GRPCClient<Transport>, settlement: GRPCClient<Transport>,
    timeout: Duration = .seconds(10)
  ) {
    self.catalog = .init(wrapping: catalog)
    self.entitlement = .init(wrapping: entitlement)
    self.settlement = .init(wrapping: settlement)
    var options = CallOptions.defaults
    options.timeout = timeout
    self.options = options
  }

  public func product(_ id: String) async throws -> Nest_Catalog_V1_Product {
    try await self.catalog.getProduct(.with { $0.key = .productID(id) }, options: self.options).product ?? .init()
  }

  public func product(ofService serviceID: String) async throws -> Nest_Catalog_V1_Product {
    try await self.catalog.getProduct(.with { $0.key = .serviceID(serviceID) }, options: self.options).product
      ?? .init()
  }

  public func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse {
    try await self.catalog.getService(.with { $0.serviceID = id }, options: self.options)
  }

  public func resolveScenario(_ serviceID: String) async throws -> Nest_Common_V1_ScenarioResolution {
    try await self.catalog.resolveScenario(.with { $0.serviceID = serviceID }, options: self.options).resolution
      ?? .init()
  }

  public func checkDistribution(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_CheckDistributionResponse
  {
    try await self.entitlement.checkDistribution(
      .with {
        $0.baseServiceID = baseServiceID
        $0.distributorID = distributorID
      }, options: self.options)
  }

  public func createInstance(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await self.entitlement.createServiceInstance(request, options: self.options).instance ?? .init()
  }

  public func releaseInstance(_ request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest) async throws {
    _ = try await self.entitlement.releaseServiceInstance(request, options: self.options)
  }

  public func recordSale(_ request: Nest_Settlement_V1_RecordSaleRequest) async throws
    -> Nest_Settlement_V1_RecordSaleResponse
  {
    try await self.settlement.recordSale(request, options: self.options)
  }

  public func recordRefund(_ request: Nest_Settlement_V1_RecordRefundRequest) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
  {
    try await self.settlement.recordRefund(request, options: self.options)
  }
}
