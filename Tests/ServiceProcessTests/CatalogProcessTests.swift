// catalog-service as a real process on a free loopback port with its own database,
// driven over NestTransport with the generated client.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestAuth
import NestProto
import NestProtoTesting
import NestTransport
import Testing

private let secret = "catalog-process-test-secret-\(UUID())"

/// A service executable as a child process; its stdout collected line by line.
final class ServiceProcess: Sendable {
  let process: Process
  let lines = NIOLockedValueBox<[String]>([])

  init(_ executable: String, database: String) throws {
    let process = Process()
    process.executableURL = Repository.productsDirectory.appendingPathComponent(executable)
    process.arguments = ["--port", "0", "--database", database, "--log-level", "error"]
    process.environment = ["NEST_AUTH_SECRET": secret]
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
      lines.withLockedValue { $0 += String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init) }
    }
    try process.run()
  }

  /// The port from "listening on HOST:PORT", waiting up to 20 s for it.
  func port() async throws -> Int {
    let deadline = ContinuousClock.now + .seconds(20)
    while ContinuousClock.now < deadline {
      if let line = self.lines.withLockedValue({ $0.first { $0.hasPrefix("listening on ") } }),
        let port = line.split(separator: ":").last.flatMap({ Int($0) })
      {
        return port
      }
      try await Task.sleep(for: .milliseconds(20))
    }
    throw CancellationError()
  }

  func stop() -> Int32 {
    self.process.terminate()  // SIGTERM: graceful
    self.process.waitUntilExit()
    return self.process.terminationStatus
  }
}

@Suite("catalog-service process", .serialized)
struct CatalogProcessTests {
  @Test("health without credentials; an ISV creates a service; it survives a restart")
  func lifecycle() async throws {
    let database = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID()).sqlite").path
    let token = try await NestTokens(secret: secret).sign(subject: "isv-1", role: .isv)
    var service = try ServiceProcess("catalog-service", database: database)
    var port = try await service.port()
    let created = try await withGRPCClient(
      transport: NestClientTransport(.init(port: port, peerName: "test")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in
      let health = try await Nest_Health_V1_Health.Client(wrapping: client).check(
        .with { $0.service = "nest.catalog.v1.CatalogService" })
      #expect(health.status == .serving)
      return try await Nest_Catalog_V1_CatalogService.Client(wrapping: client).createService(
        .with {
          $0.clientToken = "first"
          $0.name = "Analytics ✓"
          $0.type = .fullyManaged
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://registry.example/isv/analytics:1"
            $0.checksumSha256 = String(repeating: "0f", count: 32)
          }
        }
      ).service!
    }
    #expect(service.stop() == 0)

    service = try ServiceProcess("catalog-service", database: database)
    port = try await service.port()
    let (loaded, refusal) = try await withGRPCClient(
      transport: NestClientTransport(.init(port: port, peerName: "test")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in
      let catalog = Nest_Catalog_V1_CatalogService.Client(wrapping: client)
      let loaded = try await catalog.getService(.with { $0.serviceID = created.id }).service
      // An empty name over the wire: INVALID_ARGUMENT with the field named.
      var refusal: RPCError? = nil
      do {
        _ = try await catalog.createService(
          .with {
            $0.name = ""; $0.type = .private
          })
      } catch let error as RPCError {
        refusal = error
      }
      return (loaded, refusal)
    }
    #expect(loaded == created)
    #expect(refusal?.code == .invalidArgument)
    #expect(refusal?.fieldViolations.map(\.field).contains("name") == true)
    #expect(service.stop() == 0)
    try? FileManager.default.removeItem(atPath: database)
  }
}
