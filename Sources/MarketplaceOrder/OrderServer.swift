// marketplace-order as a running service: its database, its three peers, the outbox
// dispatcher and the server. `marketplace-order-service` runs this; NestTestKit runs it
// in-process.
public import Logging
public import NestServiceKit

public enum OrderServer {
  /// Serves until SIGTERM or SIGINT (when `shutdownOnSignals`) or `shutdown`.
  /// - `commissionBps`: the platform's commission on every sale, 0 to 10000 (default 500).
  public static func run(
    configuration: ServiceConfiguration, commissionBps: UInt32 = 500, logger: Logger, shutdownOnSignals: Bool = true,
    shutdown: ShutdownHandle? = nil
  ) async throws {
    let store = try OrderStore(path: configuration.databasePath)
    try await ServiceRunner.withPeerClients(
      [.catalog, .entitlement, .settlement], configuration: configuration, caller: "marketplace-order"
    ) { peers in
      let rpc = RPCOrderPeers(
        catalog: peers[.catalog]!, entitlement: peers[.entitlement]!, settlement: peers[.settlement]!)
      let dispatcher = Dispatcher(store: store, peers: rpc, logger: logger)
      try await ServiceRunner.run(
        name: "marketplace-order-service", configuration: configuration,
        services: [OrderService(store: store, peers: rpc, dispatcher: dispatcher, commissionBps: commissionBps)],
        serviceNames: ["nest.order.v1.MarketplaceOrderService"], background: [dispatcher], logger: logger,
        shutdownOnSignals: shutdownOnSignals, shutdown: shutdown)
    }
  }
}
