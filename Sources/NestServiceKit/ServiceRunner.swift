// What every service executable's main does after parsing its flags: a GRPCServer over
// NestTransport with the platform's interceptors (unexpected errors as INTERNAL, a log
// line and metrics per call, bearer-token auth) and health, run in a ServiceGroup that
// drains it on SIGTERM or SIGINT, beside the service's own long-running parts.
import ArgumentParser
import Foundation
public import GRPCCore
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NestAuth
import NestProto
public import NestTransport
public import ServiceLifecycle
import UnixSignals

public enum ServiceRunner {
  /// Runs until SIGTERM or SIGINT (or a service fails).
  /// - `serviceNames`: the fully qualified gRPC services, for health.
  /// - `background`: other long-running parts (an outbox dispatcher, say).
  public static func run(
    name: String,
    version: String = "0.1.0",
    configuration: ServiceConfiguration,
    services: [any RegistrableRPCService],
    serviceNames: [String],
    background: [any Service] = [],
    logger: Logger,
    shutdownOnSignals: Bool = true,
    shutdown: ShutdownHandle? = nil
  ) async throws {
    let tokens = try await NestTokens(secret: configuration.authSecret)
    let transport = NestServerTransport(
      .init(
        host: configuration.host, port: configuration.port, peerName: "\(name)/\(version)",
        maxConnections: configuration.maxConnections), logger: logger)
    let server = GRPCServer(
      transport: transport,
      services: services + [HealthService(services: serviceNames)],
      interceptors: [
        InternalErrorServerInterceptor(logger: logger),
        CallObserverServerInterceptor(logger: logger),
        AuthServerInterceptor(tokens: tokens),
      ])
    let group = ServiceGroup(
      configuration: .init(
        services: [
          .init(service: NestServerService(server: server)),
          .init(service: ListeningAddressAnnouncer(transport: transport), successTerminationBehavior: .ignore),
        ] + background.map { .init(service: $0) },
        gracefulShutdownSignals: shutdownOnSignals ? [.sigterm, .sigint] : [],
        logger: logger))
    shutdown?.attach(group)
    try await group.run()
  }

  /// Runs `body` with a client for each of `peers`, at their configured addresses, each call
  /// carrying a long-lived token for role `service` with subject `caller`.
  public static func withPeerClients<Result: Sendable>(
    _ peers: [NestServiceName], configuration: ServiceConfiguration, caller: String,
    _ body: @Sendable ([NestServiceName: GRPCClient<NestClientTransport>]) async throws -> Result
  ) async throws -> Result {
    let token = try await NestTokens(secret: configuration.authSecret).sign(
      subject: caller, role: .service, lifetime: .seconds(10 * 365 * 24 * 3600))
    return try await Self.connect(
      peers[...], configuration: configuration, caller: caller, token: token, connected: [:], body)
  }

  private static func connect<Result: Sendable>(
    _ peers: ArraySlice<NestServiceName>, configuration: ServiceConfiguration, caller: String, token: String,
    connected: [NestServiceName: GRPCClient<NestClientTransport>],
    _ body: @Sendable ([NestServiceName: GRPCClient<NestClientTransport>]) async throws -> Result
  ) async throws -> Result {
    guard let peer = peers.first else { return try await body(connected) }
    let address = configuration.peers[peer] ?? ServiceAddress(host: "127.0.0.1", port: peer.defaultPort)
    return try await withGRPCClient(
      transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "\(caller)/0.1.0")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in
      var connected = connected
      connected[peer] = client
      return try await Self.connect(
        peers.dropFirst(), configuration: configuration, caller: caller, token: token, connected: connected, body)
    }
  }
}

/// Stops a running service gracefully from the same process, as SIGTERM would.
public final class ShutdownHandle: Sendable {
  private let group = NIOLockedValueBox<ServiceGroup?>(nil)
  private let requested = NIOLockedValueBox(false)

  public init() {}

  func attach(_ group: ServiceGroup) {
    self.group.withLockedValue { $0 = group }
    if self.requested.withLockedValue({ $0 }) { Task { await group.triggerGracefulShutdown() } }
  }

  /// Begins the graceful shutdown (at once, or as soon as the service has started).
  public func shutdown() async {
    self.requested.withLockedValue { $0 = true }
    if let group = self.group.withLockedValue({ $0 }) { await group.triggerGracefulShutdown() }
  }
}

extension ServiceConfiguration {
  /// The configuration from an executable's flags and its environment; a problem is a usage
  /// error (exit code 64) that says what is missing.
  public static func fromCommandLine(_ options: ServiceOptions, service: NestServiceName) throws -> ServiceConfiguration
  {
    do {
      return try Self.resolve(options, service: service, environment: ProcessInfo.processInfo.environment)
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// A logger for the service at the configured level.
  public func logger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: self.logLevel) ?? .info
    return logger
  }
}
