// entitlement-service: authorizations, instances, licenses and permission requests as their
// own process. Flags or NEST_* variables (see `entitlement-service --help`); stops
// gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Entitlement
import Foundation
import GRPCCore
import Logging
import NestAuth
import NestProto
import NestServiceKit
import NestTransport

@main
struct EntitlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "entitlement-service",
    abstract: "Distribution authorizations, service instances, licenses and resource permissions.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration: ServiceConfiguration
    do {
      configuration = try ServiceConfiguration.resolve(
        self.options, service: .entitlement, environment: ProcessInfo.processInfo.environment)
    } catch {
      throw ValidationError(error.description)
    }
    var logger = Logger(label: "entitlement-service")
    logger.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
    let store = try EntitlementStore(path: configuration.databasePath)
    let signer = try store.signer()
    let deployments = DeploymentDriver(store: store, logger: logger)
    // Entitlement calls catalog (GetService) as role `service`.
    let token = try await NestTokens(secret: configuration.authSecret).sign(
      subject: "entitlement", role: .service, lifetime: .seconds(10 * 365 * 24 * 3600))
    let catalog = configuration.peers[.catalog]!
    try await withGRPCClient(
      transport: NestClientTransport(
        .init(host: catalog.host, port: catalog.port, peerName: "entitlement-service/0.1.0")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in
      try await ServiceRunner.run(
        name: "entitlement-service", configuration: configuration,
        services: [
          EntitlementService(
            store: store, catalog: CatalogClientFacts(client: client), signer: signer, deployments: deployments)
        ],
        serviceNames: ["nest.entitlement.v1.EntitlementService"], background: [deployments], logger: logger)
    }
  }
}
