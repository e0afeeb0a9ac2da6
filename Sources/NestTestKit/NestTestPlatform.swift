// NestTestKit: the platform's real services for the contract tests of the platform and of
// its users, in one of two modes behind one client API (`PlatformClients`):
// - `.inProcess`: the four services in this process over GRPCInProcessTransport: no port, no
//   socket, each with its own temporary database; the quickest.
// - `.processes`: the real executables as child processes on loopback sockets bound before
//   they start, each with its own database: the platform exactly as it is deployed, which
//   also lets a test stop, kill and restart one service.
//
//     let platform = try await NestTestPlatform.start()
//     let marketplace = platform.marketplace
//     let setup = try await marketplace.setUp(.scenario3, parties: .init(.scenario3, run: "t1"))
//     await platform.stop()
import Catalog
import Entitlement
import Events
public import Foundation
import GRPCCore
public import Logging
import MarketplaceOrder
import NIOConcurrencyHelpers
import NestAuth
import NestDomain
@_exported public import NestProto
@_exported public import NestScenarios
@_exported public import NestServiceKit
import NestTransport
import Settlement

public final class NestTestPlatform: PlatformClients, Sendable {
  public enum Mode: Sendable {
    case inProcess
    /// The executables in `executables` (the build's products by default), reaching each
    /// other over `peers` (wire protocol v1, or gRPC over HTTP/2).
    /// `environment`: variables the services get beside the test's (OTEL_* for traces).
    /// `identityProvider`: the services trust its tokens (and hold no secret); the
    /// platform's tokens are signed by it.
    case processes(
      executables: URL = LocalPlatform.productsDirectory, peers: ServiceAddress.WireProtocol = .nest,
      environment: [String: String] = [:], identityProvider: TestIdentityProvider? = nil)
  }

  /// Every service's definition: what NestService runs.
  public static let definitions: [NestServiceName: ServiceDefinition] = [
    .catalog: CatalogService.definition, .entitlement: EntitlementService.definition,
    .order: OrderService.definition, .settlement: SettlementService.definition, .events: EventsService.definition,
  ]

  public let mode: Mode
  /// The secret every token is signed with.
  public let secret: String
  /// The folder of the services' databases (and, as processes, their logs), removed by `stop()`.
  public let directory: URL
  /// As processes: the platform's processes.
  public let processes: LocalPlatform?
  /// Signs the tokens of `token(_:_:)`.
  private let signer: @Sendable (String, Nest_Common_V1_Role) async throws -> String
  private let connections = SharedConnections()
  private let listeners: [NestServiceName: InProcessListener]
  private let running = NIOLockedValueBox<[NestServiceName: (Task<Void, any Error>, ShutdownHandle)]>([:])
  private let settings: [NestServiceName: [String: String]]
  private let logLevel: Logger.Level
  /// The time the services read, when the test controls it.
  public let clock: TestClock?

  private init(
    mode: Mode, secret: String, directory: URL, processes: LocalPlatform?,
    settings: [NestServiceName: [String: String]], logLevel: Logger.Level, clock: TestClock?,
    identityProvider: TestIdentityProvider? = nil
  ) async throws {
    self.mode = mode
    self.secret = secret
    self.directory = directory
    self.processes = processes
    if let identityProvider {
      self.signer = { try await identityProvider.sign(subject: $0, role: $1) }
    } else {
      let tokens = try await NestTokens(secret: secret)
      self.signer = { try await tokens.sign(subject: $0, role: $1) }
    }
    self.settings = settings
    self.logLevel = logLevel
    self.clock = clock
    var listeners: [NestServiceName: InProcessListener] = [:]
    for service in NestServiceName.allCases { listeners[service] = InProcessListener() }
    self.listeners = listeners
  }

  /// Starts `services` (all of them by default) and returns once each answers Health/Check.
  /// Calls to a service not started fail UNAVAILABLE (as processes) or wait (in-process).
  /// - `prepare`: runs on the (empty) data directory before any service starts: to put a
  ///   service's database there (`<service>.sqlite`), say.
  /// - `settings`: per service, settings by key (`"term.interval.ms": "50"` is
  ///   `--term-interval-ms 50`). In-process, `peer.timeout.ms` is 2 s unless set here.
  /// - `clockStartingAt`: the services read their time from a `TestClock` (`clock`) that
  ///   starts there and moves only when the test moves it.
  public static func start(
    _ mode: Mode = .inProcess, services: [NestServiceName] = NestServiceName.allCases, commissionBps: UInt32 = 500,
    settings: [NestServiceName: [String: String]] = [:], clockStartingAt: Int64? = nil,
    logLevel: Logger.Level = .error, prepare: (URL) throws -> Void = { _ in }
  ) async throws -> NestTestPlatform {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try prepare(directory)
    var settings = settings
    settings[.order, default: [:]]["commission.bps"] = "\(commissionBps)"
    // The test's partners (receivers, providers) are on this machine.
    settings[.entitlement, default: [:]]["fulfilment.private.addresses"] =
      settings[.entitlement]?["fulfilment.private.addresses"] ?? "allow"
    let clock = try clockStartingAt.map {
      try TestClock(startingAt: $0, file: directory.appendingPathComponent("clock"))
    }
    switch mode {
    case .inProcess:
      let platform = try await NestTestPlatform(
        mode: mode, secret: "nest-test-secret-\(UUID().uuidString)", directory: directory, processes: nil,
        settings: settings, logLevel: logLevel, clock: clock)
      for service in NestServiceName.allCases {
        platform.connections.add(service, transport: platform.listeners[service]!.connect())
      }
      for service in services { try platform.launch(service) }
      for service in services { try await platform.waitUntilServing(service) }
      return platform
    case .processes(let executables, let peers, let environment, let identityProvider):
      var arguments: [NestServiceName: [String]] = [:]
      for service in NestServiceName.allCases {
        arguments[service] =
          (settings[service] ?? [:]).sorted { $0.key < $1.key }.flatMap {
            ["--" + $0.key.replacingOccurrences(of: ".", with: "-"), $0.value]
          } + (clock.map { ["--test-clock-file", $0.file.path] } ?? [])
      }
      let local = try LocalPlatform(
        .init(
          executables: executables, dataDirectory: directory, ports: .inherited, logLevel: "\(logLevel)",
          extraArguments: arguments, peerProtocol: peers, environment: environment,
          identityProviders: identityProvider.map { provider in
            Dictionary(uniqueKeysWithValues: NestServiceName.allCases.map { ($0, provider.configuration(for: $0)) })
          } ?? [:]))
      let platform = try await NestTestPlatform(
        mode: mode, secret: try local.secret(), directory: directory, processes: local, settings: settings,
        logLevel: logLevel, clock: clock, identityProvider: identityProvider)
      for service in NestServiceName.allCases {
        let address = local.addresses[service]!
        platform.connections.add(
          service,
          transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "nest-test-kit")))
      }
      for service in services { try await local.start(service) }
      return platform
    }
  }

  /// The flows of the platform's parties over this platform.
  public var marketplace: Marketplace { Marketplace(self) }

  /// As processes: where each service listens.
  public var addresses: [NestServiceName: ServiceAddress] { self.processes?.addresses ?? [:] }

  /// As processes: where each service serves gRPC over HTTP/2.
  public var grpcAddresses: [NestServiceName: ServiceAddress] { self.processes?.grpcAddresses ?? [:] }

  /// The configuration an in-process service runs with.
  func configuration(_ service: NestServiceName) -> ServiceConfiguration {
    ServiceConfiguration(
      port: 0, databasePath: self.directory.appendingPathComponent("\(service.rawValue).sqlite").path, peers: [:],
      identity: .sharedSecret(self.secret), logLevel: "\(self.logLevel)",
      // A stopped service's calls wait for this: short, so that tests of outages are quick;
      // a test of load sets `peer.timeout.ms` longer.
      peerTimeout: .milliseconds(self.settings[service]?["peer.timeout.ms"].flatMap { Int64($0) } ?? 2_000),
      settings: SettingsReader(flags: self.settings[service] ?? [:], environment: [:]),
      clock: self.clock?.nestClock ?? .system)
  }

  private func launch(_ service: NestServiceName) throws {
    var logger = Logger(label: "nest-test.\(service.rawValue)")
    logger.logLevel = self.logLevel
    let shutdown = ShutdownHandle()
    let nest = NestService(
      Self.definitions[service]!, configuration: self.configuration(service), listeners: [self.listeners[service]!],
      peers: InProcessPeerConnector(listeners: self.listeners), logger: logger, clock: self.clock?.nestClock ?? .system,
      shutdown: shutdown)
    let task = Task { try await nest.run() }
    self.running.withLockedValue { $0[service] = (task, shutdown) }
  }

  private func waitUntilServing(_ service: NestServiceName) async throws {
    var options = CallOptions.defaults
    // Only a bound for a service that never starts: when every suite starts its platforms at
    // once on a slow machine, a healthy start can take tens of seconds.
    options.timeout = .seconds(120)
    // The connection may be backing off from the service's last life: wait for it to redial.
    options.waitForReady = true
    let status = try await self.connections.withClient(service, token: "") {
      try await $0.health.check(.init(), options: options).status
    }
    guard status == .serving else {
      throw RPCError(code: .unavailable, message: "\(service.identity) did not start serving")
    }
  }

  /// Stops one service gracefully, as SIGTERM would (or, as processes, SIGKILLs it with
  /// `kill`), and waits until it is gone.
  public func stop(_ service: NestServiceName, kill: Bool = false) async {
    if let processes = self.processes {
      processes.stop(service, kill: kill)
      return
    }
    guard let (task, shutdown) = self.running.withLockedValue({ $0.removeValue(forKey: service) }) else { return }
    await shutdown.shutdown()
    _ = await task.result
  }

  /// Starts one service again (as processes; its database is kept) and returns once this
  /// platform's own connection to it answers. In-process, the other
  /// services' connections to it ended with it: restart a service in the processes mode.
  public func start(_ service: NestServiceName) async throws {
    guard let processes = self.processes else {
      throw RPCError(code: .failedPrecondition, message: "restarting one service needs the .processes mode")
    }
    try await processes.start(service)
    try await self.waitUntilServing(service)
  }

  /// Stops every service and removes the databases.
  public func stop() async {
    if let processes = self.processes {
      processes.stop()
    } else {
      // The events service last: the others publish to it until they stop.
      for service in NestServiceName.allCases.filter({ $0 != .events }).reversed() + [.events] {
        await self.stop(service)
      }
    }
    await self.connections.close()
    try? FileManager.default.removeItem(at: self.directory)
  }

  /// A bearer token for `role` and `subject`, signed with the platform's secret (or by its
  /// identity provider).
  public func token(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String {
    try await self.signer(subject, role)
  }

  public func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result {
    try await self.connections.withClient(service, token: token, body)
  }
}
