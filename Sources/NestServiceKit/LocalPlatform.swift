// The platform's service executables as local processes: what `nestctl up`, NestTestKit's
// live mode and nest-bench run. Each service gets its own database and log under one data
// directory, the shared secret from a file there, every setting as an explicit flag (so that
// the caller's NEST_* environment cannot contradict what was chosen), and a port: either a
// fixed one, or a loopback socket bound and listening before the process starts and handed
// to it (`--listen-fd`), so that every peer's address is known first and no other process can
// take the port in between.
import CNIOLinux
import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
  import Glibc
#endif

public final class LocalPlatform: Sendable {
  public enum Ports: Sendable {
    /// `base`, `base + 1`, ... in NestServiceName order.
    case fixed(base: Int)
    /// Free loopback ports, bound by this process and inherited by the services.
    case inherited
  }

  public struct Options: Sendable {
    /// Where the executables are.
    public var executables: URL
    /// Databases, logs and the secret.
    public var dataDirectory: URL
    public var host: String
    public var ports: Ports
    public var logLevel: String
    /// More flags per service, e.g. ["--commission-bps", "300"] for .order.
    public var extraArguments: [NestServiceName: [String]]
    /// How the services reach each other: wire protocol v1, or gRPC over HTTP/2.
    public var peerProtocol: ServiceAddress.WireProtocol
    /// Variables set for every service beside the caller's (OTEL_* to export traces).
    public var environment: [String: String]
    /// Services that trust an identity provider's tokens instead of the data directory's
    /// secret: its JWKS, and the service's own key.
    public var identityProviders: [NestServiceName: Identity.IdentityProvider]

    public init(
      executables: URL, dataDirectory: URL, host: String = "127.0.0.1", ports: Ports = .inherited,
      logLevel: String = "warning", extraArguments: [NestServiceName: [String]] = [:],
      peerProtocol: ServiceAddress.WireProtocol = .nest, environment: [String: String] = [:],
      identityProviders: [NestServiceName: Identity.IdentityProvider] = [:]
    ) {
      self.environment = environment
      self.identityProviders = identityProviders
      self.executables = executables
      self.dataDirectory = dataDirectory
      self.host = host
      self.ports = ports
      self.logLevel = logLevel
      self.extraArguments = extraArguments
      self.peerProtocol = peerProtocol
    }
  }

  public let options: Options
  /// Where each service listens.
  public let addresses: [NestServiceName: ServiceAddress]
  /// Where each service serves gRPC over HTTP/2 (`grpc://host:port`).
  public let grpcAddresses: [NestServiceName: ServiceAddress]
  /// Where each service serves its admin port (/metrics, /healthz, /readyz).
  public let adminAddresses: [NestServiceName: ServiceAddress]
  private let processes = NIOLockedValueBox<[NestServiceName: pid_t]>([:])
  /// With `.inherited`: the sockets bound in `init`, handed over at each service's first start.
  private let sockets = NIOLockedValueBox<[NestServiceName: [ListeningSocket]]>([:])
  /// A pipe whose reading end is every service's standard input (`--exit-with-stdin`) and
  /// whose writing end only this process holds: when this process ends, however it ends, the
  /// services read end of file and stop, instead of serving on with no one to stop them.
  private let lifeline: (read: CInt, write: CInt)

  /// The folder this executable is in: where `swift build` puts all the products.
  public static var productsDirectory: URL {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
  }

  public init(_ options: Options) throws {
    self.options = options
    var addresses: [NestServiceName: ServiceAddress] = [:]
    var grpcAddresses: [NestServiceName: ServiceAddress] = [:]
    var adminAddresses: [NestServiceName: ServiceAddress] = [:]
    var sockets: [NestServiceName: [ListeningSocket]] = [:]
    for (index, service) in NestServiceName.allCases.enumerated() {
      switch options.ports {
      case .fixed(let base):
        addresses[service] = ServiceAddress(host: options.host, port: base + index)
        grpcAddresses[service] = ServiceAddress(host: options.host, port: base + 100 + index, protocol: .grpc)
        adminAddresses[service] = ServiceAddress(host: options.host, port: base + 200 + index)
      case .inherited:
        // Bound now (every peer's address is known), listening once the service starts.
        let socket = try ListeningSocket(host: options.host, port: 0, listening: false)
        let grpc = try ListeningSocket(host: options.host, port: 0, listening: false)
        let admin = try ListeningSocket(host: options.host, port: 0, listening: false)
        addresses[service] = ServiceAddress(host: options.host, port: socket.port)
        grpcAddresses[service] = ServiceAddress(host: options.host, port: grpc.port, protocol: .grpc)
        adminAddresses[service] = ServiceAddress(host: options.host, port: admin.port)
        sockets[service] = [socket, grpc, admin]
      }
    }
    self.addresses = addresses
    self.grpcAddresses = grpcAddresses
    self.adminAddresses = adminAddresses
    self.sockets.withLockedValue { $0 = sockets }
    try FileManager.default.createDirectory(at: options.dataDirectory, withIntermediateDirectories: true)
    // Last, once nothing else can throw (deinit does not run for an init that throws). Both
    // ends close on exec from the start: a process another thread spawns meanwhile (Foundation's
    // Process) must not inherit the writing end, or the services would outlive this process.
    var ends: [CInt] = [-1, -1]
    guard let pipe2 = Spawn.pipe2, pipe2(&ends, O_CLOEXEC) == 0 else {
      throw ConfigurationError("cannot make the services' lifeline pipe: \(String(cString: strerror(errno)))")
    }
    self.lifeline = (ends[0], ends[1])
  }

  deinit {
    for socket in self.sockets.withLockedValue({ $0.values.flatMap { $0 } }) { socket.close() }
    close(self.lifeline.read)
    close(self.lifeline.write)
  }

  public var secretFile: URL { self.options.dataDirectory.appendingPathComponent("secret") }

  /// The secret of the data directory, made on first use (32 random bytes, hex, mode 0600).
  public func secret() throws -> String {
    if FileManager.default.fileExists(atPath: self.secretFile.path) {
      return try String(contentsOf: self.secretFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    var generator = SystemRandomNumberGenerator()
    let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    _ = FileManager.default.createFile(
      atPath: self.secretFile.path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
    return secret
  }

  public func database(_ service: NestServiceName) -> URL {
    self.options.dataDirectory.appendingPathComponent("\(service.rawValue).sqlite")
  }

  public func log(_ service: NestServiceName) -> URL {
    self.options.dataDirectory.appendingPathComponent("\(service.rawValue).log")
  }

  public func pid(_ service: NestServiceName) -> pid_t? { self.processes.withLockedValue { $0[service] } }

  /// Starts every service and waits until each answers Health/Check.
  public func start() async throws {
    for service in NestServiceName.allCases { try self.launch(service) }
    for service in NestServiceName.allCases { try await self.waitUntilServing(service) }
  }

  /// Starts one service (again: its database is kept) and waits until it serves.
  public func start(_ service: NestServiceName) async throws {
    try self.launch(service)
    try await self.waitUntilServing(service)
  }

  private func waitUntilServing(_ service: NestServiceName) async throws {
    guard await Readiness.waitUntilServing(self.addresses[service]!) else {
      let tail = (try? String(contentsOf: self.log(service), encoding: .utf8))?.split(separator: "\n").suffix(5)
      throw ConfigurationError(
        "\(service.executable) did not answer Health/Check at \(self.addresses[service]!): "
          + (tail?.joined(separator: " | ") ?? "no log"))
    }
  }

  private func launch(_ service: NestServiceName) throws {
    let executable = self.options.executables.appendingPathComponent(service.executable)
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
      throw ConfigurationError("\(executable.path) is missing: build the package first (swift build)")
    }
    let address = self.addresses[service]!
    var arguments = [
      "--host", address.host, "--port", "\(address.port)", "--database", self.database(service).path,
      "--log-level", self.options.logLevel, "--exit-with-stdin",
    ]
    if let provider = self.options.identityProviders[service] {
      arguments += [
        "--auth-jwks-file", provider.jwksFile, "--auth-issuer", provider.issuer, "--auth-audience", provider.audience,
        "--service-key-file", provider.serviceKeyFile, "--service-key-id", provider.serviceKeyID,
      ]
    } else {
      _ = try self.secret()
      arguments += ["--auth-secret-file", self.secretFile.path]
    }
    for peer in NestServiceName.allCases {
      let address = self.options.peerProtocol == .grpc ? self.grpcAddresses[peer]! : self.addresses[peer]!
      arguments += ["--\(peer.rawValue)-address", "\(address)"]
    }
    let grpc = self.grpcAddresses[service]!
    let admin = self.adminAddresses[service]!
    var sockets: [ListeningSocket] = []
    if case .inherited = self.options.ports {
      // A restart takes the ports held since the service stopped (or binds them again).
      sockets =
        try self.sockets.withLockedValue { $0.removeValue(forKey: service) }
        ?? [address, grpc, admin].map { try ListeningSocket(host: $0.host, port: $0.port, listening: false) }
      for socket in sockets { try socket.listen() }
      let first = ListeningSocket.inheritedDescriptor
      arguments += [
        "--listen-fd", "\(first)", "--grpc-listen-fd", "\(first + 1)", "--admin-listen-fd", "\(first + 2)",
      ]
    } else {
      arguments += ["--grpc-port", "\(grpc.port)", "--admin-port", "\(admin.port)"]
    }
    defer { for socket in sockets { socket.close() } }  // the child has its own copies
    let extra = self.options.extraArguments[service] ?? []
    // A local platform's partners (a receiver in a terminal, a test's) are on this machine.
    if service == .events && !extra.contains("--webhook-private-addresses") {
      arguments += ["--webhook-private-addresses", "allow"]
    }
    if service == .entitlement && !extra.contains("--fulfilment-private-addresses") {
      arguments += ["--fulfilment-private-addresses", "allow"]
    }
    arguments += extra
    let pid = try Spawn.run(
      executable.path, arguments: arguments,
      environment: Self.environment().merging(self.options.environment) { $1 }, sockets: sockets.map(\.descriptor),
      stdin: self.lifeline.read, log: self.log(service).path)
    self.processes.withLockedValue { $0[service] = pid }
  }

  /// The caller's environment without NEST_* variables: every setting is a flag.
  static func environment() -> [String: String] {
    ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("NEST_") }
  }

  /// Stops one service: SIGTERM (it drains and exits; SIGKILL after `grace`), or SIGKILL at
  /// once. Its exit status (128 + the signal when a signal ended it); nil if it was not running.
  @discardableResult
  public func stop(_ service: NestServiceName, kill: Bool = false, grace: Duration = .seconds(15)) -> Int32? {
    guard let pid = self.processes.withLockedValue({ $0.removeValue(forKey: service) }) else { return nil }
    let status = Spawn.stop(pid, kill: kill, grace: grace)
    self.hold(service)
    return status
  }

  /// With `.inherited` ports: binds a stopped service's ports again at once (not listening:
  /// connections are refused, as to a service that is down), so that no other process's
  /// connection takes one as its local port before the service starts again.
  private func hold(_ service: NestServiceName) {
    guard case .inherited = self.options.ports else { return }
    let held = [self.addresses[service]!, self.grpcAddresses[service]!, self.adminAddresses[service]!].compactMap {
      try? ListeningSocket(host: $0.host, port: $0.port, listening: false)
    }
    guard held.count == 3 else {
      for socket in held { socket.close() }
      return
    }
    self.sockets.withLockedValue { $0[service] = held }
  }

  /// Stops every service.
  public func stop() {
    let pids = self.processes.withLockedValue { processes in
      defer { processes = [:] }
      return processes
    }
    for pid in pids.values { Glibc.kill(pid, SIGTERM) }
    for pid in pids.values { _ = Spawn.stop(pid, kill: false, grace: .seconds(15)) }
  }

  /// The first service whose process has exited, and its status.
  public func exited() -> (NestServiceName, Int32)? {
    for (service, pid) in self.processes.withLockedValue({ $0 }) {
      if let status = Spawn.exitStatus(pid) {
        _ = self.processes.withLockedValue { $0.removeValue(forKey: service) }
        self.hold(service)
        return (service, status)
      }
    }
    return nil
  }
}

/// A TCP socket bound and listening, to be inherited by a service process.
public struct ListeningSocket: Sendable {
  /// The descriptor a service finds its socket at.
  public static let inheritedDescriptor: CInt = 3

  public let descriptor: CInt
  public let port: Int

  /// Binds `host:port` (0: any free port); with `listening`, listens too. A socket bound but
  /// not listening holds the port while connections to it are refused, as to a service that
  /// is down: LocalPlatform listens on a service's sockets only as it starts the service.
  public init(host: String, port: Int, listening: Bool = true) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ConfigurationError("socket: \(String(cString: strerror(errno)))") }
    var one: CInt = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(host)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0, !listening || Glibc.listen(fd, 256) == 0 else {
      let reason = String(cString: strerror(errno))
      Glibc.close(fd)
      throw ConfigurationError("cannot listen on \(host):\(port): \(reason)")
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    self.descriptor = fd
    self.port = Int(UInt16(bigEndian: address.sin_port))
  }

  /// Starts accepting connections (into the backlog, until a process accepts them).
  public func listen() throws {
    guard Glibc.listen(self.descriptor, 256) == 0 else {
      throw ConfigurationError("cannot listen on port \(self.port): \(String(cString: strerror(errno)))")
    }
  }

  public func close() { Glibc.close(self.descriptor) }
}

/// posix_spawn, for what Foundation's Process cannot do: hand a socket to the child at a
/// known descriptor.
enum Spawn {
  /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift's Glibc module
  /// does not export.
  static let closeFrom = CLibrary.function(
    "posix_spawn_file_actions_addclosefrom_np",
    as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt).self)

  /// pipe2(2), which Swift's Glibc module does not export either.
  static let pipe2 = CLibrary.function("pipe2", as: (@convention(c) (UnsafeMutablePointer<CInt>, CInt) -> CInt).self)

  static func run(
    _ path: String, arguments: [String], environment: [String: String], sockets: [CInt], stdin: CInt?, log: String
  ) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if let stdin {
      posix_spawn_file_actions_adddup2(&actions, stdin, 0)
    } else {
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // The sockets become descriptors 3, 4, ... of the child.
    for (index, socket) in sockets.enumerated() {
      posix_spawn_file_actions_adddup2(&actions, socket, ListeningSocket.inheritedDescriptor + CInt(index))
    }
    // And nothing else: a descriptor this process has open (another child's pipe, say) held
    // by the service would keep that pipe from ever reaching end of file.
    guard let closeFrom = Self.closeFrom else {
      throw ConfigurationError("this C library has no posix_spawn_file_actions_addclosefrom_np (glibc 2.34 or later)")
    }
    _ = closeFrom(&actions, ListeningSocket.inheritedDescriptor + CInt(sockets.count))
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for pointer in argv { free(pointer) }
      for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, path, &actions, nil, argv, envp)
    guard result == 0 else { throw ConfigurationError("cannot start \(path): \(String(cString: strerror(result)))") }
    return pid
  }

  /// The exit status if `pid` has exited (reaping it), nil while it runs.
  static func exitStatus(_ pid: pid_t) -> Int32? {
    var status: Int32 = 0
    guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  }

  /// Signals `pid` and reaps it: its exit status.
  static func stop(_ pid: pid_t, kill: Bool, grace: Duration) -> Int32 {
    Glibc.kill(pid, kill ? SIGKILL : SIGTERM)
    let deadline = ContinuousClock.now + grace
    while ContinuousClock.now < deadline {
      if let status = exitStatus(pid) { return status }
      usleep(10_000)
    }
    Glibc.kill(pid, SIGKILL)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  }
}
