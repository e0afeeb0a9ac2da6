// Bearer tokens end to end: a real server with the auth interceptor, clients over sockets.
import Foundation
import GRPCCore
import Logging
import NIOConcurrencyHelpers
import NestAuth
import NestProto
import NestProtoTesting
import NestTransport
import Testing

private let secret = "test-secret-\(UUID())"

private func whoami(port: Int, token: String?) async throws -> String {
  let interceptors: [any ClientInterceptor] = token.map { [BearerTokenClientInterceptor(token: $0)] } ?? []
  return try await withClient(port: port, interceptors: interceptors) { client in
    try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "whoami" }).text
  }
}

private func isUnauthenticated(_ error: any Error) -> Bool {
  (error as? RPCError)?.code == .unauthenticated
}

@Suite("Auth", .serialized, .timeLimit(.minutes(3)))
struct AuthTests {
  @Test("a valid token is accepted and its principal reaches the handler")
  func accepted() async throws {
    let tokens = try await NestTokens(secret: secret)
    let server = try await TestServer(interceptors: [AuthServerInterceptor(tokens: tokens)])
    let token = try await tokens.sign(subject: "dist-42", role: .distributor)
    #expect(try await whoami(port: try await server.port, token: token) == "dist-42 as distributor")
    await server.stop()
  }

  @Test("missing, malformed, forged, expired or unknown-role credentials are UNAUTHENTICATED")
  func refused() async throws {
    let tokens = try await NestTokens(secret: secret)
    let server = try await TestServer(interceptors: [AuthServerInterceptor(tokens: tokens)])
    let port = try await server.port
    let forged = try await NestTokens(secret: "another-secret-of-at-least-32-bytes!").sign(subject: "isv-1", role: .isv)
    let expired = try await tokens.sign(subject: "isv-1", role: .isv, lifetime: .seconds(-60))
    for token in [nil, "", "not-a-jwt", forged, expired] as [String?] {
      await #expect(performing: { try await whoami(port: port, token: token) }, throws: isUnauthenticated)
    }
    // Sent without the "Bearer " prefix.
    let valid = try await tokens.sign(subject: "isv-1", role: .isv)
    await #expect {
      try await withClient(port: port) { client in
        try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(
          .with { $0.text = "whoami" }, metadata: ["authorization": "\(valid)"])
      }
    } throws: { isUnauthenticated($0) }
    #expect(server.echo.started.withLockedValue { $0.isEmpty }, "no handler ran for a refused call")
    await server.stop()
  }

  @Test("health needs no credentials")
  func healthIsOpen() async throws {
    let tokens = try await NestTokens(secret: secret)
    let server = try await TestServer(interceptors: [AuthServerInterceptor(tokens: tokens)])
    let status = try await withClient(port: try await server.port) { client in
      try await Nest_Health_V1_Health.Client(wrapping: client).check(.init()).status
    }
    #expect(status == .serving)
    await server.stop()
  }

  @Test("a secret shorter than 32 bytes is refused with a clear error")
  func shortSecret() async {
    await #expect(throws: TokenError("the auth secret must be at least 32 bytes, not 5")) {
      _ = try await NestTokens(secret: "short")
    }
  }

  @Test("roles round-trip through the role claim")
  func roles() {
    for role in Nest_Common_V1_Role.allCases where role != .unspecified {
      #expect(Nest_Common_V1_Role(claim: role.claim!) == role)
    }
    #expect(Nest_Common_V1_Role(claim: "admin") == nil)
  }
}

/// Keeps what a logger writes, for assertions.
final class CapturedLogs: Sendable {
  let lines = NIOLockedValueBox<[(message: String, metadata: Logger.Metadata)]>([])

  var logger: Logger {
    Logger(label: "test") { _ in Handler(captured: self) }
  }

  struct Handler: LogHandler {
    let captured: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { self.metadata[key] }
      set { self.metadata[key] = newValue }
    }
    func log(event: LogEvent) {
      self.captured.lines.withLockedValue {
        $0.append(("\(event.message)", self.metadata.merging(event.metadata ?? [:]) { $1 }))
      }
    }
  }
}

@Suite("Call observer", .timeLimit(.minutes(3)))
struct CallObserverTests {
  @Test("every call is logged with method, status, duration and peer")
  func logs() async throws {
    let logs = CapturedLogs()
    let server = try await TestServer(interceptors: [CallObserverServerInterceptor(logger: logs.logger)])
    try await withClient(port: try await server.port) { client in
      _ = try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "hi" })
      _ = try? await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.failWithCode = 9 })
    }
    let lines = logs.lines.withLockedValue { $0 }.filter { $0.message == "rpc" }
    #expect(lines.count == 2)
    #expect(
      lines.map { $0.metadata["method"]?.description } == ["nest.testing.v1.Echo/Echo", "nest.testing.v1.Echo/Echo"])
    #expect(Set(lines.compactMap { $0.metadata["code"]?.description }) == ["OK", "failedPrecondition"])
    #expect(
      lines.allSatisfy {
        $0.metadata["duration_us"] != nil && $0.metadata["peer"]?.description.contains("127.0.0.1") == true
      })
    await server.stop()
  }
}

@Suite("Unexpected errors", .timeLimit(.minutes(3)))
struct InternalErrorTests {
  @Test("a handler's unexpected error reaches the client as INTERNAL without its details")
  func internalError() async throws {
    let logs = CapturedLogs()
    let server = try await TestServer(interceptors: [InternalErrorServerInterceptor(logger: logs.logger)])
    await #expect {
      try await withClient(port: try await server.port) { client in
        try await Nest_Testing_V1_Echo.Client(wrapping: client).echo(.with { $0.text = "crash" })
      }
    } throws: { error in
      guard let error = error as? RPCError else { return false }
      return error.code == .internalError && error.message == "internal error"
    }
    #expect(
      logs.lines.withLockedValue { $0 }.contains { $0.metadata["error"]?.description.contains("secret table") == true })
    await server.stop()
  }
}

@Suite("Service keys")
struct ServiceKeyTests {
  @Test("keys made by openssl genpkey (Ed25519 and P-256, PKCS#8 PEM) sign service tokens the JWKS verifies")
  func opensslKeys() async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID())")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let commands = [
      "ed25519": ["openssl", "genpkey", "-algorithm", "ed25519"],
      "p256": ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ]
    var keys: [SigningKey] = []
    for (name, command) in commands.sorted(by: { $0.key < $1.key }) {
      let made = try run(command + ["-out", folder.appendingPathComponent(name).path])
      #expect(made.status == 0, "\(made.stderr)")
      let pem = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
      keys.append(try await SigningKey(pem: pem, keyID: "service:marketplace-order:\(name)"))
    }
    #expect(keys.map(\.algorithm) == ["EdDSA", "ES256"])
    let jwks = folder.appendingPathComponent("jwks.json")
    try JSONSerialization.data(withJSONObject: ["keys": keys.map(\.publicJWK)]).write(to: jwks)
    for key in keys {
      let pem = try String(
        contentsOf: folder.appendingPathComponent(key.algorithm == "EdDSA" ? "ed25519" : "p256"), encoding: .utf8)
      let tokens = NestTokens(
        jwks: try await JWKSFile(path: jwks.path), issuer: "https://idp.test", audience: "nest",
        serviceKey: try await ServiceSigningKey(pem: pem, keyID: key.keyID))
      let token = try await tokens.sign(subject: "marketplace-order", role: .service)
      #expect(try await tokens.verify(token) == Principal(subject: "marketplace-order", role: .service))
      await #expect(throws: TokenError.self) { _ = try await tokens.sign(subject: "cust-1", role: .customer) }
    }
  }

  @Test("a JWKS that carries private key material is refused at start")
  func privateMaterial() async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID()).json")
    defer { try? FileManager.default.removeItem(at: file) }
    try
      #"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"idp-1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}"#
      .write(to: file, atomically: true, encoding: .utf8)
    await #expect(
      throws: TokenError("\(file.path): key idp-1 holds private key material; a JWKS publishes public keys only")
    ) { _ = try await JWKSFile(path: file.path) }
  }
}
