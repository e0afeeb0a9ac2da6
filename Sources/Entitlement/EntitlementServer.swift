// Entitlement as a running service: its database and signing key, its peer (catalog), the
// deployment driver and the server. `entitlement-service` runs this; NestTestKit runs it
// in-process.
public import Logging
public import NestServiceKit

public enum EntitlementServer {
  /// Serves until SIGTERM or SIGINT (when `shutdownOnSignals`) or `shutdown`.
  public static func run(
    configuration: ServiceConfiguration, logger: Logger, shutdownOnSignals: Bool = true,
    shutdown: ShutdownHandle? = nil
  ) async throws {
    let store = try EntitlementStore(path: configuration.databasePath)
    let signer = try store.signer()
    let deployments = DeploymentDriver(store: store, logger: logger)
    try await ServiceRunner.withPeerClients([.catalog], configuration: configuration, caller: "entitlement") { peers in
      try await ServiceRunner.run(
        name: "entitlement-service", configuration: configuration,
        services: [
          EntitlementService(
            store: store, catalog: CatalogClientFacts(client: peers[.catalog]!), signer: signer,
            deployments: deployments)
        ],
        serviceNames: ["nest.entitlement.v1.EntitlementService"], background: [deployments], logger: logger,
        shutdownOnSignals: shutdownOnSignals, shutdown: shutdown)
    }
  }
}
