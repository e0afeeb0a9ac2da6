// What settlement asks the other services: an instance's fee payer (usage), and for
// Reconcile every paid order and every instance. Over RPC as role `service`.
public import GRPCCore
public import NestProto

public protocol SettlementPeers: Sendable {
  /// The instance, or nil when entitlement does not know it.
  func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance?
  /// Every order that was paid: PAID, FULFILLED or REFUNDED, customer and linked.
  func paidOrders() async throws -> [Nest_Order_V1_Order]
  /// Every instance's order id.
  func instanceOrderIDs() async throws -> [String]
}

public struct RPCSettlementPeers<Transport: ClientTransport>: SettlementPeers {
  private let entitlement: Nest_Entitlement_V1_EntitlementService.Client<Transport>
  private let orders: Nest_Order_V1_MarketplaceOrderService.Client<Transport>

  public init(entitlement: GRPCClient<Transport>, orders: GRPCClient<Transport>) {
    self.entitlement = .init(wrapping: entitlement)
    self.orders = .init(wrapping: orders)
  }

  public func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance? {
    do {
      return try await self.entitlement.getServiceInstance(.with { $0.key = .instanceID(id) }).instance
    } catch let error as RPCError where error.code == .notFound {
      return nil
    }
  }

  public func paidOrders() async throws -> [Nest_Order_V1_Order] {
    var orders: [Nest_Order_V1_Order] = []
    var token = ""
    repeat {
      let page = try await self.orders.listOrders(
        .with {
          $0.statuses = [.paid, .fulfilled, .refunded]
          $0.page = .with {
            $0.pageSize = 500
            $0.pageToken = token
          }
        })
      orders += page.orders
      token = page.page?.nextPageToken ?? ""
    } while !token.isEmpty
    return orders
  }

  public func instanceOrderIDs() async throws -> [String] {
    var ids: [String] = []
    var token = ""
    repeat {
      let page = try await self.entitlement.listServiceInstances(
        .with {
          $0.page = .with {
            $0.pageSize = 500
            $0.pageToken = token
          }
        })
      ids += page.instances.map(\.orderID)
      token = page.page?.nextPageToken ?? ""
    } while !token.isEmpty
    return ids
  }
}
