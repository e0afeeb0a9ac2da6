// The transport over real loopback sockets, server and clients in this process.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NIOCore
import NestProto
import NestProtoTesting
import NestTransport
import Testing

private func echo(
  _ client: GRPCClient<NestClientTransport>, _ text: String, delayMs: Int32 = 0, timeout: Duration? = nil
)
  async throws -> String
{
  var options = CallOptions.defaults
  options.timeout = timeout
  return try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(
    .with {
      $0.text = text
      $0.delayMs = delayMs
    }, options: options
  ).text
}

@Suite("Loopback", .serialized, .timeLimit(.minutes(3)))
struct LoopbackTests {
  @Test("1,000 concurrent calls over one connection")
  func manyCallsOneConnection() async throws {
    let server = try await TestServer()
    let answers = try await withClient(port: try await server.port) { client in
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for index in 0..<1000 {
          group.addTask { try await echo(client, "call-\(index)") == "call-\(index)" }
        }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
      }
    }
    #expect(answers == 1000)
    await server.stop()
  }

  @Test("1,000 calls over ten connections")
  func manyCallsTenConnections() async throws {
    let server = try await TestServer()
    let port = try await server.port
    let answers = try await withThrowingTaskGroup(of: Int.self) { group in
      for connection in 0..<10 {
        group.addTask {
          try await withClient(port: port) { client in
            try await withThrowingTaskGroup(of: Bool.self) { calls in
              for index in 0..<100 {
                calls.addTask { try await echo(client, "\(connection)-\(index)") == "\(connection)-\(index)" }
              }
              return try await calls.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
          }
        }
      }
      return try await group.reduce(0, +)
    }
    #expect(answers == 1000)
    await server.stop()
  }

  @Test("health answers without credentials")
  func health() async throws {
    let server = try await TestServer()
    let status = try await withClient(port: try await server.port) { client in
      try await Nest_Health_V1_Health.Client(wrapping: client).check(.init()).status
    }
    #expect(status == .serving)
    await server.stop()
  }

  @Test("a passed deadline is DEADLINE_EXCEEDED, and the handler is stopped")
  func deadline() async throws {
    let server = try await TestServer()
    await #expect {
      try await withClient(port: try await server.port) { client in
        try await echo(client, "slow", delayMs: 5_000, timeout: .milliseconds(100))
      }
    } throws: { error in
      (error as? RPCError)?.code == .deadlineExceeded
    }
    #expect(await eventually { server.echo.cancelled.withLockedValue { $0.contains("slow") } })
    await server.stop()
  }

  @Test("client cancellation reaches the handler")
  func cancellation() async throws {
    let server = try await TestServer()
    try await withClient(port: try await server.port) { client in
      let call = Task { try await echo(client, "to-cancel", delayMs: 10_000) }
      #expect(await eventually { server.echo.started.withLockedValue { $0.contains("to-cancel") } })
      call.cancel()
      await #expect(throws: (any Error).self) { try await call.value }
    }
    #expect(await eventually { server.echo.cancelled.withLockedValue { $0.contains("to-cancel") } })
    await server.stop()
  }

  @Test("a handler's error reaches the client with its code")
  func errors() async throws {
    let server = try await TestServer()
    await #expect {
      try await withClient(port: try await server.port) { client in
        try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.failWithCode = 5 })
      }
    } throws: { error in
      (error as? RPCError)?.code == .notFound
    }
    await server.stop()
  }

  @Test("graceful shutdown: the in-flight call completes, a new one is refused UNAVAILABLE")
  func goAwayDrain() async throws {
    let server = try await TestServer()
    let port = try await server.port
    try await withClient(port: port) { client in
      let inFlight = Task { try await echo(client, "in-flight", delayMs: 500) }
      #expect(await eventually { server.echo.started.withLockedValue { $0.contains("in-flight") } })
      let stopping = Task { await server.stop() }
      #expect(try await inFlight.value == "in-flight")
      await stopping.value
      await #expect {
        try await echo(client, "after-goaway")
      } throws: { error in
        (error as? RPCError)?.code == .unavailable
      }
      // A new server on the same port: the client dials again and the call succeeds.
      let restarted = try await TestServer(port: port)
      #expect(await eventually(timeout: .seconds(10)) { (try? await echo(client, "again")) == "again" })
      await restarted.stop()
    }
  }

  @Test("a first frame that is not HELLO gets GOAWAY INVALID_ARGUMENT and a close")
  func badFirstFrame() async throws {
    let server = try await TestServer()
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(
      frame: .with {
        $0.callID = 1
        $0.kind = .request
        $0.method = "/nest.health.v1.Health/Check"
      })
    let reply = try #require(try await raw.nextFrame())
    #expect(reply.kind == .goaway)
    #expect(reply.status?.code == 3)
    #expect(try await raw.nextFrame() == nil)
    await server.stop()
  }

  @Test("an unsupported version gets GOAWAY UNIMPLEMENTED")
  func badVersion() async throws {
    let server = try await TestServer()
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(
      frame: .with {
        $0.kind = .hello
        $0.hello = .with { $0.version = 2 }
      })
    let reply = try #require(try await raw.nextFrame())
    #expect(reply.kind == .goaway)
    #expect(reply.status?.code == 12)
    await server.stop()
  }

  @Test("an oversized frame gets GOAWAY RESOURCE_EXHAUSTED without the body being sent")
  func oversizedFrame() async throws {
    let server = try await TestServer()
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(frame: .clientHello)
    #expect(try await raw.nextFrame()?.kind == .hello)
    await raw.write([0x7f, 0xff, 0xff, 0xff])  // a 2 GiB frame header, and nothing more
    let reply = try #require(try await raw.nextFrame())
    #expect(reply.kind == .goaway)
    #expect(reply.status?.code == 8)
    await server.stop()
  }

  @Test("PING is answered with PONG and the same payload; unknown kinds are ignored")
  func ping() async throws {
    let server = try await TestServer()
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(frame: .clientHello)
    #expect(try await raw.nextFrame()?.kind == .hello)
    try await raw.write(frame: .with { $0.kind = .init(rawValue: 99) })
    try await raw.write(
      frame: .with {
        $0.kind = .ping
        $0.payload = [1, 2, 3]
      })
    let pong = try #require(try await raw.nextFrame())
    #expect(pong.kind == .pong)
    #expect(pong.payload == [1, 2, 3])
    await server.stop()
  }

  @Test("a client holding half a frame holds up no one else")
  func slowPartialFrame() async throws {
    let server = try await TestServer()
    let port = try await server.port
    let raw = try RawConnection(port: port)
    try await raw.write(frame: .clientHello)
    await raw.write([0, 0, 0, 200, 0x08])  // announces 200 bytes, sends 1
    let answers = try await withClient(port: port) { client in
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for index in 0..<50 { group.addTask { try await echo(client, "\(index)") == "\(index)" } }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
      }
    }
    #expect(answers == 50)
    await server.stop()
  }

  @Test("a call over the server's concurrency limit is refused RESOURCE_EXHAUSTED")
  func concurrencyLimit() async throws {
    let server = try await TestServer { $0.maxConcurrentCalls = 2 }
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(frame: .clientHello)
    let hello = try #require(try await raw.nextFrame())
    #expect(hello.hello?.maxConcurrentCalls == 2)
    for callID in UInt64(1)...3 {
      try await raw.write(
        frame: .with {
          $0.callID = callID
          $0.kind = .request
          $0.method = "/nest.testing.v1.Echo/Echo"
          $0.payload = try Nest_Testing_V1_EchoRequest.with {
            $0.text = "\(callID)"
            $0.delayMs = 500
          }.serializedBytes()
        })
    }
    // The third arrives while two run: refused at once, before either finishes.
    let refused = try #require(try await raw.nextFrame())
    #expect(refused.callID == 3)
    #expect(refused.status?.code == 8)
    let finished = [try await raw.nextFrame(), try await raw.nextFrame()].compactMap { $0 }
    #expect(Set(finished.map(\.callID)) == [1, 2])
    #expect(finished.allSatisfy { $0.status?.code == 0 })
    await server.stop()
  }

  @Test("the client queues calls beyond the limit the server announced in HELLO")
  func clientRespectsLimit() async throws {
    let server = try await TestServer { $0.maxConcurrentCalls = 2 }
    let answers = try await withClient(port: try await server.port) { client in
      // The server's HELLO precedes any RESPONSE on the connection: after one call the
      // client knows the limit.
      _ = try await echo(client, "warm-up")
      return try await withThrowingTaskGroup(of: Bool.self) { group in
        for index in 0..<8 {
          group.addTask { try await echo(client, "\(index)", delayMs: 50) == "\(index)" }
        }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
      }
    }
    #expect(answers == 8)
    #expect(server.echo.concurrency.withLockedValue { $0.peak } == 2)
    await server.stop()
  }

  @Test("a connection that never says HELLO is closed after the HELLO timeout")
  func helloTimeout() async throws {
    let server = try await TestServer { $0.helloTimeout = .milliseconds(200) }
    let raw = try RawConnection(port: try await server.port)
    let reply = try #require(try await raw.nextFrame())
    #expect(reply.kind == .goaway)
    #expect(try await raw.nextFrame() == nil)
    await server.stop()
  }

  @Test("an idle connection is closed by the server with GOAWAY, and the client redials")
  func idleTimeout() async throws {
    let server = try await TestServer { $0.idleTimeout = .milliseconds(200) }
    let raw = try RawConnection(port: try await server.port)
    try await raw.write(frame: .clientHello)
    #expect(try await raw.nextFrame()?.kind == .hello)
    let goAway = try #require(try await raw.nextFrame())
    #expect(goAway.kind == .goaway)
    #expect(goAway.status?.message == "idle")
    #expect(try await raw.nextFrame() == nil)
    // A real client whose connection went idle simply dials again.
    try await withClient(port: try await server.port) { client in
      let before = try await echo(client, "before")
      #expect(before == "before")
      #expect(await eventually { (try? await echo(client, "after-idle")) == "after-idle" })
    }
    await server.stop()
  }

  @Test("keepalive PINGs keep an otherwise idle connection open")
  func keepalive() async throws {
    let server = try await TestServer { $0.idleTimeout = .milliseconds(300) }
    try await withClient(port: try await server.port, configure: { $0.keepaliveInterval = .milliseconds(50) }) {
      client in
      let first = try await echo(client, "first")
      #expect(first == "first")
      let connections = server.transport.openConnections
      // The behaviour under test is over time: for three idle timeouts the connection
      // stays, because the PINGs count as activity.
      let deadline = ContinuousClock.now + .milliseconds(900)
      while ContinuousClock.now < deadline {
        #expect(server.transport.openConnections == connections)
        try await Task.sleep(for: .milliseconds(100))
      }
      let second = try await echo(client, "second")
      #expect(second == "second")
    }
    await server.stop()
  }

  @Test("a request over the server's frame limit fails locally, and the connection stays up")
  func requestOverFrameLimit() async throws {
    let server = try await TestServer { $0.maxFrameBytes = 1024 }
    try await withClient(port: try await server.port) { client in
      let echo = Nest_Testing_V1_Echo.Client(wrapping: client)
      _ = try await echo.echo(.with { $0.text = "learn the limit from HELLO" })
      await #expect {
        try await echo.echo(.with { $0.padding = [UInt8](repeating: 1, count: 4096) })
      } throws: { error in
        (error as? RPCError)?.code == .resourceExhausted
      }
      let after = try await echo.echo(.with { $0.text = "still connected" }).text
      #expect(after == "still connected")
    }
    #expect(server.transport.acceptedConnections == 1, "the server never had to close the connection")
    await server.stop()
  }

  @Test("field violations travel in Status.violations on the wire and come back typed")
  func fieldViolations() async throws {
    let server = try await TestServer()
    let port = try await server.port
    let expected = [
      FieldViolation(field: "text", description: "must not be \"invalid\""),
      FieldViolation(field: "padding", description: "must be empty"),
    ]
    await #expect {
      try await withClient(port: port) { client in
        try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "invalid" })
      }
    } throws: { error in
      guard let error = error as? RPCError else { return false }
      return error.code == .invalidArgument && error.fieldViolations == expected
        && error.metadata[binaryValues: "nest-field-violations-bin"].first(where: { _ in true }) != nil
    }
    // On the wire: in the Status, not in the metadata.
    let raw = try RawConnection(port: port)
    try await raw.write(frame: .clientHello)
    _ = try await raw.nextFrame()
    try await raw.write(
      frame: .with {
        $0.callID = 1
        $0.kind = .request
        $0.method = "/nest.testing.v1.Echo/Echo"
        $0.payload = try Nest_Testing_V1_EchoRequest.with { $0.text = "invalid" }.serializedBytes()
      })
    let response = try #require(try await raw.nextFrame())
    #expect(response.status?.code == 3)
    #expect(response.status?.violations.map(\.field) == ["text", "padding"])
    #expect(!response.metadata.contains { $0.key == "nest-field-violations-bin" })
    await server.stop()
  }

  @Test("a call made before the client runs waits for it, so a quick body never outlives the start")
  func callsWaitForStart() async throws {
    let server = try await TestServer()
    let client = GRPCClient(transport: NestClientTransport(.init(port: try await server.port, peerName: "test")))
    let call = Task { try await echo(client, "early") }
    // Not started: the call is held, not sent.
    try await Task.sleep(for: .milliseconds(200))
    #expect(server.echo.started.withLockedValue { $0 }.isEmpty)
    let running = Task { try await client.runConnections() }
    #expect(try await call.value == "early")
    client.beginGracefulShutdown()
    try await running.value
    await server.stop()
  }
}
