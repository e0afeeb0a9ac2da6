// catalog-service as a real process on a free loopback port with its own database,
// driven over NestTransport with the generated client.
import Foundation
import GRPCCore
import NestAuth
import NestProto
import NestProtoTesting
import NestTransport
import Testing

private let secret = "catalog-process-test-secret-\(UUID())"

private func catalogService(database: String) throws -> ChildProcess {
  try ChildProcess(
    "catalog-service", arguments: ["--port", "0", "--database", database, "--log-level", "error"],
    environment: ["NEST_AUTH_SECRET": secret])
}

@Suite("catalog-service process", .serialized, .timeLimit(.minutes(3)))
struct CatalogProcessTests {
  @Test("health without credentials; an ISV creates a service; it survives a restart")
  func lifecycle() async throws {
    let database = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID()).sqlite").path
    let token = try await NestTokens(secret: secret).sign(subject: "isv-1", role: .isv)
    var service = try catalogService(database: database)
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

    service = try catalogService(database: database)
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
