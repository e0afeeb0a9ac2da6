// One way to run a service: a `Service` (ServiceLifecycle) built from a ServiceDefinition,
// that opens and migrates the database, connects the peers, builds the RPC services and
// background work, and runs peer clients, background work and server in one ServiceGroup:
// started in that order, stopped in reverse (the server drains its calls first). How it
// listens and how it reaches its peers are parts (`ServiceListener`, `PeerConnector`): TCP
// for the executables, in-process for tests. The executables, NestTestKit, nestctl and
// nest-bench all run services through it.
import Foundation
public import GRPCCore
import GRPCInProcessTransport
public import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NestAuth
public import NestDomain
import NestProto
public import NestTransport
public import Prometheus
public import ServiceLifecycle
import Tracing
import UnixSignals

/// Where a service accepts calls.
public protocol ServiceListener: Sendable {
  /// The long-running part that serves `services` through `interceptors` until graceful
  /// shutdown.
  func server(services: [any RegistrableRPCService], interceptors: [any ServerInterceptor], logger: Logger)
    -> any Service
}

/// How a service reaches a peer.
public protocol PeerConnector: Sendable {
  /// Adds a client of `peer` to `peers` and returns the part that runs its connections.
  func connect(
    to peer: NestServiceName, caller: NestServiceName, interceptors: [any ClientInterceptor],
    serviceConfig: ServiceConfig, into peers: inout PeerClients
  ) throws -> any Service
}

public struct NestService: Service {
  public let definition: ServiceDefinition
  public let configuration: ServiceConfiguration
  let listeners: [any ServiceListener]
  let connector: any PeerConnector
  let logger: Logger
  let clock: NestClock
  let shutdown: ShutdownHandle?
  /// Where the metrics the admin port serves are kept; nil serves no admin port.
  let metrics: PrometheusCollectorRegistry?

  public init(
    _ definition: ServiceDefinition, configuration: ServiceConfiguration, listeners: [any ServiceListener],
    peers: any PeerConnector, logger: Logger, clock: NestClock = .system, shutdown: ShutdownHandle? = nil,
    metrics: PrometheusCollectorRegistry? = nil
  ) {
    self.metrics = metrics
    self.definition = definition
    self.configuration = configuration
    self.listeners = listeners
    self.connector = peers
    self.logger = logger
    self.clock = clock
    self.shutdown = shutdown
  }

  public func run() async throws {
    let definition = self.definition
    let database = try ServiceDatabase.open(path: self.configuration.databasePath, migrations: definition.migrations)
    let tokens = try await self.configuration.identity.tokens(for: definition.name)
    let serviceTokens = ServiceTokens(tokens: tokens, subject: definition.name.identity)
    var peers = PeerClients()
    let clients = try definition.peers.map { peer in
      try self.connector.connect(
        to: peer, caller: definition.name,
        interceptors: [TracingClientInterceptor(), BearerTokenClientInterceptor { try await serviceTokens.token() }],
        serviceConfig: PeerCallPolicy.serviceConfig(timeout: self.configuration.peerTimeout), into: &peers)
    }
    let parts = try await definition.build(
      ServiceEnvironment(
        configuration: self.configuration, database: database, peers: peers, logger: self.logger, clock: self.clock))
    var background = parts.background
    if definition.peers.contains(.events) {
      // What the service records as events, sent on to the events service.
      background.append(
        EventPublisher(
          database: database, events: try peers.events(), source: definition.name.identity, logger: self.logger))
    }
    let served = [definition.name.rpcServiceName, "nest.health.v1.Health", "grpc.health.v1.Health"]
    let state = ServingState(services: served)
    let reflected = served + ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
    let servers = self.listeners.map { listener in
      let reflection = ReflectionService(services: reflected)
      return listener.server(
        services: parts.rpcServices + [
          HealthService(services: [definition.name.rpcServiceName]),
          StandardHealthService(state: state),
          reflection, ReflectionV1AlphaService(reflection),
        ],
        interceptors: [
          TracingServerInterceptor(), CallObserverServerInterceptor(logger: self.logger),
          ErrorMappingInterceptor(logger: self.logger),
          AccessInterceptor(tokens: tokens),
        ], logger: self.logger)
    }
    // Last, so that it hears of graceful shutdown first: health says NOT_SERVING before the
    // servers start draining.
    let drain = DrainOnShutdown(state: state)
    // The admin port answers /readyz 503 while the servers drain: it stops after them.
    var admin: [any Service] = []
    if let address = self.configuration.admin, let metrics = self.metrics {
      let logger = self.logger
      admin.append(
        AdminServer(address, state: state, registry: metrics, announce: true) { authorization in
          guard let header = authorization, header.hasPrefix("Bearer ") else {
            return .unauthenticated("missing authorization: Bearer <operator token>")
          }
          let caller: Principal
          do {
            caller = try await tokens.verify(String(header.dropFirst("Bearer ".count)))
          } catch {
            return .unauthenticated("invalid token: \(error)")
          }
          guard caller.role == .operator else { return .permissionDenied("backups are the operator's to take") }
          do {
            let bytes = try ServiceDatabase.backupBytes(database)
            logger.notice("backup taken", metadata: ["by": "\(caller.subject)", "bytes": "\(bytes.count)"])
            return .database(bytes)
          } catch {
            logger.error("backup failed", metadata: ["error": "\(error)"])
            return .failed("backup failed: \(error)")
          }
        })
    }
    let group = ServiceGroup(
      configuration: .init(
        services: (clients + background + admin + servers + [drain]).map { .init(service: $0) },
        logger: self.logger))
    self.shutdown?.attach(group)
    try await group.run()
  }

  /// Runs `definition` as its executable does: listening on the configured address (or the
  /// inherited socket), reaching its peers over TCP, until SIGTERM or SIGINT.
  public static func runExecutable(_ definition: ServiceDefinition, configuration: ServiceConfiguration) async throws {
    Self.capMallocArenas()
    // Spans go over OTLP when the OTEL_* variables say so; log lines carry their ids.
    let environment = ProcessInfo.processInfo.environment
    let tracing = try TraceExport.backend(serviceName: definition.name.executable, environment: environment)
    if let tracing { InstrumentationSystem.bootstrap(tracing.tracer) }
    configuration.logFormat.bootstrap(metadataProvider: tracing == nil ? nil : TraceExport.loggingMetadata)
    let logger = configuration.logger(definition.name.executable)
    var listeners: [any ServiceListener] = [
      TCPListener(
        .init(
          host: configuration.host, port: configuration.port, peerName: "\(definition.name.executable)/0.1.0",
          maxConnections: configuration.maxConnections, listeningSocket: configuration.listeningSocket),
        announce: true)
    ]
    if let grpc = configuration.grpc {
      listeners.append(HTTP2Listener(grpc, tls: configuration.tls, announce: true))
    }
    // Every metric the process records goes to the admin port's /metrics.
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    let service = NestService(
      definition, configuration: configuration, listeners: listeners,
      peers: TCPPeerConnector(addresses: configuration.peers), logger: logger, clock: configuration.clock,
      metrics: registry)
    // The exporter stops after the service, so that the last spans are sent.
    let exporter = tracing.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0.service)] } ?? []
    let watch =
      configuration.exitWithStdin
      ? [
        ServiceGroupConfiguration.ServiceConfiguration(
          service: StandardInputWatch(logger: logger), successTerminationBehavior: .gracefullyShutdownGroup)
      ]
      : []
    try await ServiceGroup(
      configuration: .init(
        services: exporter + [.init(service: service)] + watch, gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger)
    ).run()
  }
}

extension ServiceConfiguration {
  /// A logger for the service at the configured level.
  public func logger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: self.logLevel) ?? .info
    return logger
  }
}

// MARK: TCP (wire protocol v1)

/// Serves on a NestServerTransport; with `announce`, prints `listening on HOST:PORT` once
/// bound (what process supervisors and tests wait for).
public struct TCPListener: ServiceListener {
  let configuration: NestServerTransport.Configuration
  let announce: Bool

  public init(_ configuration: NestServerTransport.Configuration, announce: Bool = false) {
    self.configuration = configuration
    self.announce = announce
  }

  public func server(services: [any RegistrableRPCService], interceptors: [any ServerInterceptor], logger: Logger)
    -> any Service
  {
    let transport = NestServerTransport(self.configuration, logger: logger)
    let server = GRPCServer(transport: transport, services: services, interceptors: interceptors)
    return ServerRunner(server: server) {
      guard self.announce else { return }
      let address = try await transport.listeningAddress()
      print("listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
      fflush(nil)
    }
  }
}

/// Reaches each peer over wire protocol v1 at its configured address.
public struct TCPPeerConnector: PeerConnector {
  let addresses: [NestServiceName: ServiceAddress]

  public init(addresses: [NestServiceName: ServiceAddress]) {
    self.addresses = addresses
  }

  public func connect(
    to peer: NestServiceName, caller: NestServiceName, interceptors: [any ClientInterceptor],
    serviceConfig: ServiceConfig, into peers: inout PeerClients
  ) throws -> any Service {
    let address = self.addresses[peer] ?? ServiceAddress(host: "127.0.0.1", port: peer.defaultPort)
    let (clients, runner) = try PeerTransport.client(
      address, peerName: "\(caller.executable)/0.1.0", serviceConfig: serviceConfig, interceptors: interceptors)
    peers.add(peer, clients)
    return runner
  }
}

// MARK: In-process (GRPCInProcessTransport)

/// Serves each in-process connection made with `connect()`: no port, no socket.
public final class InProcessListener: ServiceListener, Sendable {
  private let pending: AsyncStream<InProcessTransport.Server>
  private let continuation: AsyncStream<InProcessTransport.Server>.Continuation

  public init() {
    (self.pending, self.continuation) = AsyncStream.makeStream()
  }

  /// A client transport connected to this service; its calls wait until the service runs.
  public func connect(serviceConfig: ServiceConfig = ServiceConfig()) -> InProcessTransport.Client {
    let pair = InProcessTransport(serviceConfig: serviceConfig)
    self.continuation.yield(pair.server)
    return pair.client
  }

  public func server(services: [any RegistrableRPCService], interceptors: [any ServerInterceptor], logger: Logger)
    -> any Service
  {
    InProcessServers(
      pending: self.pending, continuation: self.continuation, services: services, interceptors: interceptors)
  }
}

/// Its description is what ServiceLifecycle names it by: short, rather than every RPC
/// service and interceptor (the access table among them) reflected into text at each start.
private struct InProcessServers: Service, CustomStringConvertible {
  var description: String { "InProcessServers" }

  let pending: AsyncStream<InProcessTransport.Server>
  let continuation: AsyncStream<InProcessTransport.Server>.Continuation
  let services: [any RegistrableRPCService]
  let interceptors: [any ServerInterceptor]

  func run() async {
    let servers = NIOLockedValueBox<[GRPCServer<InProcessTransport.Server>]>([])
    await withGracefulShutdownHandler {
      await withDiscardingTaskGroup { group in
        for await transport in self.pending {
          let server = GRPCServer(transport: transport, services: self.services, interceptors: self.interceptors)
          servers.withLockedValue { $0.append(server) }
          // One in-process connection's server: however it ends, only that connection ends
          // (the client sees it closed); the others and the service go on.
          group.addTask { try? await server.serve() }
        }
      }
    } onGracefulShutdown: {
      self.continuation.finish()
      for server in servers.withLockedValue({ $0 }) { server.beginGracefulShutdown() }
    }
  }
}

/// Reaches each peer through its in-process listener.
public struct InProcessPeerConnector: PeerConnector {
  let listeners: [NestServiceName: InProcessListener]

  public init(listeners: [NestServiceName: InProcessListener]) {
    self.listeners = listeners
  }

  public func connect(
    to peer: NestServiceName, caller: NestServiceName, interceptors: [any ClientInterceptor],
    serviceConfig: ServiceConfig, into peers: inout PeerClients
  ) throws -> any Service {
    let client = GRPCClient(
      transport: self.listeners[peer]!.connect(serviceConfig: serviceConfig), interceptors: interceptors)
    peers.add(peer, client)
    return ClientRunner(client: client)
  }
}

// MARK: Running servers and clients as services

/// A GRPCServer until graceful shutdown, and `started` once it serves.
struct ServerRunner<Transport: ServerTransport>: Service {
  let server: GRPCServer<Transport>
  let started: @Sendable () async throws -> Void

  func run() async throws {
    try await withGracefulShutdownHandler {
      try await withThrowingTaskGroup { group in
        group.addTask { try await self.server.serve() }
        try await self.started()
        try await group.waitForAll()
      }
    } onGracefulShutdown: {
      self.server.beginGracefulShutdown()
    }
  }
}

/// Tells the health services the server is draining, at the start of graceful shutdown.
struct DrainOnShutdown: Service {
  let state: ServingState

  func run() async throws {
    // Returns when the service group shuts down gracefully (throws when it is cancelled).
    try await gracefulShutdown()
    self.state.drain()
  }
}

/// A GRPCClient's connections until graceful shutdown.
public struct ClientRunner<Transport: ClientTransport>: Service {
  let client: GRPCClient<Transport>

  public init(client: GRPCClient<Transport>) {
    self.client = client
  }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.client.runConnections()
    } onGracefulShutdown: {
      self.client.beginGracefulShutdown()
    }
  }
}

/// Stops a running service gracefully from the same process, as SIGTERM would.
public final class ShutdownHandle: Sendable {
  private let group = NIOLockedValueBox<ServiceGroup?>(nil)
  private let requested = NIOLockedValueBox(false)

  public init() {}

  func attach(_ group: ServiceGroup) {
    self.group.withLockedValue { $0 = group }
    if self.requested.withLockedValue({ $0 }) { Task { await group.triggerGracefulShutdown() } }
  }

  /// Begins the graceful shutdown (at once, or as soon as the service has started).
  public func shutdown() async {
    self.requested.withLockedValue { $0 = true }
    if let group = self.group.withLockedValue({ $0 }) { await group.triggerGracefulShutdown() }
  }
}

extension NestService {
  /// glibc gives each thread that allocates while others do an arena of its own, up to eight
  /// per core, and memory freed in one is not reused by another: under load that was a tenth
  /// of a service's resident memory. Two arenas are enough for a service's few busy threads
  /// (measured: marketplace-order's peak RSS 79 MiB instead of 82-85 at 100 orders/s, CPU per
  /// order no higher). `MALLOC_ARENA_MAX` (or glibc's arena_max tunable) in the environment
  /// still decides when it is set.
  static func capMallocArenas() {
    #if canImport(Glibc)
      // mallopt is in malloc.h, which Swift's Glibc module leaves out; M_ARENA_MAX is -8.
      let environment = ProcessInfo.processInfo.environment
      guard environment["MALLOC_ARENA_MAX"] == nil,
        environment["GLIBC_TUNABLES"]?.contains("glibc.malloc.arena_max") != true,
        let mallopt = CLibrary.function("mallopt", as: (@convention(c) (CInt, CInt) -> CInt).self)
      else { return }
      _ = mallopt(-8, 2)
    #endif
  }
}

/// Ends when standard input reaches end of file, or at a graceful shutdown: with
/// `--exit-with-stdin` the group shuts down gracefully when it ends, so that a service started
/// by a process holding the other end of a pipe (LocalPlatform: nestctl up, the tests, the
/// benchmarks) stops when that process ends however it ends, SIGKILL or a crash included,
/// instead of serving on with no one to stop it.
struct StandardInputWatch: Service {
  /// How long a graceful stop may take once standard input has ended.
  static let deadlineSeconds = 30
  let logger: Logger

  func run() async throws {
    let ended = AsyncStream<Void> { continuation in
      // A blocking read on a thread of its own: it never occupies the concurrency pool, and
      // the process exiting ends it.
      Thread.detachNewThread {
        var byte: UInt8 = 0
        while true {
          let count = read(0, &byte, 1)
          if count == 0 || (count < 0 && errno != EINTR) { break }
        }
        continuation.yield()
        continuation.finish()
        // The launcher is gone. A service whose cooperative threads are all blocked cannot stop
        // gracefully (one did, deadlocked on its database readers, and served on for minutes
        // after its benchmark died): past the deadline this thread, which needs none of them,
        // ends the process.
        Thread.sleep(forTimeInterval: Double(StandardInputWatch.deadlineSeconds))
        let message =
          "standard input ended \(StandardInputWatch.deadlineSeconds) s ago and the service has not stopped: exiting\n"
        FileHandle.standardError.write(Data(message.utf8))
        _exit(70)
      }
    }
    await cancelWhenGracefulShutdown {
      for await _ in ended {
        self.logger.notice("standard input ended (--exit-with-stdin): stopping")
        return
      }
    }
  }
}
