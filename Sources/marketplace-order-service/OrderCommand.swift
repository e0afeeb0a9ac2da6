// marketplace-order-service: orders and the delivery outbox as their own process. Flags or
// NEST_* variables (see `marketplace-order-service --help`); stops gracefully on SIGTERM or
// SIGINT, after the dispatcher's attempt in flight.
import ArgumentParser
import Foundation
import GRPCCore
import Logging
import MarketplaceOrder
import NestAuth
import NestProto
import NestServiceKit
import NestTransport

@main
struct OrderCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "marketplace-order-service",
    abstract: "Marketplace orders, scenario-3 linked orders and the delivery outbox.")

  @OptionGroup var options: ServiceOptions

  @Option(help: "Platform commission in basis points, 0-10000 (NEST_COMMISSION_BPS; default 500).")
  var commissionBps: UInt32?

  func run() async throws {
    let configuration: ServiceConfiguration
    let environment = ProcessInfo.processInfo.environment
    do {
      configuration = try ServiceConfiguration.resolve(self.options, service: .order, environment: environment)
    } catch {
      throw ValidationError(error.description)
    }
    let bps = self.commissionBps ?? environment["NEST_COMMISSION_BPS"].flatMap { UInt32($0) } ?? 500
    guard bps <= 10_000 else { throw ValidationError("the commission must be 0 to 10000 basis points") }
    var logger = Logger(label: "marketplace-order-service")
    logger.logLevel = Logger.Level(rawValue: configuration.logLevel) ?? .info
    let store = try OrderStore(path: configuration.databasePath)
    // marketplace-order calls the other three as role `service`.
    let interceptor = BearerTokenClientInterceptor(
      token: try await NestTokens(secret: configuration.authSecret).sign(
        subject: "marketplace-order", role: .service, lifetime: .seconds(10 * 365 * 24 * 3600)))
    func transport(_ peer: NestServiceName) -> NestClientTransport {
      let address = configuration.peers[peer]!
      return NestClientTransport(
        .init(host: address.host, port: address.port, peerName: "marketplace-order-service/0.1.0"))
    }
    try await withGRPCClient(transport: transport(.catalog), interceptors: [interceptor]) { catalog in
      try await withGRPCClient(transport: transport(.entitlement), interceptors: [interceptor]) { entitlement in
        try await withGRPCClient(transport: transport(.settlement), interceptors: [interceptor]) { settlement in
          let peers = RPCOrderPeers(catalog: catalog, entitlement: entitlement, settlement: settlement)
          let dispatcher = Dispatcher(store: store, peers: peers, logger: logger)
          try await ServiceRunner.run(
            name: "marketplace-order-service", configuration: configuration,
            services: [OrderService(store: store, peers: peers, dispatcher: dispatcher, commissionBps: bps)],
            serviceNames: ["nest.order.v1.MarketplaceOrderService"], background: [dispatcher], logger: logger)
        }
      }
    }
  }
}
