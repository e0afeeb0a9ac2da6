// Every executable's settings, read one way (swift-configuration): a flag when given
// (`--commission-bps`), else its environment variable (`NEST_COMMISSION_BPS`), else the
// default. Secrets come from a file or the environment, never a built-in default. A value
// that does not parse stops the start with a message naming the setting and the value.
public import ArgumentParser
import Configuration
import Foundation
import GRPCCore
public import NestAuth
public import NestDomain
import NestProto

/// `host:port` of a service, reached over wire protocol v1; `grpc://host:port` over gRPC
/// (HTTP/2, plaintext).
public struct ServiceAddress: Hashable, Sendable, CustomStringConvertible {
  public enum WireProtocol: String, Hashable, Sendable {
    case nest, grpc
  }

  public var host: String
  public var port: Int
  public var `protocol`: WireProtocol

  public init(host: String, port: Int, protocol: WireProtocol = .nest) {
    self.host = host
    self.port = port
    self.protocol = `protocol`
  }

  public init(parsing text: String) throws(ConfigurationError) {
    var rest = Substring(text)
    var wire = WireProtocol.nest
    if rest.hasPrefix("grpc://") {
      wire = .grpc
      rest = rest.dropFirst(7)
    } else if rest.hasPrefix("nest://") {
      rest = rest.dropFirst(7)
    }
    guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
      (1...65535).contains(port), colon != rest.startIndex
    else {
      throw ConfigurationError("\"\(text)\" is not host:port (or grpc://host:port)")
    }
    self.init(host: String(rest[..<colon]), port: port, protocol: wire)
  }

  public var description: String { (self.protocol == .grpc ? "grpc://" : "") + "\(self.host):\(self.port)" }
}

public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// The platform's services, their executables and default ports.
public enum NestServiceName: String, CaseIterable, Sendable, Codable {
  case catalog, entitlement, order, settlement, events

  public var defaultPort: Int {
    switch self {
    case .catalog: 7101
    case .entitlement: 7102
    case .order: 7103
    case .settlement: 7104
    case .events: 7105
    }
  }

  /// The service's identity: its tokens' subject when it calls another service, and the
  /// name the access declarations give it.
  public var identity: String { self == .order ? "marketplace-order" : self.rawValue }

  public var executable: String { "\(self.identity)-service" }

  /// The gRPC service it serves.
  public var rpcServiceName: String {
    switch self {
    case .catalog: Nest_Catalog_V1_CatalogService.descriptor.fullyQualifiedService
    case .entitlement: Nest_Entitlement_V1_EntitlementService.descriptor.fullyQualifiedService
    case .order: Nest_Order_V1_MarketplaceOrderService.descriptor.fullyQualifiedService
    case .settlement: Nest_Settlement_V1_SettlementService.descriptor.fullyQualifiedService
    case .events: Nest_Events_V1_EventsService.descriptor.fullyQualifiedService
    }
  }
}

/// Reads settings by key: `commission.bps` is `--commission-bps` (from the flags the
/// executable parsed) and then `NEST_COMMISSION_BPS`.
public struct SettingsReader: Sendable {
  private let reader: ConfigReader

  /// `flags`: the values of the flags given, by setting key.
  public init(flags: [String: String], environment: [String: String]) {
    var values: [AbsoluteConfigKey: ConfigValue] = [:]
    for (key, value) in flags {
      values[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(.string(value), isSecret: key.contains("secret"))
    }
    self.reader = ConfigReader(providers: [
      InMemoryProvider(name: "flags", values: values),
      EnvironmentVariablesProvider(
        environmentVariables: environment,
        secretsSpecifier: .dynamic { name, _ in name.contains("SECRET") }
      ).prefixKeys(with: "nest"),
    ])
  }

  /// `--commission-bps / NEST_COMMISSION_BPS`: how a message names a setting.
  public static func names(_ key: String) -> String {
    let parts = key.split(separator: ".")
    return "--\(parts.joined(separator: "-")) / NEST_\(parts.joined(separator: "_").uppercased())"
  }

  /// The setting's text, nil when neither flag nor variable is set (an empty variable is
  /// unset).
  public func string(_ key: String) async throws(ConfigurationError) -> String? {
    do {
      let value = try await self.reader.fetchString(forKey: ConfigKey(key), isSecret: key.contains("secret"))
      return value?.isEmpty == true ? nil : value
    } catch {
      throw ConfigurationError("\(Self.names(key)): \(error)")
    }
  }

  /// The setting as a whole number in `range`, or `fallback` when unset.
  public func int(_ key: String, default fallback: Int, in range: ClosedRange<Int>) async throws(ConfigurationError)
    -> Int
  {
    guard let text = try await self.string(key) else { return fallback }
    guard let value = Int(text) else {
      throw ConfigurationError("\(Self.names(key)): \"\(text)\" is not a whole number")
    }
    guard range.contains(value) else {
      throw ConfigurationError(
        "\(Self.names(key)): \(value) is out of range (\(range.lowerBound) to \(range.upperBound))")
    }
    return value
  }

  /// The setting as one of `choices`, or `fallback` when unset.
  public func choice(_ key: String, default fallback: String, among choices: [String]) async throws(ConfigurationError)
    -> String
  {
    guard let text = try await self.string(key) else { return fallback }
    guard choices.contains(text) else {
      throw ConfigurationError("\(Self.names(key)): \"\(text)\" is not one of \(choices.joined(separator: ", "))")
    }
    return text
  }

  /// The setting as `host:port`, or `fallback` when unset.
  public func address(_ key: String, default fallback: ServiceAddress) async throws(ConfigurationError)
    -> ServiceAddress
  {
    guard let text = try await self.string(key) else { return fallback }
    do {
      return try ServiceAddress(parsing: text)
    } catch {
      throw ConfigurationError("\(Self.names(key)): \(error)")
    }
  }
}

/// The flags every service executable takes, as text: their values are read (and checked)
/// through `SettingsReader`, with the environment behind them.
public struct ServiceOptions: ParsableArguments, Sendable {
  @Option(help: "Address to listen on (NEST_HOST; default 127.0.0.1).")
  public var host: String?
  @Option(help: "Port to listen on (NEST_PORT; default: the service's own).")
  public var port: String?
  @Option(help: "Serve this inherited, already listening socket instead of binding (NEST_LISTEN_FD).")
  public var listenFd: String?
  @Option(help: "SQLite database file (NEST_DATABASE).")
  public var database: String?
  @Option(help: "host:port of catalog (NEST_CATALOG_ADDRESS).")
  public var catalogAddress: String?
  @Option(help: "host:port of entitlement (NEST_ENTITLEMENT_ADDRESS).")
  public var entitlementAddress: String?
  @Option(help: "host:port of marketplace-order (NEST_ORDER_ADDRESS).")
  public var orderAddress: String?
  @Option(help: "host:port of settlement (NEST_SETTLEMENT_ADDRESS).")
  public var settlementAddress: String?
  @Option(help: "host:port of events (NEST_EVENTS_ADDRESS).")
  public var eventsAddress: String?
  @Option(help: "File holding the auth secret (NEST_AUTH_SECRET_FILE; or the secret in NEST_AUTH_SECRET).")
  public var authSecretFile: String?
  @Option(
    help:
      "JWKS file of the identity provider: tokens are verified against its ES256/EdDSA keys, and no secret is held (NEST_AUTH_JWKS_FILE)."
  )
  public var authJwksFile: String?
  @Option(help: "Issuer (iss) of the identity provider's tokens (NEST_AUTH_ISSUER; required with --auth-jwks-file).")
  public var authIssuer: String?
  @Option(help: "Audience (aud) the identity provider's tokens must name (NEST_AUTH_AUDIENCE; default nest).")
  public var authAudience: String?
  @Option(help: "PEM P-256 or Ed25519 private key this service signs its calls with (NEST_SERVICE_KEY_FILE).")
  public var serviceKeyFile: String?
  @Option(help: "Its key id in the JWKS, service:<identity>:<version> (NEST_SERVICE_KEY_ID).")
  public var serviceKeyId: String?
  @Option(help: "trace, debug, info, notice, warning, error or critical (NEST_LOG_LEVEL; default info).")
  public var logLevel: String?
  @Option(help: "text or json: how log lines are written to standard error (NEST_LOG_FORMAT; default text).")
  public var logFormat: String?
  @Option(help: "Connections open at once; more are refused RESOURCE_EXHAUSTED (NEST_MAX_CONNECTIONS; default 1024).")
  public var maxConnections: String?
  @Option(help: "Timeout of a call to another service, in milliseconds (NEST_PEER_TIMEOUT_MS; default 10000).")
  public var peerTimeoutMs: String?
  @Option(
    help: "For tests only: the service's clock reads the time (Unix ms) from this file (NEST_TEST_CLOCK_FILE).")
  public var testClockFile: String?
  @Option(
    help: "Port of the gRPC (HTTP/2) listener, 0 for any, off for none (NEST_GRPC_PORT; default: the port + 100).")
  public var grpcPort: String?
  @Option(help: "Serve gRPC on this inherited, already listening socket instead (NEST_GRPC_LISTEN_FD).")
  public var grpcListenFd: String?
  @Option(help: "PEM certificate chain: the gRPC port speaks TLS (NEST_TLS_CERT_FILE; with --tls-key-file).")
  public var tlsCertFile: String?
  @Option(help: "PEM private key of --tls-cert-file (NEST_TLS_KEY_FILE).")
  public var tlsKeyFile: String?
  @Option(
    help:
      "Port of the admin HTTP listener (/metrics, /healthz, /readyz), 0 for any, off for none (NEST_ADMIN_PORT; default: the port + 200)."
  )
  public var adminPort: String?
  @Option(help: "Serve the admin port on this inherited, already listening socket instead (NEST_ADMIN_LISTEN_FD).")
  public var adminListenFd: String?
  @Flag(
    help:
      "Stop, as on SIGTERM, when standard input reaches end of file: the process that started this one holds the pipe's other end, and its end takes the service with it (NEST_EXIT_WITH_STDIN=true)."
  )
  public var exitWithStdin = false

  public init() {}

  /// The flags given, by setting key.
  public var flags: [String: String] {
    let pairs: [(String, String?)] = [
      ("host", self.host), ("port", self.port), ("listen.fd", self.listenFd), ("database", self.database),
      ("catalog.address", self.catalogAddress), ("entitlement.address", self.entitlementAddress),
      ("order.address", self.orderAddress), ("settlement.address", self.settlementAddress),
      ("events.address", self.eventsAddress),
      ("auth.secret.file", self.authSecretFile), ("auth.jwks.file", self.authJwksFile),
      ("auth.issuer", self.authIssuer), ("auth.audience", self.authAudience), ("service.key.file", self.serviceKeyFile),
      ("service.key.id", self.serviceKeyId), ("log.level", self.logLevel), ("log.format", self.logFormat),
      ("max.connections", self.maxConnections), ("peer.timeout.ms", self.peerTimeoutMs),
      ("test.clock.file", self.testClockFile), ("grpc.port", self.grpcPort), ("grpc.listen.fd", self.grpcListenFd),
      ("tls.cert.file", self.tlsCertFile), ("tls.key.file", self.tlsKeyFile), ("admin.port", self.adminPort),
      ("admin.listen.fd", self.adminListenFd), ("exit.with.stdin", self.exitWithStdin ? "true" : nil),
    ]
    return Dictionary(uniqueKeysWithValues: pairs.compactMap { key, value in value.map { (key, $0) } })
  }
}

/// A service's settings after flags, environment and defaults.
public struct ServiceConfiguration: Sendable {
  public var host: String
  public var port: Int
  /// An inherited listening socket to serve instead of binding host:port.
  public var listeningSocket: CInt?
  public var databasePath: String
  public var peers: [NestServiceName: ServiceAddress]
  /// Whose tokens it trusts, and how it signs its own.
  public var identity: Identity
  public var logLevel: String
  /// How the executable writes its log lines.
  public var logFormat: LogFormat
  /// Connections the server keeps open at once.
  public var maxConnections: Int
  /// How long a call to another service may take.
  public var peerTimeout: Duration
  /// The rest of the settings, for what a service reads of its own (`commission.bps`).
  public var settings: SettingsReader
  /// The time: the system's, or for tests a file's (`--test-clock-file`).
  public var clock: NestClock
  /// The gRPC (HTTP/2) listener: nil serves none.
  public var grpc: HTTP2Listener.Address?
  /// PEM files for TLS on the gRPC port; nil is plaintext.
  public var tls: HTTP2Listener.TLSFiles?
  /// The admin HTTP listener (metrics, health, readiness): nil serves none.
  public var admin: AdminServer.Address?
  /// Stop when standard input reaches end of file (`--exit-with-stdin`).
  public var exitWithStdin: Bool

  public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

  public init(
    host: String = "127.0.0.1", port: Int, listeningSocket: CInt? = nil, databasePath: String,
    peers: [NestServiceName: ServiceAddress], identity: Identity, logLevel: String = "info",
    logFormat: LogFormat = .text,
    maxConnections: Int = 1024, peerTimeout: Duration = .seconds(10),
    settings: SettingsReader = SettingsReader(flags: [:], environment: [:]), clock: NestClock = .system,
    grpc: HTTP2Listener.Address? = nil, tls: HTTP2Listener.TLSFiles? = nil, admin: AdminServer.Address? = nil,
    exitWithStdin: Bool = false
  ) {
    self.host = host
    self.port = port
    self.listeningSocket = listeningSocket
    self.databasePath = databasePath
    self.peers = peers
    self.identity = identity
    self.logLevel = logLevel
    self.logFormat = logFormat
    self.maxConnections = maxConnections
    self.peerTimeout = peerTimeout
    self.settings = settings
    self.clock = clock
    self.grpc = grpc
    self.tls = tls
    self.admin = admin
    self.exitWithStdin = exitWithStdin
  }

  /// Reads every setting of `service` from `flags` (by key) and `environment`.
  public static func load(
    _ service: NestServiceName, flags: [String: String], environment: [String: String]
  ) async throws(ConfigurationError) -> ServiceConfiguration {
    let settings = SettingsReader(flags: flags, environment: environment)
    let port = try await settings.int("port", default: service.defaultPort, in: 0...65535)
    let socket =
      try await settings.string("listen.fd") == nil
      ? nil : CInt(try await settings.int("listen.fd", default: 0, in: 3...65535))
    guard let database = try await settings.string("database") else {
      throw ConfigurationError("no database: pass --database PATH or set NEST_DATABASE")
    }
    var peers: [NestServiceName: ServiceAddress] = [:]
    for peer in NestServiceName.allCases {
      peers[peer] = try await settings.address(
        "\(peer.rawValue).address", default: ServiceAddress(host: "127.0.0.1", port: peer.defaultPort))
    }
    let identity = try await Identity.load(service, settings)
    let host = try await settings.string("host") ?? "127.0.0.1"
    var grpc: HTTP2Listener.Address? = nil
    if try await settings.string("grpc.listen.fd") != nil {
      grpc = .socket(CInt(try await settings.int("grpc.listen.fd", default: 0, in: 3...65535)))
    } else if try await settings.string("grpc.port") != "off" {
      // By default the port + 100; any free port when the port itself is any (0) or inherited.
      let fallback = port == 0 || socket != nil ? 0 : port + 100
      grpc = .host(host, port: try await settings.int("grpc.port", default: fallback, in: 0...65535))
    }
    var admin: AdminServer.Address? = nil
    if try await settings.string("admin.listen.fd") != nil {
      admin = .socket(CInt(try await settings.int("admin.listen.fd", default: 0, in: 3...65535)))
    } else if try await settings.string("admin.port") != "off" {
      let fallback = port == 0 || socket != nil ? 0 : port + 200
      admin = .host(host, port: try await settings.int("admin.port", default: fallback, in: 0...65535))
    }
    var tls: HTTP2Listener.TLSFiles? = nil
    switch (try await settings.string("tls.cert.file"), try await settings.string("tls.key.file")) {
    case (nil, nil): break
    case (let chain?, let key?):
      for (key, file) in [("tls.cert.file", chain), ("tls.key.file", key)]
      where !FileManager.default.isReadableFile(atPath: file) {
        throw ConfigurationError("\(SettingsReader.names(key)): cannot read \(file)")
      }
      tls = HTTP2Listener.TLSFiles(certificateChain: chain, privateKey: key)
    default:
      throw ConfigurationError("--tls-cert-file and --tls-key-file go together: give both or neither")
    }
    return ServiceConfiguration(
      host: host, port: port, listeningSocket: socket,
      databasePath: database, peers: peers, identity: identity,
      logLevel: try await settings.choice("log.level", default: "info", among: Self.logLevels),
      logFormat: LogFormat(
        rawValue: try await settings.choice("log.format", default: "text", among: LogFormat.allCases.map(\.rawValue)))!,
      maxConnections: try await settings.int("max.connections", default: 1024, in: 1...1_000_000),
      peerTimeout: .milliseconds(try await settings.int("peer.timeout.ms", default: 10_000, in: 1...3_600_000)),
      settings: settings, clock: try await settings.string("test.clock.file").map(NestClock.file) ?? .system,
      grpc: grpc, tls: tls, admin: admin,
      exitWithStdin: try await settings.choice("exit.with.stdin", default: "false", among: ["true", "false"]) == "true")
  }

  /// From an executable's parsed flags and the process's environment; a problem is a usage
  /// error (exit code 64) that names the setting.
  public static func fromCommandLine(
    _ service: NestServiceName, options: ServiceOptions, extraFlags: [String: String] = [:]
  ) async throws -> ServiceConfiguration {
    do {
      return try await Self.load(
        service, flags: options.flags.merging(extraFlags) { $1 },
        environment: ProcessInfo.processInfo.environment)
    } catch {
      throw ValidationError(error.description)
    }
  }
}

/// Whose tokens a service trusts, and what it signs its own calls with.
public enum Identity: Sendable, Hashable {
  /// One HS256 secret shared by the services and their callers: for local use and the demo.
  case sharedSecret(String)
  /// An identity provider's tokens, verified against its JWKS; the service signs its own
  /// calls with its service key and holds no key that can sign any other token.
  case identityProvider(IdentityProvider)

  public struct IdentityProvider: Sendable, Hashable {
    public var jwksFile: String
    public var issuer: String
    public var audience: String
    public var serviceKeyFile: String
    public var serviceKeyID: String

    public init(jwksFile: String, issuer: String, audience: String, serviceKeyFile: String, serviceKeyID: String) {
      self.jwksFile = jwksFile
      self.issuer = issuer
      self.audience = audience
      self.serviceKeyFile = serviceKeyFile
      self.serviceKeyID = serviceKeyID
    }
  }

  /// The tokens of `service` under this identity: what it verifies and what it signs.
  public func tokens(for service: NestServiceName) async throws -> NestTokens {
    switch self {
    case .sharedSecret(let secret):
      return try await NestTokens(secret: secret)
    case .identityProvider(let provider):
      let pem: String
      do {
        pem = try String(contentsOfFile: provider.serviceKeyFile, encoding: .utf8)
      } catch {
        throw ConfigurationError("\(SettingsReader.names("service.key.file")): cannot read \(provider.serviceKeyFile)")
      }
      return NestTokens(
        jwks: try await JWKSFile(path: provider.jwksFile), issuer: provider.issuer, audience: provider.audience,
        serviceKey: try await ServiceSigningKey(pem: pem, keyID: provider.serviceKeyID))
    }
  }

  static func load(_ service: NestServiceName, _ settings: SettingsReader) async throws(ConfigurationError) -> Identity
  {
    let secretFile = try await settings.string("auth.secret.file")
    let secretValue = try await settings.string("auth.secret")
    if let jwks = try await settings.string("auth.jwks.file") {
      guard secretFile == nil && secretValue == nil else {
        throw ConfigurationError(
          "\(SettingsReader.names("auth.jwks.file")) and an auth secret exclude each other: a service that verifies the identity provider's tokens holds no secret that signs them"
        )
      }
      guard FileManager.default.isReadableFile(atPath: jwks) else {
        throw ConfigurationError("\(SettingsReader.names("auth.jwks.file")): cannot read \(jwks)")
      }
      guard let issuer = try await settings.string("auth.issuer"), !issuer.isEmpty else {
        throw ConfigurationError("\(SettingsReader.names("auth.issuer")) is required with --auth-jwks-file")
      }
      guard let keyFile = try await settings.string("service.key.file"),
        let keyID = try await settings.string("service.key.id")
      else {
        throw ConfigurationError(
          "--service-key-file and --service-key-id are required with --auth-jwks-file: the service signs its calls to the others with its own key"
        )
      }
      guard ServiceSigningKey.service(ofKeyID: keyID) == service.identity else {
        throw ConfigurationError(
          "\(SettingsReader.names("service.key.id")): \"\(keyID)\" is not a key id of \(service.identity) (service:\(service.identity):<version>)"
        )
      }
      return .identityProvider(
        IdentityProvider(
          jwksFile: jwks, issuer: issuer, audience: try await settings.string("auth.audience") ?? "nest",
          serviceKeyFile: keyFile, serviceKeyID: keyID))
    }
    if let file = secretFile {
      do {
        return .sharedSecret(
          try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
      } catch {
        throw ConfigurationError("\(SettingsReader.names("auth.secret.file")): cannot read \(file)")
      }
    }
    if let value = secretValue { return .sharedSecret(value) }
    throw ConfigurationError(
      "no auth secret: set NEST_AUTH_SECRET or pass --auth-secret-file (or --auth-jwks-file for an identity provider)")
  }
}
