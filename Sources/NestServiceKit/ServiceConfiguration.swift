// Every executable's settings (DESIGN section 7): a flag when given, else its NEST_*
// environment variable, else the default. A missing secret is a start-up error, never a
// built-in default.
public import ArgumentParser
import Foundation

/// `host:port` of a service.
public struct ServiceAddress: Hashable, Sendable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  public init(parsing text: String) throws(ConfigurationError) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (1...65535).contains(port), colon != text.startIndex
    else {
      throw ConfigurationError("\"\(text)\" is not host:port")
    }
    self.init(host: String(text[..<colon]), port: port)
  }

  public var description: String { "\(self.host):\(self.port)" }
}

public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// The four services and their default ports (DESIGN section 2).
public enum NestServiceName: String, CaseIterable, Sendable {
  case catalog, entitlement, order, settlement

  public var defaultPort: Int {
    switch self {
    case .catalog: 7101
    case .entitlement: 7102
    case .order: 7103
    case .settlement: 7104
    }
  }
}

/// The flags every service executable takes; `resolve` fills the gaps from the environment.
public struct ServiceOptions: ParsableArguments, Sendable {
  @Option(help: "Address to listen on (NEST_HOST; default 127.0.0.1).")
  public var host: String?
  @Option(help: "Port to listen on (NEST_PORT; default: the service's own).")
  public var port: Int?
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
  @Option(help: "File holding the auth secret (NEST_AUTH_SECRET_FILE; or the secret in NEST_AUTH_SECRET).")
  public var authSecretFile: String?
  @Option(help: "trace, debug, info, notice, warning, error or critical (NEST_LOG_LEVEL; default info).")
  public var logLevel: String?
  @Option(help: "Connections open at once; more are refused RESOURCE_EXHAUSTED (NEST_MAX_CONNECTIONS; default 1024).")
  public var maxConnections: Int?

  public init() {}
}

/// Settings after flags, environment and defaults.
public struct ServiceConfiguration: Sendable {
  public var host: String
  public var port: Int
  public var databasePath: String
  public var peers: [NestServiceName: ServiceAddress]
  public var authSecret: String
  public var logLevel: String
  /// Connections the server keeps open at once.
  public var maxConnections: Int

  public init(
    host: String, port: Int, databasePath: String, peers: [NestServiceName: ServiceAddress], authSecret: String,
    logLevel: String, maxConnections: Int = 1024
  ) {
    self.maxConnections = maxConnections
    self.host = host
    self.port = port
    self.databasePath = databasePath
    self.peers = peers
    self.authSecret = authSecret
    self.logLevel = logLevel
  }

  /// `environment` is ProcessInfo's in an executable, a dictionary in tests.
  public static func resolve(
    _ options: ServiceOptions, service: NestServiceName, environment: [String: String]
  ) throws(ConfigurationError) -> ServiceConfiguration {
    func value(_ flag: String?, _ variable: String) -> String? {
      flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
    }
    let port: Int
    if let flag = options.port {
      port = flag
    } else if let text = environment["NEST_PORT"], !text.isEmpty {
      guard let parsed = Int(text) else { throw ConfigurationError("NEST_PORT \"\(text)\" is not a port") }
      port = parsed
    } else {
      port = service.defaultPort
    }
    guard (0...65535).contains(port) else { throw ConfigurationError("port \(port) is out of range") }
    guard let database = value(options.database, "NEST_DATABASE") else {
      throw ConfigurationError("no database: pass --database PATH or set NEST_DATABASE")
    }
    var peers: [NestServiceName: ServiceAddress] = [:]
    let peerFlags: [(NestServiceName, String?)] = [
      (.catalog, options.catalogAddress), (.entitlement, options.entitlementAddress),
      (.order, options.orderAddress), (.settlement, options.settlementAddress),
    ]
    for (peer, flag) in peerFlags {
      let variable = "NEST_\(peer.rawValue.uppercased())_ADDRESS"
      peers[peer] =
        try value(flag, variable).map { text throws(ConfigurationError) in try ServiceAddress(parsing: text) }
        ?? ServiceAddress(host: "127.0.0.1", port: peer.defaultPort)
    }
    let secret: String
    if let file = value(options.authSecretFile, "NEST_AUTH_SECRET_FILE") {
      guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
        throw ConfigurationError("cannot read the auth secret file \(file)")
      }
      secret = contents.trimmingCharacters(in: .whitespacesAndNewlines)
    } else if let variable = environment["NEST_AUTH_SECRET"], !variable.isEmpty {
      secret = variable
    } else {
      throw ConfigurationError("no auth secret: set NEST_AUTH_SECRET or pass --auth-secret-file")
    }
    var maxConnections = options.maxConnections ?? 1024
    if options.maxConnections == nil, let text = environment["NEST_MAX_CONNECTIONS"], !text.isEmpty {
      guard let parsed = Int(text) else { throw ConfigurationError("NEST_MAX_CONNECTIONS \"\(text)\" is not a number") }
      maxConnections = parsed
    }
    guard maxConnections >= 1 else { throw ConfigurationError("the connection limit must be at least 1") }
    return ServiceConfiguration(
      host: value(options.host, "NEST_HOST") ?? "127.0.0.1", port: port, databasePath: database, peers: peers,
      authSecret: secret, logLevel: value(options.logLevel, "NEST_LOG_LEVEL") ?? "info", maxConnections: maxConnections)
  }
}
