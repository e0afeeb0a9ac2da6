import ArgumentParser
import Foundation
import NestServiceKit
import Testing

private func resolve(_ arguments: [String], _ environment: [String: String], service: NestServiceName = .catalog)
  throws -> ServiceConfiguration
{
  try ServiceConfiguration.resolve(ServiceOptions.parse(arguments), service: service, environment: environment)
}

private let secret = ["NEST_AUTH_SECRET": String(repeating: "s", count: 40)]

@Suite("Service configuration")
struct ServiceConfigurationTests {
  @Test("defaults: 127.0.0.1, the service's own port, peers on their default ports")
  func defaults() throws {
    let configuration = try resolve(["--database", "/tmp/c.sqlite"], secret, service: .entitlement)
    #expect(configuration.host == "127.0.0.1")
    #expect(configuration.port == 7102)
    #expect(configuration.peers[.catalog] == ServiceAddress(host: "127.0.0.1", port: 7101))
    #expect(configuration.peers[.settlement] == ServiceAddress(host: "127.0.0.1", port: 7104))
    #expect(configuration.logLevel == "info")
  }

  @Test("environment variables fill what flags leave out; flags win")
  func environment() throws {
    let environment = secret.merging([
      "NEST_HOST": "0.0.0.0", "NEST_PORT": "9000", "NEST_DATABASE": "/data/catalog.sqlite",
      "NEST_ENTITLEMENT_ADDRESS": "entitlement:7102", "NEST_LOG_LEVEL": "debug",
    ]) { $1 }
    let fromEnvironment = try resolve([], environment)
    #expect(fromEnvironment.host == "0.0.0.0")
    #expect(fromEnvironment.port == 9000)
    #expect(fromEnvironment.databasePath == "/data/catalog.sqlite")
    #expect(fromEnvironment.peers[.entitlement] == ServiceAddress(host: "entitlement", port: 7102))
    let fromFlags = try resolve(["--port", "9100", "--entitlement-address", "10.0.0.2:80"], environment)
    #expect(fromFlags.port == 9100)
    #expect(fromFlags.peers[.entitlement] == ServiceAddress(host: "10.0.0.2", port: 80))
    #expect(fromFlags.databasePath == "/data/catalog.sqlite")
  }

  @Test("the secret comes from a file or NEST_AUTH_SECRET; without one, a clear error")
  func secrets() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID())")
    try "  from-a-file-\(String(repeating: "x", count: 40))\n".write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let fromFile = try resolve(["--database", "d", "--auth-secret-file", file.path], [:])
    #expect(fromFile.authSecret.hasPrefix("from-a-file-"))
    #expect(throws: ConfigurationError("no auth secret: set NEST_AUTH_SECRET or pass --auth-secret-file")) {
      _ = try resolve(["--database", "d"], [:])
    }
    #expect(throws: ConfigurationError.self) {
      _ = try resolve(["--database", "d", "--auth-secret-file", "/nonexistent/secret"], [:])
    }
  }

  @Test("bad values are refused with what was wrong")
  func badValues() {
    #expect(throws: ConfigurationError("\"catalog\" is not host:port")) {
      _ = try resolve(["--database", "d", "--catalog-address", "catalog"], secret)
    }
    #expect(throws: ConfigurationError("NEST_PORT \"http\" is not a port")) {
      _ = try resolve(["--database", "d"], secret.merging(["NEST_PORT": "http"]) { $1 })
    }
    #expect(throws: ConfigurationError("no database: pass --database PATH or set NEST_DATABASE")) {
      _ = try resolve([], secret)
    }
  }
}
