// A GRPCServer over NestTransport as a ServiceLifecycle service: run it in a ServiceGroup
// and SIGTERM or SIGINT begins its graceful shutdown (GOAWAY, in-flight calls finish
// within the grace period, then the connections close).
public import GRPCCore
public import ServiceLifecycle

public struct NestServerService: Service {
  public let server: GRPCServer<NestServerTransport>

  public init(server: GRPCServer<NestServerTransport>) {
    self.server = server
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.server.serve()
    } onGracefulShutdown: {
      self.server.beginGracefulShutdown()
    }
  }
}
