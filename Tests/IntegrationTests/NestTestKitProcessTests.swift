// NestTestKit's processes mode: the same contract test as in-process, against the real
// executables, and the one thing only it can do: stop a service and start it again on its
// own database.
import Foundation
import GRPCCore
import NestProto
import NestScenarios
import NestTestKit
import Testing

@Suite("NestTestKit as processes", .serialized, .timeLimit(.minutes(3)))
struct NestTestKitProcessTests {
  @Test("a service SIGKILLed and started again answers with what it stored; while down, UNAVAILABLE")
  func restartKeepsData() async throws {
    let platform = try await NestTestPlatform.start(.processes())
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

    await platform.stop(.catalog, kill: true)
    let down = await #expect(throws: RPCError.self) {
      try await platform.catalog(as: .operator, "op") {
        try await $0.getService(.with { $0.serviceID = service.id })
      }
    }
    #expect(down?.code == .unavailable)

    try await platform.start(.catalog)
    let read = try await platform.catalog(as: .isv, "isv-kit") {
      try await $0.getService(.with { $0.serviceID = service.id }).service!
    }
    #expect(read == service)
    await platform.stop()
  }
}
