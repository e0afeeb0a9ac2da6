// Graceful shutdown of a real server process on SIGTERM and SIGINT (ServiceLifecycle).
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestProto
import NestProtoTesting
import NestTransport
import Testing

/// nest-echo-server as a child process, its stdout collected line by line.
final class EchoServerProcess: Sendable {
  let process: Process
  let lines = NIOLockedValueBox<[String]>([])

  init(arguments: [String] = []) throws {
    let process = Process()
    process.executableURL = Repository.productsDirectory.appendingPathComponent("nest-echo-server")
    process.arguments = ["--port", "0"] + arguments
    let output = Pipe()
    process.standardOutput = output
    self.process = process
    let lines = self.lines
    output.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      guard !data.isEmpty else {
        handle.readabilityHandler = nil
        return
      }
      let text = String(decoding: data, as: UTF8.self)
      lines.withLockedValue { $0 += text.split(separator: "\n").map(String.init) }
    }
    try process.run()
  }

  func line(startingWith prefix: String) async -> String? {
    _ = await eventually(timeout: .seconds(10)) { self.lines.withLockedValue { $0.contains { $0.hasPrefix(prefix) } } }
    return self.lines.withLockedValue { $0.first { $0.hasPrefix(prefix) } }
  }

  var port: Int {
    get async throws {
      let line = try #require(await self.line(startingWith: "listening on "))
      return try #require(line.split(separator: ":").last.flatMap { Int($0) })
    }
  }

  func waitForExit() async -> Int32? {
    guard await eventually(timeout: .seconds(15), { !self.process.isRunning }) else { return nil }
    return self.process.terminationStatus
  }
}

@Suite("Process shutdown", .serialized)
struct ProcessShutdownTests {
  @Test("SIGTERM during a call: the call completes, the process exits 0", arguments: [SIGTERM, SIGINT])
  func signal(_ signal: Int32) async throws {
    let server = try EchoServerProcess()
    let port = try await server.port
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
