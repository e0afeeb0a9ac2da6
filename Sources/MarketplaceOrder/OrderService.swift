// The marketplace-order service: customer orders, the scenario-3 linked orders placed for
// them, and the delivery outbox that carries a paid order's consequences to entitlement and
// settlement. Settings: `--commission-bps` / `NEST_COMMISSION_BPS` (0 to 10000, default 500).
import GRDB
import GRPCCore
public import NestDomain
public import NestProto
public import NestServiceKit

public struct OrderService: Nest_Order_V1_MarketplaceOrderService.SimpleServiceProtocol {
  let store: OrderStore
  let peers: any OrderPeers
  let dispatcher: Dispatcher?
  let commissionBps: UInt32
  let clock: NestClock

  /// - `commissionBps`: the platform's commission on every marketplace sale.
  /// - `dispatcher`: woken when rows are queued (nil: it polls).
  public init(
    store: OrderStore, peers: any OrderPeers, dispatcher: Dispatcher?, commissionBps: UInt32 = 500,
    clock: NestClock = .system
  ) {
    self.store = store
    self.peers = peers
    self.dispatcher = dispatcher
    self.commissionBps = commissionBps
    self.clock = clock
  }

  public static let definition = ServiceDefinition(
    name: .order, peers: [.catalog, .entitlement, .settlement, .events], migrations: OrderStore.migrations
  ) { environment in
    let bps = try await environment.configuration.settings.int("commission.bps", default: 500, in: 0...10_000)
    let store = OrderStore(database: environment.database)
    let peers = RPCOrderPeers(
      catalog: try environment.peers.catalog(), entitlement: try environment.peers.entitlement(),
      settlement: try environment.peers.settlement())
    let dispatcher = Dispatcher(store: store, peers: peers, logger: environment.logger, clock: environment.clock)
    let service = OrderService(
      store: store, peers: peers, dispatcher: dispatcher, commissionBps: UInt32(bps), clock: environment.clock)
    return ServiceParts(rpcServices: [service], background: [dispatcher])
  }
}
