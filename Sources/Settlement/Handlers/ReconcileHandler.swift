// Reconcile: the ledger proven whole by SQL over its columns, and, unless asked not to,
// against the paid orders of marketplace-order and the instances of entitlement.
import GRDB
public import GRPCCore
import NestDomain
public import NestProto
import NestServiceKit

extension SettlementService {
  public func reconcile(request: Nest_Settlement_V1_ReconcileRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_ReconcileResponse
  {
    let now = self.clock.nowUnixMs()
    guard request.asOfUnixMs <= now else { throw DomainError.invalid("as_of_unix_ms", "must not be in the future") }
    let asOf = request.asOfUnixMs == 0 ? now : request.asOfUnixMs
    var peers: (orders: [Nest_Order_V1_Order], instances: [String])? = nil
    if !request.skipPeerChecks {
      peers = (
        try await self.peers.paidOrders().filter { $0.paidAtUnixMs <= asOf }, try await self.peers.instanceOrderIDs()
      )
    }
    let checked = peers
    var response = try await self.store.database.read { db in
      var response = try Reconciliation.ledger(asOf: asOf, in: db)
      if let checked {
        response.discrepancies += Reconciliation.orders(
          checked.orders, instanceOrderIDs: checked.instances, sales: try Reconciliation.sales(asOf: asOf, in: db))
        response.ordersChecked = UInt64(checked.orders.count)
        response.peersChecked = true
      }
      return response
    }
    response.ok = response.discrepancies.isEmpty
    response.checkedAtUnixMs = now
    return response
  }
}
