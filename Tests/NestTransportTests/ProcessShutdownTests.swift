// Graceful shutdown of a real server process on SIGTERM and SIGINT (ServiceLifecycle).
import Foundation
import GRPCCore
import NestProto
import NestProtoTesting
import NestTransport
import Testing

@Suite("Process shutdown", .serialized, .timeLimit(.minutes(3)))
struct ProcessShutdownTests {
  @Test("SIGTERM during a call: the call completes, the process exits 0", arguments: [SIGTERM, SIGINT])
  func signal(_ signal: Int32) async throws {
    let server = try ChildProcess("nest-echo-server", arguments: ["--port", "0"])
    let port = try await server.port()
    try await withClient(port: port) { client in
      let echo = Nest_Testing_V1_Echo.Client(wrapping: client)
      let inFlight = Task {
        try await echo.echo(
          .with {
            $0.text = "in-flight"
            $0.delayMs = 1_000
          }
        ).text
      }
      #expect(await server.line(startingWith: "started in-flight") != nil)
      kill(server.process.processIdentifier, signal)
      let answer = try await inFlight.value
      #expect(answer == "in-flight")
    }
    #expect(await server.waitForExit() == 0)
    #expect(await server.line(startingWith: "stopped") != nil)
  }
}
