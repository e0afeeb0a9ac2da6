// Settlement as a running service: its database, its peers (entitlement for instances,
// marketplace-order for Reconcile) and the server. `settlement-service` runs this;
// NestTestKit runs it in-process.
public import Logging
public import NestServiceKit

public enum SettlementServer {
  /// Serves until SIGTERM or SIGINT (when `shutdownOnSignals`) or `shutdown`.
  public static func run(
    configuration: ServiceConfiguration, logger: Logger, shutdownOnSignals: Bool = true,
    shutdown: ShutdownHandle? = nil
  ) async throws {
    let store = try SettlementStore(path: configuration.databasePath)
    try await ServiceRunner.withPeerClients([.entitlement, .order], configuration: configuration, caller: "settlement")
    {
      peers in
      try await ServiceRunner.run(
        name: "settlement-service", configuration: configuration,
        services: [
          SettlementService(
            store: store, peers: RPCSettlementPeers(entitlement: peers[.entitlement]!, orders: peers[.order]!))
        ],
        serviceNames: ["nest.settlement.v1.SettlementService"], logger: logger, shutdownOnSignals: shutdownOnSignals,
        shutdown: shutdown)
    }
  }
}
