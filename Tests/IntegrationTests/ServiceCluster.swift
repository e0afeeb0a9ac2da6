// The platform's service executables as real processes (LocalPlatform: loopback sockets bound
// before they start, each service with its own database in one temporary folder, one shared
// secret), addressed by their short names, for the integration tests.
import Foundation
import NestProtoTesting
import NestServiceKit

#if canImport(Glibc)
  import Glibc
#endif

final class ServiceCluster: Sendable {
  let platform: LocalPlatform
  let secret: String
  var directory: URL { self.platform.options.dataDirectory }
  /// Each service's port, by its short name ("catalog", "order", ...).
  let ports: [String: Int]

  /// Binds a port for every service; starts none.
  init(extraArguments: [String: [String]] = [:]) throws {
    var arguments: [NestServiceName: [String]] = [:]
    for (name, flags) in extraArguments { arguments[NestServiceName(rawValue: name)!] = flags }
    self.platform = try LocalPlatform(
      .init(
        executables: Repository.productsDirectory,
        dataDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID())"),
        ports: .inherited, logLevel: "error", extraArguments: arguments))
    self.secret = try self.platform.secret()
    self.ports = Dictionary(uniqueKeysWithValues: self.platform.addresses.map { ($0.key.rawValue, $0.value.port) })
  }

  func database(_ name: String) -> String { self.platform.database(NestServiceName(rawValue: name)!).path }

  /// Starts `name` and waits until it serves.
  func start(_ name: String) async throws {
    try await self.platform.start(NestServiceName(rawValue: name)!)
  }

  func start(_ names: [String]) async throws {
    for name in names { try await self.start(name) }
  }

  /// SIGTERM, and wait until it has exited: its exit status.
  @discardableResult
  func stop(_ name: String) -> Int32? {
    self.platform.stop(NestServiceName(rawValue: name)!)
  }

  /// The pid of a running service (0 if it is not running).
  func pid(_ name: String) -> Int32 {
    self.platform.pid(NestServiceName(rawValue: name)!) ?? 0
  }

  /// SIGKILL: no chance to clean up.
  func kill(_ name: String) {
    self.platform.stop(NestServiceName(rawValue: name)!, kill: true)
  }

  func stopAll() {
    self.platform.stop()
  }

  deinit {
    self.platform.stop()
    try? FileManager.default.removeItem(at: self.directory)
  }
}
