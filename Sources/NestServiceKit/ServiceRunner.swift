import Foundation
// What every service executable's main does after parsing its flags: a GRPCServer over
// NestTransport with the platform's interceptors (unexpected errors as INTERNAL, a log
// line and metrics per call, bearer-token auth) and health, run in a ServiceGroup that
// drains it on SIGTERM or SIGINT, beside the service's own long-running parts.
public import GRPCCore
public import Logging
import NIOCore
import NestAuth
import NestTransport
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
    logger: Logger
  ) async throws {
    let tokens = try await NestTokens(secret: configuration.authSecret)
    let transport = NestServerTransport(
      .init(host: configuration.host, port: configuration.port, peerName: "\(name)/\(version)"), logger: logger)
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
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    try await group.run()
  }
}
