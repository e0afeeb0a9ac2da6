// The catalog as a running service: its database, its peer (entitlement), and the server.
// `catalog-service` runs this; NestTestKit runs it in-process.
public import Logging
public import NestServiceKit

public enum CatalogServer {
  /// Serves until SIGTERM or SIGINT (when `shutdownOnSignals`) or `shutdown`.
  public static func run(
    configuration: ServiceConfiguration, logger: Logger, shutdownOnSignals: Bool = true,
    shutdown: ShutdownHandle? = nil
  ) async throws {
    let store = try CatalogStore(path: configuration.databasePath)
    try await ServiceRunner.withPeerClients([.entitlement], configuration: configuration, caller: "catalog") { peers in
      try await ServiceRunner.run(
        name: "catalog-service", configuration: configuration,
        services: [
          CatalogService(store: store, distribution: EntitlementDistributionChecker(client: peers[.entitlement]!))
        ],
        serviceNames: ["nest.catalog.v1.CatalogService"], logger: logger, shutdownOnSignals: shutdownOnSignals,
        shutdown: shutdown)
    }
  }
}
