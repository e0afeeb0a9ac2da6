// The settlement service: the double-entry ledger, usage charged to each instance's fee
// payer, offline obligations and statements, and the reconciliation that proves it all adds
// up. Recording RPCs are idempotent on what they record (the order id, the usage record id)
// as well as on client tokens.
import GRDB
import GRPCCore
public import NestDomain
public import NestProto
public import NestServiceKit

public struct SettlementService: Nest_Settlement_V1_SettlementService.SimpleServiceProtocol {
  let store: SettlementStore
  let peers: any SettlementPeers
  let clock: NestClock

  public init(store: SettlementStore, peers: any SettlementPeers, clock: NestClock = .system) {
    self.store = store
    self.peers = peers
    self.clock = clock
  }

  public static let definition = ServiceDefinition(
    name: .settlement, peers: [.entitlement, .order, .events], migrations: SettlementStore.migrations
  ) { environment in
    let service = SettlementService(
      store: SettlementStore(database: environment.database),
      peers: RPCSettlementPeers(
        entitlement: try environment.peers.entitlement(), orders: try environment.peers.orders()),
      clock: environment.clock)
    return ServiceParts(rpcServices: [service])
  }
}
