// catalog-service: the catalog as its own process. Flags or NEST_* variables (see
// `catalog-service --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Catalog
import Foundation
import GRPCCore
import Logging
import NestAuth
import NestProto
import NestServiceKit
import NestTransport

@main
struct CatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog-service", abstract: "Services, versions, parameter sets and marketplace products.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration: ServiceConfiguration
    do {
      configuration = try ServiceConfiguration.resolve(
        self.options, service: .catalog, environment: ProcessInfo.processInfo.environment)
    } catch {
      throw ValidationError(error.description)
    }
    var logger = Logger(label: "catalog-service")
    logger.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
    let store = try CatalogStore(path: configuration.databasePath)
    // Catalog calls entitlement (CheckDistribution) as role `service`.
    let token = try await NestTokens(secret: configuration.authSecret).sign(
      subject: "catalog", role: .service, lifetime: .seconds(10 * 365 * 24 * 3600))
    let entitlement = configuration.peers[.entitlement]!
    try await withGRPCClient(
      transport: NestClientTransport(
        .init(host: entitlement.host, port: entitlement.port, peerName: "catalog-service/0.1.0")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in
      try await ServiceRunner.run(
        name: "catalog-service", configuration: configuration,
        services: [CatalogService(store: store, distribution: EntitlementDistributionChecker(client: client))],
        serviceNames: ["nest.catalog.v1.CatalogService"], logger: logger)
    }
  }
}
