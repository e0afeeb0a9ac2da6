// A unary request that ends without its message. GRPCCore's retry executor can end a first
// attempt's request so: its replay buffer ends a subscriber that asks for the next element
// between the producer's last element and its finish, before the element it holds. Sent as
// it was, the call reached the server as a request of defaults (found by `nest-bench orders`:
// one GetSaleTerms in a few thousand arrived with no product id). Here an interceptor drops
// the message of first attempts, which is what that race does. The transport does not send
// such a request; `UnaryMessageGuard` (which the services' peer clients use) fails it
// UNAVAILABLE on HTTP/2 as well, where GRPCCore's server would fail it INTERNAL.
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOConcurrencyHelpers
import NestProto
import NestProtoTesting
import NestTransport
import Testing

/// Gives the first `attempts` requests that pass it a producer that writes nothing.
final class DropFirstMessages: ClientInterceptor, Sendable {
  private let left: NIOLockedValueBox<Int>

  init(attempts: Int) {
    self.left = NIOLockedValueBox(attempts)
  }

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    let drop = self.left.withLockedValue { left in
      defer { left -= 1 }
      return left > 0
    }
    guard drop else { return try await next(request, context) }
    var request = request
    request.producer = { _ in }
    return try await next(request, context)
  }
}

@Suite("A unary request without its message", .serialized, .timeLimit(.minutes(1)))
struct MissingMessageTests {
  static let retryOnce = ServiceConfig(methodConfig: [
    MethodConfig(
      names: [MethodConfig.Name(service: "")],
      executionPolicy: .retry(
        RetryPolicy(
          maxAttempts: 2, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(10), backoffMultiplier: 1,
          retryableStatusCodes: [.unavailable])))
  ])

  @Test("is not sent: the call fails UNAVAILABLE, and the handler never runs on a request of defaults")
  func notSent() async throws {
    let server = try await TestServer()
    await #expect {
      try await withClient(port: try await server.port, interceptors: [DropFirstMessages(attempts: 1)]) { client in
        try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "hello" })
      }
    } throws: { error in
      (error as? RPCError)?.code == .unavailable
    }
    #expect(server.echo.started.withLockedValue { $0 }.isEmpty)
    await server.stop()
  }

  @Test("under a retry policy, the next attempt carries the message and the call runs once")
  func retried() async throws {
    let server = try await TestServer()
    let answer = try await withClient(
      port: try await server.port, interceptors: [DropFirstMessages(attempts: 1)],
      configure: { $0.serviceConfig = Self.retryOnce }
    ) { client in
      try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "hello" }).text
    }
    #expect(answer == "hello")
    #expect(server.echo.started.withLockedValue { $0 } == ["hello"])
    await server.stop()
  }

  @Test("an empty message is still a message: sent, and answered")
  func emptyMessage() async throws {
    let server = try await TestServer()
    let answer = try await withClient(port: try await server.port) { client in
      try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.init()).text
    }
    #expect(answer == "")
    #expect(server.echo.started.withLockedValue { $0 } == [""])
    await server.stop()
  }

  @Test("over HTTP/2, without the guard the server fails the call INTERNAL; with it, the retry carries the message")
  func http2() async throws {
    let echo = EchoService()
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
    let server = GRPCServer(transport: transport, services: [echo])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      let port = try #require(try await transport.listeningAddress.ipv4).port
      func call(_ interceptors: [any ClientInterceptor]) async throws -> String {
        try await withGRPCClient(
          transport: try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext,
            serviceConfig: Self.retryOnce),
          interceptors: interceptors
        ) { client in
          try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "hello" }).text
        }
      }
      await #expect {
        try await call([DropFirstMessages(attempts: 1)])
      } throws: { error in
        (error as? RPCError)?.code == .internalError
      }
      #expect(try await call([DropFirstMessages(attempts: 1), UnaryMessageGuard()]) == "hello")
      #expect(echo.started.withLockedValue { $0 } == ["hello"])
      server.beginGracefulShutdown()
    }
  }
}
