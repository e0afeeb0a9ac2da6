// How a user of the platform writes a contract test with NestTestKit: the real service code
// in-process (no ports), with temporary databases, called through the generated clients as
// any party. (The processes mode, which can also restart a service: IntegrationTests.)
import GRPCCore
import NestProto
import NestTestKit
import Testing

@Suite("NestTestKit", .serialized, .timeLimit(.minutes(2)))
struct NestTestKitTests {
  @Test("start the platform in-process and call it as any party, through the real interceptors")
  func contractTest() async throws {
    let platform = try await NestTestPlatform.start()
    let service = try await platform.catalog(as: .isv, "isv-kit") { catalog in
      try await catalog.createService(
        .with {
          $0.name = "Kit"
          $0.type = .fullyManaged
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://registry.example/kit:1"
            $0.checksumSha256 = String(repeating: "0a", count: 32)
          }
        }
      ).service!
    }
    // Another ISV cannot publish it, nor even see the draft: NOT_FOUND, as the contract says.
    let refused = await #expect(throws: RPCError.self) {
      try await platform.catalog(as: .isv, "isv-other") { catalog in
        try await catalog.publishService(
          .with {
            $0.serviceID = service.id
            $0.versionID = "v"
          })
      }
    }
    #expect(refused?.code == .notFound)

    let read = try await platform.catalog(as: .operator, "op") {
      try await $0.getService(.with { $0.serviceID = service.id }).service!
    }
    #expect(read == service)
    // Entitlement asks catalog over the real transport: a draft A is invisible to a distributor.
    let hidden = await #expect(throws: RPCError.self) {
      try await platform.entitlement(as: .distributor, "dist-kit") { entitlement in
        try await entitlement.applyForDistribution(.with { $0.baseServiceID = service.id })
      }
    }
    #expect(hidden?.code == .notFound)
    await platform.stop()
  }
}
