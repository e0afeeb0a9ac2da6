// docker-compose.yml and the Dockerfile, checked without a Docker engine: compose's own
// validation of the file, and that every service, volume and health check is there.
import Foundation
import NestProtoTesting
import Testing

@Suite("Deployment files", .timeLimit(.minutes(3)))
struct DeploymentFilesTests {
  static let executables = [
    "catalog-service", "entitlement-service", "marketplace-order-service", "settlement-service", "events-service",
    "nestctl",
  ]

  @Test("docker-compose config accepts the file: five services with their volumes, health checks and a demo profile")
  func compose() throws {
    let secret = ["NEST_AUTH_SECRET": String(repeating: "s", count: 32)]
    let config = try run(["docker-compose", "config"], in: Repository.root, environment: secret)
    #expect(config.status == 0, "\(config.stderr)")
    let services = try run(["docker-compose", "config", "--services"], in: Repository.root, environment: secret)
    #expect(
      Set(services.stdoutText.split(separator: "\n")) == [
        "catalog", "entitlement", "marketplace-order", "settlement", "events", "demo",
      ])
    // The demo only runs when asked for: it is in the demo profile.
    #expect(config.stdoutText.contains("profiles:\n    - demo"))
    let volumes = try run(["docker-compose", "config", "--volumes"], in: Repository.root, environment: secret)
    #expect(
      Set(volumes.stdoutText.split(separator: "\n")) == [
        "catalog-data", "entitlement-data", "order-data", "settlement-data", "events-data",
      ])
    for (port, _) in [
      ("7101", "catalog"), ("7102", "entitlement"), ("7103", "order"), ("7104", "settlement"), ("7105", "events"),
    ] {
      #expect(config.stdoutText.contains("- 127.0.0.1:\(port)"), "no health check on \(port)")
    }
    // No secret, no platform: compose says what is missing.
    let missing = try run(
      ["docker-compose", "config"], in: Repository.root, environment: ["NEST_AUTH_SECRET": ""])
    #expect(missing.status != 0)
    #expect(missing.stderr.contains("set NEST_AUTH_SECRET"))
  }

  @Test("the image carries every executable and the proto files nestctl encodes with")
  func dockerfile() throws {
    let dockerfile = try String(contentsOf: Repository.path("Dockerfile"), encoding: .utf8)
    for executable in Self.executables {
      #expect(dockerfile.contains("--product \(executable)"), "\(executable) is not built")
      #expect(dockerfile.contains(".build/release/\(executable)"), "\(executable) is not copied")
    }
    #expect(dockerfile.contains("COPY proto /usr/share/nest/proto"))
  }
}
