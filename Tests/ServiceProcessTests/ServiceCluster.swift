// The platform's service executables as real processes on loopback, each on a port chosen
// up front (so that peers know each other before they start) and with its own database in
// one temporary folder, sharing one auth secret: for integration tests.
import Foundation
import NestProtoTesting
import NestServiceKit

#if canImport(Glibc)
  import Glibc
#endif

final class ServiceCluster: @unchecked Sendable {
  // @unchecked: `running` is guarded by `lock`.
  /// The services by their short name, as the peer flags spell them.
  static let executables = [
    "catalog": "catalog-service", "entitlement": "entitlement-service", "order": "marketplace-order-service",
    "settlement": "settlement-service",
  ]

  let secret = "cluster-test-secret-\(UUID().uuidString)"
  let directory: URL
  let ports: [String: Int]
  private let lock = NSLock()
  private var running: [String: ChildProcess] = [:]
  private let extraArguments: [String: [String]]

  /// Chooses ports for all four services; starts none.
  init(extraArguments: [String: [String]] = [:]) throws {
    self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID())")
    try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    var ports: [String: Int] = [:]
    for name in Self.executables.keys { ports[name] = try Readiness.freeLoopbackPort() }
    self.ports = ports
    self.extraArguments = extraArguments
  }

  func database(_ name: String) -> String { self.directory.appendingPathComponent("\(name).sqlite").path }

  /// Starts `name` and waits until it listens.
  func start(_ name: String) async throws {
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

  func start(_ names: [String]) async throws {
    for name in names { try await self.start(name) }
  }

  /// SIGTERM and wait: the exit status, nil if it was not running.
  @discardableResult
  func stop(_ name: String) -> Int32? {
    self.lock.withLock { self.running.removeValue(forKey: name) }?.stop()
  }

  /// The pid of a running service (0 if it is not running).
  func pid(_ name: String) -> Int32 {
    self.lock.withLock { self.running[name]?.process.processIdentifier } ?? 0
  }

  /// SIGKILL: no chance to clean up.
  func kill(_ name: String) {
    guard let process = self.lock.withLock({ self.running.removeValue(forKey: name) }) else { return }
    Glibc.kill(process.process.processIdentifier, SIGKILL)
    process.process.waitUntilExit()
  }

  func stopAll() {
    for name in Self.executables.keys { self.stop(name) }
  }

  deinit {
    self.stopAll()
    try? FileManager.default.removeItem(at: self.directory)
  }
}
