// nest-echo-server: Echo and Health over NestTransport in a ServiceGroup, as a process.
//   nest-echo-server [--port N] [--max-concurrent-calls N] [--log]
// Prints "listening on HOST:PORT" once bound and "started TEXT" as each call begins, so a
// test can act at the right moment; stops gracefully on SIGTERM or SIGINT.
import Foundation
import GRPCCore
import Logging
import NIOCore
import NestProto
import NestProtoTesting
import NestTransport
import ServiceLifecycle
import UnixSignals

struct EchoService: Nest_Testing_V1_Echo.SimpleServiceProtocol {
  let announce: Bool

  func echo(request: Nest_Testing_V1_EchoRequest, context: ServerContext) async throws
    -> Nest_Testing_V1_EchoResponse
  {
    if self.announce { printLine("started \(request.text)") }
    if request.delayMs > 0 {
      let wait = Task { try await Task.sleep(for: .milliseconds(Int(request.delayMs))) }
      try await withRPCCancellationHandler {
        try await wait.value
      } onCancelRPC: {
        wait.cancel()
      }
    }
    return .with {
      $0.text = request.text
      $0.padding = [UInt8](repeating: 7, count: Int(request.responsePadding))
    }
  }
}

func printLine(_ line: String) {
  FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let arguments = CommandLine.arguments
func option(_ name: String) -> String? {
  arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
}

var logger = Logger(label: "nest-echo-server")
logger.logLevel = arguments.contains("--log") ? .info : .error
var configuration = NestServerTransport.Configuration(
  port: Int(option("--port") ?? "0") ?? 0, peerName: "nest-echo-server/0.1.0")
if let limit = option("--max-concurrent-calls").flatMap(Int.init) { configuration.maxConcurrentCalls = limit }
let transport = NestServerTransport(configuration, logger: logger)
let server = GRPCServer(
  transport: transport,
  services: [EchoService(announce: !arguments.contains("--quiet")), HealthService()])

let group = ServiceGroup(
  configuration: .init(
    services: [
      .init(service: NestServerService(server: server)),
      .init(service: ListeningAddressAnnouncer(transport: transport), successTerminationBehavior: .ignore),
    ],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: logger))
try await group.run()
printLine("stopped")
