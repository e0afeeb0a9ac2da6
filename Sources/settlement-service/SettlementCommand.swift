// settlement-service: the ledger, obligations, statements and usage as their own process.
// Flags or NEST_* variables (see `settlement-service --help`); stops gracefully on SIGTERM
// or SIGINT.
import ArgumentParser
import Foundation
import GRPCCore
import Logging
import NestAuth
import NestProto
import NestServiceKit
import NestTransport
import Settlement

@main
struct SettlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "settlement-service",
    abstract: "The double-entry ledger, usage charges, offline obligations and statements.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration: ServiceConfiguration
    do {
      configuration = try ServiceConfiguration.resolve(
        self.options, service: .settlement, environment: ProcessInfo.processInfo.environment)
    } catch {
      throw ValidationError(error.description)
    }
    var logger = Logger(label: "settlement-service")
    logger.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
    let store = try SettlementStore(path: configuration.databasePath)
    // Settlement asks entitlement (instances) and marketplace-order (Reconcile) as role `service`.
    let interceptor = BearerTokenClientInterceptor(
      token: try await NestTokens(secret: configuration.authSecret).sign(
        subject: "settlement", role: .service, lifetime: .seconds(10 * 365 * 24 * 3600)))
    let entitlement = configuration.peers[.entitlement]!
    let order = configuration.peers[.order]!
    try await withGRPCClient(
      transport: NestClientTransport(
        .init(host: entitlement.host, port: entitlement.port, peerName: "settlement-service/0.1.0")),
      interceptors: [interceptor]
    ) { entitlementClient in
      try await withGRPCClient(
        transport: NestClientTransport(.init(host: order.host, port: order.port, peerName: "settlement-service/0.1.0")),
        interceptors: [interceptor]
      ) { orderClient in
        try await ServiceRunner.run(
          name: "settlement-service", configuration: configuration,
          services: [
            SettlementService(
              store: store, peers: RPCSettlementPeers(entitlement: entitlementClient, orders: orderClient))
          ],
          serviceNames: ["nest.settlement.v1.SettlementService"], logger: logger)
      }
    }
  }
}
