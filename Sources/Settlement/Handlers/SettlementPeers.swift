// What settlement asks the other services, as the settlement service: an instance's fee
// payer (usage), and for Reconcile every paid order and every instance.
import GRPCCore
public import NestProto
import NestServiceKit

public protocol SettlementPeers: Sendable {
  /// The instance, or nil when entitlement does not know it.
  func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance?
  /// Every order that was paid: PAID, FULFILLED or REFUNDED, customer and linked.
  func paidOrders() async throws -> [Nest_Order_V1_Order]
  /// Every instance's order id.
  func instanceOrderIDs() async throws -> [String]
}

public struct RPCSettlementPeers: SettlementPeers {
  private let entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol
  private let orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol

  public init(
    entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol,
    orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol
  ) {
    self.entitlement = entitlement
    self.orders = orders
  }

  public func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance? {
    do {
      return try await self.entitlement.getServiceInstance(.with { $0.key = .instanceID(id) }).instance
    } catch let error as RPCError where error.code == .notFound {
      return nil
    }
  }

  public func paidOrders() async throws -> [Nest_Order_V1_Order] {
    try await Pages.all { token in
      let page = try await self.orders.listOrders(
        .with {
          $0.statuses = [.paid, .fulfilled, .refunded]
          $0.page = .with {
            $0.pageSize = 500
            $0.pageToken = token
          }
        })
      return (page.orders, page.page?.nextPageToken ?? "")
    }
  }

  public func instanceOrderIDs() async throws -> [String] {
    try await Pages.all { token in
      let page = try await self.entitlement.listServiceInstances(
        .with {
          $0.page = .with {
            $0.pageSize = 500
            $0.pageToken = token
          }
        })
      return (page.instances.map(\.orderID), page.page?.nextPageToken ?? "")
    }
  }
}
