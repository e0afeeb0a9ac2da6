// The platform's service executables as real processes on loopback, each on a port chosen
// up front (so that peers know each other before they start) and with its own database in
// one temporary folder, sharing one auth secret: for integration tests.
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A loopback TCP port nothing listens on right now.
public func freeLoopbackPort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  address.sin_port = 0
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
      bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
    }
  }
  guard bound else { throw CocoaError(.fileWriteUnknown) }
  return Int(UInt16(bigEndian: address.sin_port))
}

public final class ServiceCluster: @unchecked Sendable {
  // @unchecked: `running` is guarded by `lock`.
  /// The services by their short name, as the peer flags spell them.
  public static let executables = [
    "catalog": "catalog-service", "entitlement": "entitlement-service", "order": "marketplace-order-service",
    "settlement": "settlement-service",
  ]

  public let secret = "cluster-test-secret-\(UUID().uuidString)"
  public let directory: URL
  public let ports: [String: Int]
  private let lock = NSLock()
  private var running: [String: ChildProcess] = [:]
  private let extraArguments: [String: [String]]

  /// Chooses ports for all four services; starts none.
  public init(extraArguments: [String: [String]] = [:]) throws {
    self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID())")
    try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    var ports: [String: Int] = [:]
    for name in Self.executables.keys { ports[name] = try freeLoopbackPort() }
    self.ports = ports
    self.extraArguments = extraArguments
  }

  public func database(_ name: String) -> String { self.directory.appendingPathComponent("\(name).sqlite").path }

  /// Starts `name` and waits until it listens.
  public func start(_ name: String) async throws {
    var arguments = [
      "--port", "\(self.ports[name]!)", "--database", self.database(name), "--log-level", "error",
    ]
    for (peer, port) in self.ports { arguments += ["--\(peer)-address", "127.0.0.1:\(port)"] }
    arguments += self.extraArguments[name] ?? []
    let process = try ChildProcess(
      Self.executables[name]!, arguments: arguments, environment: ["NEST_AUTH_SECRET": self.secret])
    _ = try await process.port()
    self.lock.withLock { self.running[name] = process }
  }

  public func start(_ names: [String]) async throws {
    for name in names { try await self.start(name) }
  }

  /// SIGTERM and wait: the exit status, nil if it was not running.
  @discardableResult
  public func stop(_ name: String) -> Int32? {
    self.lock.withLock { self.running.removeValue(forKey: name) }?.stop()
  }

  /// SIGKILL: no chance to clean up.
  public func kill(_ name: String) {
    guard let process = self.lock.withLock({ self.running.removeValue(forKey: name) }) else { return }
    Glibc.kill(process.process.processIdentifier, SIGKILL)
    process.process.waitUntilExit()
  }

  public func stopAll() {
    for name in Self.executables.keys { self.stop(name) }
  }

  deinit {
    self.stopAll()
    try? FileManager.default.removeItem(at: self.directory)
  }
}
