// The services over standard gRPC, from another language: Tests/Python/grpc_client.py
// (grpcio with stubs grpcio-tools generates from proto/, grpcio-health-checking,
// grpcio-reflection, grpcio-status, a JWT it signs itself) against the five executables' gRPC
// (HTTP/2) ports: health, reflection, error codes with field violations, and a scenario-3 sale
// and refund with every balance.
import Foundation
import NestProtoTesting
import NestTestKit
import Testing

/// The Python environment scripts/bootstrap makes for the gRPC clients.
let grpcPython = Repository.path(".build/python-grpc/bin/python3")

@Suite("Standard gRPC from another language", .serialized, .timeLimit(.minutes(3)))
struct GRPCInteropTests {
  @Test("a Python grpcio client: health, reflection, errors with violations, a scenario-3 sale and refund")
  func python() async throws {
    try #require(
      FileManager.default.isExecutableFile(atPath: grpcPython.path),
      "no \(grpcPython.path): run scripts/bootstrap")
    // The services reach each other over gRPC too: nothing in this test speaks protocol v1.
    let platform = try await NestTestPlatform.start(.processes(peers: .grpc))
    let addresses = platform.grpcAddresses
    var arguments = ["env", "NEST_AUTH_SECRET=\(platform.secret)", grpcPython.path]
    arguments.append(Repository.path("Tests/Python/grpc_client.py").path)
    for service in NestServiceName.allCases {
      arguments += ["--\(service.rawValue)", "\(addresses[service]!.host):\(addresses[service]!.port)"]
    }
    let command = arguments
    let result = try await Task.detached { try run(command) }.value
    #expect(result.status == 0, "\(result.stdoutText)\n\(result.stderr)")
    #expect(result.stdoutText.contains("all checks hold"), "\(result.stdoutText)")
    #expect(!result.stdoutText.contains("FAILED"))
    await platform.stop()
  }

  @Test("nestctl talks gRPC: the demo over grpc:// addresses, every figure agreeing")
  func nestctlOverGRPC() async throws {
    let platform = try await NestTestPlatform.start(.processes(peers: .grpc))
    var environment = ["NEST_AUTH_SECRET": platform.secret]
    for (service, address) in platform.grpcAddresses {
      environment["NEST_\(service.rawValue.uppercased())_ADDRESS"] = "\(address)"
    }
    #expect(environment["NEST_ORDER_ADDRESS"]?.hasPrefix("grpc://") == true)
    let variables = environment
    let result = try await Task.detached { try nestctl(["demo"], environment: variables) }.value
    #expect(result.status == 0, "\(result.stdoutText)\n\(result.stderr)")
    #expect(result.stdoutText.hasSuffix("all figures agree\n"))
    await platform.stop()
  }

  @Test("with a certificate and key the gRPC port speaks TLS; a client that trusts the certificate gets SERVING")
  func tls() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-tls-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let certificate = directory.appendingPathComponent("cert.pem").path
    let key = directory.appendingPathComponent("key.pem").path
    let made = try run([
      "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ])
    #expect(made.status == 0, "\(made.stderr)")
    let platform = try await NestTestPlatform.start(
      .processes(), services: [.catalog],
      settings: [.catalog: ["tls.cert.file": certificate, "tls.key.file": key]])
    let address = platform.grpcAddresses[.catalog]!
    let command = [
      grpcPython.path, Repository.path("Tests/Python/grpc_client.py").path, "--tls-health",
      "\(address.host):\(address.port)", certificate,
    ]
    let result = try await Task.detached { try run(command) }.value
    #expect(result.status == 0, "\(result.stdoutText)\n\(result.stderr)")
    #expect(result.stdoutText.contains("over TLS: SERVING"))
    await platform.stop()
  }
}
