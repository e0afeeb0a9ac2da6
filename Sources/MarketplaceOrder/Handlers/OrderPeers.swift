// What marketplace-order asks the other services, as the marketplace-order service: the
// catalog for prices and scenarios, entitlement for authorizations, instance slots and
// instances, settlement for the ledger.
import GRPCCore
public import NestProto
import NestServiceKit

public protocol OrderPeers: Sendable {
  /// The product, its service and default version, the scenario and A's product: one call.
  func saleTerms(_ productID: String) async throws -> Nest_Catalog_V1_GetSaleTermsResponse
  func product(ofService serviceID: String) async throws -> Nest_Catalog_V1_Product
  func checkDistribution(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_CheckDistributionResponse
  func reserveSlot(orderID: String, authorizationID: String) async throws
    -> Nest_Entitlement_V1_ReserveInstanceSlotResponse
  func releaseSlot(orderID: String) async throws
  /// Several instances in one call, a result per instance in their order.
  func createInstances(_ requests: [Nest_Entitlement_V1_CreateServiceInstanceRequest]) async throws
    -> [Nest_Entitlement_V1_InstanceResult]
  func releaseInstance(_ request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest) async throws
  func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance
  func renewInstance(_ request: Nest_Entitlement_V1_RenewServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  func changeInstance(_ request: Nest_Entitlement_V1_ChangeServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  /// Several sales in one call, a result per sale in their order.
  func recordSales(_ sales: [Nest_Settlement_V1_RecordSaleRequest]) async throws -> [Nest_Settlement_V1_SaleResult]
  func recordRefund(_ request: Nest_Settlement_V1_RecordRefundRequest) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
}

/// The peers over RPC (timeouts and retries: PeerCallPolicy).
public struct RPCOrderPeers: OrderPeers {
  private let catalog: any Nest_Catalog_V1_CatalogService.ClientProtocol
  private let entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol
  private let settlement: any Nest_Settlement_V1_SettlementService.ClientProtocol

  public init(
    catalog: any Nest_Catalog_V1_CatalogService.ClientProtocol,
    entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol,
    settlement: any Nest_Settlement_V1_SettlementService.ClientProtocol
  ) {
    self.catalog = catalog
    self.entitlement = entitlement
    self.settlement = settlement
  }

  public func saleTerms(_ productID: String) async throws -> Nest_Catalog_V1_GetSaleTermsResponse {
    try await self.catalog.getSaleTerms(.with { $0.productID = productID })
  }

  public func product(ofService serviceID: String) async throws -> Nest_Catalog_V1_Product {
    try await self.catalog.getProduct(.with { $0.key = .serviceID(serviceID) }).product ?? .init()
  }

  public func checkDistribution(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_CheckDistributionResponse
  {
    try await self.entitlement.checkDistribution(
      .with {
        $0.baseServiceID = baseServiceID
        $0.distributorID = distributorID
      })
  }

  public func reserveSlot(orderID: String, authorizationID: String) async throws
    -> Nest_Entitlement_V1_ReserveInstanceSlotResponse
  {
    try await self.entitlement.reserveInstanceSlot(
      .with {
        $0.orderID = orderID
        $0.authorizationID = authorizationID
      })
  }

  public func releaseSlot(orderID: String) async throws {
    _ = try await self.entitlement.releaseInstanceSlot(.with { $0.orderID = orderID })
  }

  public func createInstances(_ requests: [Nest_Entitlement_V1_CreateServiceInstanceRequest]) async throws
    -> [Nest_Entitlement_V1_InstanceResult]
  {
    do {
      return try await self.entitlement.createServiceInstances(.with { $0.instances = requests }).results
    } catch let error as RPCError where error.code == .unimplemented {
      // An entitlement service from before CreateServiceInstances (a rolling upgrade).
      return try await Self.oneByOne(requests) { try await self.entitlement.createServiceInstance($0).instance }.map {
        (request, answer) in
        .with {
          $0.orderID = request.orderID
          switch answer {
          case .success(let instance): $0.instance = instance ?? .init()
          case .failure(let error): $0.refuse(BatchItems.Refusal(error))
          }
        }
      }
    }
  }

  public func releaseInstance(_ request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest) async throws {
    _ = try await self.entitlement.releaseServiceInstance(request)
  }

  public func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance {
    try await self.entitlement.getServiceInstance(.with { $0.key = .instanceID(id) }).instance ?? .init()
  }

  public func renewInstance(_ request: Nest_Entitlement_V1_RenewServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await self.entitlement.renewServiceInstance(request).instance ?? .init()
  }

  public func changeInstance(_ request: Nest_Entitlement_V1_ChangeServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await self.entitlement.changeServiceInstance(request).instance ?? .init()
  }

  public func recordSales(_ sales: [Nest_Settlement_V1_RecordSaleRequest]) async throws
    -> [Nest_Settlement_V1_SaleResult]
  {
    do {
      return try await self.settlement.recordSales(.with { $0.sales = sales }).results
    } catch let error as RPCError where error.code == .unimplemented {
      // A settlement service from before RecordSales (a rolling upgrade).
      return try await Self.oneByOne(sales) { try await self.settlement.recordSale($0) }.map { (sale, answer) in
        .with {
          $0.orderID = sale.orderID
          switch answer {
          case .success(let recorded): $0.recorded = recorded
          case .failure(let error): $0.refuse(BatchItems.Refusal(error))
          }
        }
      }
    }
  }

  /// A batch as one call per item, for a peer from before the batch's RPC: each item with its
  /// answer or the error its call answered. Once the peer is unreachable or the round is
  /// cancelled, the rest fail as that one did, without a call each.
  static func oneByOne<Item, Answer>(_ items: [Item], _ call: (Item) async throws -> Answer) async throws
    -> [(Item, Result<Answer, RPCError>)]
  {
    var answers: [(Item, Result<Answer, RPCError>)] = []
    var unreachable: RPCError? = nil
    for item in items {
      if unreachable == nil, Task.isCancelled { unreachable = RPCError(code: .cancelled, message: "cancelled") }
      if let unreachable {
        answers.append((item, .failure(unreachable)))
        continue
      }
      do {
        answers.append((item, .success(try await call(item))))
      } catch let error as RPCError {
        answers.append((item, .failure(error)))
        if BatchItems.unreachable(error) { unreachable = error }
      }
    }
    return answers
  }

  public func recordRefund(_ request: Nest_Settlement_V1_RecordRefundRequest) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
  {
    try await self.settlement.recordRefund(request)
  }
}
