// Every setting is read one way (flag, then NEST_* variable, then default) and every bad
// value stops the start with a message naming the setting and the value.
import ArgumentParser
import Foundation
import NestServiceKit
import Testing

private func load(
  _ arguments: [String], _ environment: [String: String], service: NestServiceName = .catalog
) async throws -> ServiceConfiguration {
  try await ServiceConfiguration.load(
    service, flags: try ServiceOptions.parse(arguments).flags, environment: environment)
}

private let secret = ["NEST_AUTH_SECRET": String(repeating: "s", count: 40)]

@Suite("Service configuration")
struct ServiceConfigurationTests {
  @Test("defaults: 127.0.0.1, the service's own port, peers on their default ports")
  func defaults() async throws {
    let configuration = try await load(["--database", "/tmp/c.sqlite"], secret, service: .entitlement)
    #expect(configuration.host == "127.0.0.1")
    #expect(configuration.port == 7102)
    #expect(configuration.peers[.catalog] == ServiceAddress(host: "127.0.0.1", port: 7101))
    #expect(configuration.peers[.settlement] == ServiceAddress(host: "127.0.0.1", port: 7104))
    #expect(configuration.logLevel == "info")
    #expect(configuration.peerTimeout == .seconds(10))
    #expect(configuration.listeningSocket == nil)
  }

  @Test("environment variables fill what flags leave out; flags win")
  func environment() async throws {
    let environment = secret.merging([
      "NEST_HOST": "0.0.0.0", "NEST_PORT": "9000", "NEST_DATABASE": "/data/catalog.sqlite",
      "NEST_ENTITLEMENT_ADDRESS": "entitlement:7102", "NEST_LOG_LEVEL": "debug", "NEST_PEER_TIMEOUT_MS": "2500",
    ]) { $1 }
    let fromEnvironment = try await load([], environment)
    #expect(fromEnvironment.host == "0.0.0.0")
    #expect(fromEnvironment.port == 9000)
    #expect(fromEnvironment.databasePath == "/data/catalog.sqlite")
    #expect(fromEnvironment.peers[.entitlement] == ServiceAddress(host: "entitlement", port: 7102))
    #expect(fromEnvironment.peerTimeout == .milliseconds(2500))
    let fromFlags = try await load(["--port", "9100", "--entitlement-address", "10.0.0.2:80"], environment)
    #expect(fromFlags.port == 9100)
    #expect(fromFlags.peers[.entitlement] == ServiceAddress(host: "10.0.0.2", port: 80))
    #expect(fromFlags.databasePath == "/data/catalog.sqlite")
  }

  @Test("a service's own settings read the same way: commission.bps is --commission-bps, then NEST_COMMISSION_BPS")
  func ownSettings() async throws {
    let configuration = try await ServiceConfiguration.load(
      .order, flags: ["database": "d", "commission.bps": "300"],
      environment: secret.merging(["NEST_COMMISSION_BPS": "700"]) { $1 })
    #expect(try await configuration.settings.int("commission.bps", default: 500, in: 0...10_000) == 300)
    let fromEnvironment = try await ServiceConfiguration.load(
      .order, flags: ["database": "d"], environment: secret.merging(["NEST_COMMISSION_BPS": "700"]) { $1 })
    #expect(try await fromEnvironment.settings.int("commission.bps", default: 500, in: 0...10_000) == 700)
  }

  @Test("the secret comes from a file or NEST_AUTH_SECRET; without one, a clear error")
  func secrets() async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID())")
    try "  from-a-file-\(String(repeating: "x", count: 40))\n".write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let fromFile = try await load(["--database", "d", "--auth-secret-file", file.path], secret)
    guard case .sharedSecret(let value) = fromFile.identity else {
      Issue.record("not the shared secret: \(fromFile.identity)")
      return
    }
    #expect(value.hasPrefix("from-a-file-"))
    await #expect(
      throws: ConfigurationError(
        "no auth secret: set NEST_AUTH_SECRET or pass --auth-secret-file (or --auth-jwks-file for an identity provider)"
      )
    ) {
      _ = try await load(["--database", "d"], [:])
    }
    await #expect(
      throws: ConfigurationError("--auth-secret-file / NEST_AUTH_SECRET_FILE: cannot read /nonexistent/secret")
    ) {
      _ = try await load(["--database", "d", "--auth-secret-file", "/nonexistent/secret"], [:])
    }
  }

  @Test(
    "every bad value stops the start, naming the setting and the value",
    arguments: [
      (["--port", "http"], [:], "--port / NEST_PORT: \"http\" is not a whole number"),
      ([], ["NEST_PORT": "70000"], "--port / NEST_PORT: 70000 is out of range (0 to 65535)"),
      (
        ["--catalog-address", "catalog"], [:],
        "--catalog-address / NEST_CATALOG_ADDRESS: \"catalog\" is not host:port (or grpc://host:port)"
      ),
      (
        [], ["NEST_SETTLEMENT_ADDRESS": "s:0"],
        "--settlement-address / NEST_SETTLEMENT_ADDRESS: \"s:0\" is not host:port (or grpc://host:port)"
      ),
      (
        ["--log-level", "loud"], [:],
        "--log-level / NEST_LOG_LEVEL: \"loud\" is not one of trace, debug, info, notice, warning, error, critical"
      ),
      ([], ["NEST_MAX_CONNECTIONS": "0"], "--max-connections / NEST_MAX_CONNECTIONS: 0 is out of range (1 to 1000000)"),
      (["--peer-timeout-ms", "soon"], [:], "--peer-timeout-ms / NEST_PEER_TIMEOUT_MS: \"soon\" is not a whole number"),
      (["--listen-fd", "1"], [:], "--listen-fd / NEST_LISTEN_FD: 1 is out of range (3 to 65535)"),
      ([], ["NEST_GRPC_PORT": "grpc"], "--grpc-port / NEST_GRPC_PORT: \"grpc\" is not a whole number"),
      (
        ["--tls-cert-file", "/etc/hostname"], [:],
        "--tls-cert-file and --tls-key-file go together: give both or neither"
      ),
      (
        ["--tls-cert-file", "/nonexistent/cert.pem", "--tls-key-file", "/nonexistent/key.pem"], [:],
        "--tls-cert-file / NEST_TLS_CERT_FILE: cannot read /nonexistent/cert.pem"
      ),
    ] as [([String], [String: String], String)])
  func badValues(arguments: [String], environment: [String: String], message: String) async {
    await #expect(throws: ConfigurationError(message)) {
      _ = try await load(["--database", "d"] + arguments, secret.merging(environment) { $1 })
    }
  }

  @Test("a bad commission is an error, not the default")
  func badCommission() async throws {
    let configuration = try await ServiceConfiguration.load(
      .order, flags: ["database": "d"], environment: secret.merging(["NEST_COMMISSION_BPS": "lots"]) { $1 })
    await #expect(throws: ConfigurationError("--commission-bps / NEST_COMMISSION_BPS: \"lots\" is not a whole number"))
    {
      _ = try await configuration.settings.int("commission.bps", default: 500, in: 0...10_000)
    }
  }

  @Test("no database is a clear error")
  func noDatabase() async {
    await #expect(throws: ConfigurationError("no database: pass --database PATH or set NEST_DATABASE")) {
      _ = try await load([], secret)
    }
  }
}
