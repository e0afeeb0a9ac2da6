// How nestctl reaches the platform: each service's address (flag, NEST_*_ADDRESS, or the
// default port), a bearer token (--token, NEST_TOKEN), the shared secret for minting tokens
// (NEST_AUTH_SECRET, --auth-secret-file, or the one `nestctl up` wrote into --data-dir), and
// how it prints what comes back.
import ArgumentParser
import Foundation
import GRPCCore
import NestAuth
import NestDomain
import NestProto
import NestScenarios
import NestServiceKit
import NestTransport

struct ConnectionOptions: ParsableArguments {
  @Option(help: "host:port of catalog (NEST_CATALOG_ADDRESS; default 127.0.0.1:7101).")
  var catalogAddress: String?
  @Option(help: "host:port of entitlement (NEST_ENTITLEMENT_ADDRESS; default 127.0.0.1:7102).")
  var entitlementAddress: String?
  @Option(help: "host:port of marketplace-order (NEST_ORDER_ADDRESS; default 127.0.0.1:7103).")
  var orderAddress: String?
  @Option(help: "host:port of settlement (NEST_SETTLEMENT_ADDRESS; default 127.0.0.1:7104).")
  var settlementAddress: String?
  @Option(help: "host:port of events (NEST_EVENTS_ADDRESS; default 127.0.0.1:7105).")
  var eventsAddress: String?
  @Option(help: "Bearer token for the calls (NEST_TOKEN); see `nestctl token issue`.")
  var token: String?
  @Option(help: "File holding the platform's auth secret (NEST_AUTH_SECRET_FILE), to mint tokens.")
  var authSecretFile: String?
  @Option(help: "The data directory of `nestctl up`, whose secret is used when no other is given.")
  var dataDir: String = ".nest"

  var environment: [String: String] { ProcessInfo.processInfo.environment }

  func address(_ service: NestServiceName) throws -> ServiceAddress {
    let flag: String? =
      switch service {
      case .catalog: self.catalogAddress
      case .entitlement: self.entitlementAddress
      case .order: self.orderAddress
      case .settlement: self.settlementAddress
      case .events: self.eventsAddress
      }
    guard let text = flag ?? self.environment["NEST_\(service.rawValue.uppercased())_ADDRESS"], !text.isEmpty else {
      return ServiceAddress(host: "127.0.0.1", port: service.defaultPort)
    }
    do {
      return try ServiceAddress(parsing: text)
    } catch {
      throw ValidationError("\(service.rawValue) address: \(error.description)")
    }
  }

  /// The platform's secret: NEST_AUTH_SECRET, the secret file, or `<data-dir>/secret`.
  func secret() throws -> String {
    if let secret = self.environment["NEST_AUTH_SECRET"], !secret.isEmpty { return secret }
    let file =
      self.authSecretFile ?? self.environment["NEST_AUTH_SECRET_FILE"]
      ?? URL(fileURLWithPath: self.dataDir).appendingPathComponent("secret").path
    guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
      throw ValidationError(
        "no auth secret: set NEST_AUTH_SECRET, pass --auth-secret-file, or run `nestctl up` (which writes \(file))")
    }
    return contents.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// The token to call with: --token, NEST_TOKEN, or none.
  var bearer: String? { self.token ?? self.environment["NEST_TOKEN"].flatMap { $0.isEmpty ? nil : $0 } }

  /// Runs `body` with a client of `service` (over wire protocol v1, or gRPC for a
  /// `grpc://` address), calling with `token` (or the configured one).
  func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String? = nil, _ body: (any ServiceClientSet) async throws -> Result
  ) async throws -> Result {
    let bearer = token ?? self.bearer
    let (clients, _) = try PeerTransport.client(
      try self.address(service), peerName: "nestctl/0.1.0", serviceConfig: ServiceConfig(),
      interceptors: bearer.map { [BearerTokenClientInterceptor(token: $0)] } ?? [])
    return try await clients.connected(body)
  }

  /// A token for `role` and `subject` minted with the platform's secret.
  func mint(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String {
    try await NestTokens(secret: try self.secret()).sign(subject: subject, role: role)
  }

  /// The platform at these addresses, for calls as any party, tokens minted with `secret`
  /// (the configured one when nil).
  func platform(secret: String? = nil) async throws -> RemotePlatform {
    let connections = SharedConnections()
    for service in NestServiceName.allCases {
      try connections.add(service, address: try self.address(service), peerName: "nestctl/0.1.0")
    }
    return RemotePlatform(connections: connections, tokens: try await NestTokens(secret: secret ?? self.secret()))
  }
}

/// The platform over TCP, called as any party with tokens nestctl mints.
struct RemotePlatform: PlatformClients {
  let connections: SharedConnections
  let tokens: NestTokens

  func token(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String {
    try await self.tokens.sign(subject: subject, role: role)
  }

  func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result {
    try await self.connections.withClient(service, token: token, body)
  }

  func close() async { await self.connections.close() }
}

/// What went wrong, as a person reads it: the status code's name, the message, each field.
func describe(_ error: any Error) -> String {
  guard let error = error as? RPCError else { return "error: \(error)" }
  var lines = ["error: \(statusName(error.code)): \(error.message)"]
  for violation in error.fieldViolations { lines.append("  \(violation.field): \(violation.description)") }
  return lines.joined(separator: "\n")
}

/// Runs `body`; an RPC error is printed as `describe` says and exits 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
  do {
    try await body()
  } catch let error as RPCError {
    FileHandle.standardError.write(Data((describe(error) + "\n").utf8))
    throw ExitCode(1)
  }
}
