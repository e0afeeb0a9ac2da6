// A real server on a free loopback port, serving Echo and Health through NestTransport,
// and clients over real sockets.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NestAuth
import NestProto
import NestProtoTesting
import NestTransport
import Testing

/// Echo with knobs: delay (cancellable), failure, response size; records cancellations.
final class EchoService: Nest_Testing_V1_Echo.SimpleServiceProtocol, Sendable {
  let cancelled = NIOLockedValueBox<[String]>([])
  let started = NIOLockedValueBox<[String]>([])
  /// Calls running now, and the most that ever ran at once.
  let concurrency = NIOLockedValueBox<(now: Int, peak: Int)>((0, 0))

  func echo(request: Nest_Testing_V1_EchoRequest, context: ServerContext) async throws
    -> Nest_Testing_V1_EchoResponse
  {
    self.started.withLockedValue { $0.append(request.text) }
    self.concurrency.withLockedValue {
      $0.now += 1
      $0.peak = max($0.peak, $0.now)
    }
    defer { self.concurrency.withLockedValue { $0.now -= 1 } }
    if request.delayMs > 0 {
      // GRPCCore cancels an RPC (deadline, CANCEL, shutdown) through its cancellation
      // handle; a handler that waits listens for it, as real handlers must.
      let wait = Task { try await Task.sleep(for: .milliseconds(Int(request.delayMs))) }
      do {
        try await withRPCCancellationHandler {
          try await wait.value
        } onCancelRPC: {
          wait.cancel()
        }
      } catch {
        self.cancelled.withLockedValue { $0.append(request.text) }
        throw error
      }
    }
    if request.text == "invalid" {
      throw RPCError(
        message: "the request has 2 invalid fields",
        violations: [
          .init(field: "text", description: "must not be \"invalid\""),
          .init(field: "padding", description: "must be empty"),
        ])
    }
    if request.text == "crash" {
      struct DatabaseExploded: Error { let detail = "secret table layout" }
      throw DatabaseExploded()
    }
    if request.failWithCode != 0 {
      throw RPCError(code: RPCError.Code(Status.Code(rawValue: Int(request.failWithCode))!)!, message: "asked to fail")
    }
    return .with {
      // "whoami" answers with the caller the auth interceptor established.
      $0.text =
        request.text == "whoami"
        ? Principal.current.map { "\($0.subject) as \($0.role.claim ?? "?")" } ?? "nobody" : request.text
      $0.padding = [UInt8](repeating: 7, count: Int(request.responsePadding))
    }
  }
}

/// A server that runs until `stop`.
final class TestServer: Sendable {
  let transport: NestServerTransport
  let echo = EchoService()
  let server: GRPCServer<NestServerTransport>
  private let task: Task<Void, any Error>

  init(
    port: Int = 0,
    interceptors: [any ServerInterceptor] = [],
    configure: (inout NestServerTransport.Configuration) -> Void = { _ in }
  ) async throws {
    var configuration = NestServerTransport.Configuration(port: port, peerName: "test-server/0")
    configure(&configuration)
    self.transport = NestServerTransport(configuration)
    self.server = GRPCServer(
      transport: self.transport, services: [self.echo, HealthService()], interceptors: interceptors)
    let server = self.server
    self.task = Task { try await server.serve() }
    _ = try await self.transport.listeningAddress()
  }

  var port: Int {
    get async throws { try await self.transport.listeningAddress().port! }
  }

  func stop() async {
    self.server.beginGracefulShutdown()
    _ = await self.task.result
  }
}

/// Runs `body` with a client connected to `port`; the client's connections end with it.
func withClient<R: Sendable>(
  port: Int,
  interceptors: [any ClientInterceptor] = [],
  configure: (inout NestClientTransport.Configuration) -> Void = { _ in },
  _ body: (GRPCClient<NestClientTransport>) async throws -> R
) async throws -> R {
  var configuration = NestClientTransport.Configuration(port: port, peerName: "test-client/0")
  configure(&configuration)
  return try await withGRPCClient(transport: NestClientTransport(configuration), interceptors: interceptors) {
    client in
    try await body(client)
  }
}

/// Polls `condition` until it holds or `timeout` passes; for effects in another task.
func eventually(
  timeout: Duration = .seconds(5), _ condition: @Sendable () async throws -> Bool
) async rethrows -> Bool {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try? await Task.sleep(for: .milliseconds(10))
  }
  return try await condition()
}

extension Nest_Wire_V1_Frame {
  static var clientHello: Self { .hello(peer: "raw-test/0", maxFrameBytes: 4 << 20) }

}
