// NestTestKit: the platform's real service code, in-process, for the contract tests of the
// platform's users. Each service runs on a free loopback port with its own temporary
// database; tokens for any role are minted with the platform's secret; clients are the
// generated ones over NestTransport.
//
//     let platform = try await NestTestPlatform.start()
//     defer { Task { await platform.stop() } }
//     let catalog = try await platform.catalog(as: .isv, "isv-1")
//     try await catalog { try await $0.createService(...) }
import Catalog
import Entitlement
public import Foundation
public import GRPCCore
import Logging
import MarketplaceOrder
import NIOConcurrencyHelpers
import NestAuth
@_exported public import NestProto
@_exported public import NestServiceKit
public import NestTransport
import Settlement

public final class NestTestPlatform: Sendable {
  /// The secret every token is signed with.
  public let secret: String
  /// Where each running service listens.
  public let addresses: [NestServiceName: ServiceAddress]
  /// The folder of the services' databases, removed by `stop()`.
  public let directory: URL
  private let tasks: NIOLockedValueBox<[NestServiceName: (Task<Void, any Error>, ShutdownHandle)]>

  private init(secret: String, addresses: [NestServiceName: ServiceAddress], directory: URL) {
    self.secret = secret
    self.addresses = addresses
    self.directory = directory
    self.tasks = NIOLockedValueBox([:])
  }

  /// Starts `services` (all four by default) and returns once each answers Health/Check.
  /// Services not started keep an address nobody listens on: calls to them fail UNAVAILABLE.
  public static func start(
    _ services: [NestServiceName] = NestServiceName.allCases, commissionBps: UInt32 = 500,
    logLevel: Logger.Level = .error
  ) async throws -> NestTestPlatform {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    var addresses: [NestServiceName: ServiceAddress] = [:]
    for service in NestServiceName.allCases {
      addresses[service] = ServiceAddress(host: "127.0.0.1", port: try Readiness.freeLoopbackPort())
    }
    let platform = NestTestPlatform(
      secret: "nest-test-secret-\(UUID().uuidString)", addresses: addresses, directory: directory)
    for service in services {
      try await platform.start(service, commissionBps: commissionBps, logLevel: logLevel)
    }
    return platform
  }

  /// The configuration a service of this platform runs with.
  public func configuration(_ service: NestServiceName) -> ServiceConfiguration {
    ServiceConfiguration(
      host: "127.0.0.1", port: self.addresses[service]!.port,
      databasePath: self.directory.appendingPathComponent("\(service.rawValue).sqlite").path, peers: self.addresses,
      authSecret: self.secret, logLevel: "error")
  }

  /// Starts one service (again, after `stop(_:)`: its database is kept).
  public func start(_ service: NestServiceName, commissionBps: UInt32 = 500, logLevel: Logger.Level = .error)
    async throws
  {
    let configuration = self.configuration(service)
    var logger = Logger(label: "nest-test.\(service.rawValue)")
    logger.logLevel = logLevel
    let shutdown = ShutdownHandle()
    let task = Task {
      switch service {
      case .catalog:
        try await CatalogServer.run(
          configuration: configuration, logger: logger, shutdownOnSignals: false, shutdown: shutdown)
      case .entitlement:
        try await EntitlementServer.run(
          configuration: configuration, logger: logger, shutdownOnSignals: false, shutdown: shutdown)
      case .order:
        try await OrderServer.run(
          configuration: configuration, commissionBps: commissionBps, logger: logger, shutdownOnSignals: false,
          shutdown: shutdown)
      case .settlement:
        try await SettlementServer.run(
          configuration: configuration, logger: logger, shutdownOnSignals: false, shutdown: shutdown)
      }
    }
    self.tasks.withLockedValue { $0[service] = (task, shutdown) }
    guard await Readiness.waitUntilServing(self.addresses[service]!) else {
      await self.stop(service)
      throw RPCError(code: .unavailable, message: "\(service.rawValue) did not start serving")
    }
  }

  /// Stops one service gracefully, as SIGTERM would, and waits until it has shut down.
  public func stop(_ service: NestServiceName) async {
    guard let (task, shutdown) = self.tasks.withLockedValue({ $0.removeValue(forKey: service) }) else { return }
    await shutdown.shutdown()
    _ = await task.result
  }

  /// Stops every service and removes the databases.
  public func stop() async {
    for service in NestServiceName.allCases { await self.stop(service) }
    try? FileManager.default.removeItem(at: self.directory)
  }

  /// A bearer token for `role` and `subject`, signed with the platform's secret.
  public func token(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String {
    try await NestTokens(secret: self.secret).sign(subject: subject, role: role)
  }

  /// Runs `body` with a client of `service` whose calls carry a token of `role` and `subject`.
  public func withClient<Result: Sendable>(
    _ service: NestServiceName, as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (GRPCClient<NestClientTransport>) async throws -> Result
  ) async throws -> Result {
    let address = self.addresses[service]!
    return try await withGRPCClient(
      transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "nest-test-kit")),
      interceptors: [BearerTokenClientInterceptor(token: try await self.token(role, subject))]
    ) { try await body($0) }
  }

  public func catalog<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Catalog_V1_CatalogService.Client<NestClientTransport>) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.catalog, as: role, subject) { try await body(.init(wrapping: $0)) }
  }

  public func entitlement<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Entitlement_V1_EntitlementService.Client<NestClientTransport>) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.entitlement, as: role, subject) { try await body(.init(wrapping: $0)) }
  }

  public func orders<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Order_V1_MarketplaceOrderService.Client<NestClientTransport>) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.order, as: role, subject) { try await body(.init(wrapping: $0)) }
  }

  public func settlement<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (Nest_Settlement_V1_SettlementService.Client<NestClientTransport>) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.settlement, as: role, subject) { try await body(.init(wrapping: $0)) }
  }
}
