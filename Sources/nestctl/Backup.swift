// `nestctl backup` and `nestctl restore`: each service's database copied while it serves
// (the admin port's GET /backup: SQLite's online backup API from one read snapshot, for an
// operator's token), and put back before a service starts.
//
// The copies are taken upstream first: marketplace-order (whose outbox drives the others),
// then entitlement and settlement, then catalog. Whatever marketplace-order's copy records as
// delivered was delivered before the later copies were taken, so it is in them; what its
// copy holds as pending is delivered again after a restore, and every delivery is idempotent.
// What the later copies hold beyond it (orders paid while the backup ran) `nestctl
// reconcile` reports as marketplace-order being behind.
import ArgumentParser
import Foundation
import GRDB
import NestDomain
import NestProto
import NestServiceKit

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// The order backups are taken in (see above).
let backupOrder: [NestServiceName] = [.order, .entitlement, .settlement, .catalog]

struct BackupCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "backup",
    abstract: "Copy every service's database while it serves, into a directory (<service>.sqlite, manifest.json).")

  @Option(help: "Directory to write the copies to (created; must not hold a backup already).") var to: String
  @Option(help: "Only these services (catalog, entitlement, order, settlement, events; repeatable).") var service:
    [String] = []
  @Option(
    name: .customLong("admin-address"),
    help: "SERVICE=HOST:PORT of a service's admin port (repeatable; default: its address's host, port + 200).")
  var adminAddresses: [String] = []
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    let directory = URL(fileURLWithPath: self.to)
    guard !FileManager.default.fileExists(atPath: directory.appendingPathComponent("manifest.json").path) else {
      throw ValidationError("\(self.to) already holds a backup: choose a new directory")
    }
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let admin = try self.admin()
    let token: String
    if let bearer = self.connection.bearer {
      token = bearer
    } else {
      token = try await self.connection.mint(.operator, "nestctl-backup")
    }
    var manifest: [String: Any] = ["started_unix_ms": Int64(Date().timeIntervalSince1970 * 1000)]
    var services: [[String: Any]] = []
    let chosen = try Set(self.service.map(BackupFile.service(named:)))
    for service in backupOrder where chosen.isEmpty || chosen.contains(service) {
      let address = admin[service]!
      var request = URLRequest(url: URL(string: "http://\(address.host):\(address.port)/backup")!)
      request.setValue("Bearer \(token)", forHTTPHeaderField: "authorization")
      let (data, response) = try await URLSession.shared.data(for: request)
      let status = (response as? HTTPURLResponse)?.statusCode ?? 0
      guard status == 200 else {
        throw ValidationError(
          "\(service.identity) at \(address) answered \(status): \(String(decoding: data, as: UTF8.self))")
      }
      let file = directory.appendingPathComponent("\(service.rawValue).sqlite")
      try data.write(to: file, options: .atomic)
      let migrations = try BackupFile.check(file.path)
      services.append([
        "service": service.identity, "file": file.lastPathComponent, "bytes": data.count,
        "taken_unix_ms": Int64(Date().timeIntervalSince1970 * 1000), "migrations": migrations,
      ])
      print("\(service.identity): \(data.count) bytes, \(migrations.count) migrations, integrity ok")
    }
    manifest["services"] = services
    try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
      .write(to: directory.appendingPathComponent("manifest.json"), options: .atomic)
    print("backup written to \(directory.path)")
  }

  func admin() throws -> [NestServiceName: ServiceAddress] {
    var addresses: [NestServiceName: ServiceAddress] = [:]
    for service in NestServiceName.allCases {
      let address = try self.connection.address(service)
      addresses[service] = ServiceAddress(host: address.host, port: address.port + 200)
    }
    for pair in self.adminAddresses {
      let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2 else {
        throw ValidationError(
          "--admin-address \(pair): expected SERVICE=HOST:PORT (catalog, entitlement, order, settlement, events)")
      }
      let service = try BackupFile.service(named: parts[0])
      do {
        addresses[service] = try ServiceAddress(parsing: parts[1])
      } catch {
        throw ValidationError("--admin-address \(pair): \(error.description)")
      }
    }
    return addresses
  }
}

struct RestoreCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract:
      "Put backed-up databases in place of the services' (each service stopped), as <data-dir>/<service>.sqlite.")

  @Option(help: "A directory written by `nestctl backup`.") var from: String
  @Option(help: "Only these services (catalog, entitlement, order, settlement, events; repeatable).") var service:
    [String] = []
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    let source = URL(fileURLWithPath: self.from)
    // By default every service the backup holds.
    let services =
      try self.service.isEmpty
      ? NestServiceName.allCases.filter {
        FileManager.default.fileExists(atPath: source.appendingPathComponent("\($0.rawValue).sqlite").path)
      }
      : self.service.map(BackupFile.service(named:))
    guard !services.isEmpty else { throw ValidationError("\(self.from) holds no backup") }
    // Where `nestctl up` keeps the databases: --data-dir.
    let target = URL(fileURLWithPath: self.connection.dataDir)
    try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
    for service in services {
      // A running service keeps its database open: replacing it underneath would lose writes.
      if await Readiness.waitUntilServing(try self.connection.address(service), timeout: .milliseconds(500)) {
        throw ValidationError("\(service.identity) answers at \(try self.connection.address(service)): stop it first")
      }
      let backup = source.appendingPathComponent("\(service.rawValue).sqlite")
      guard FileManager.default.fileExists(atPath: backup.path) else {
        throw ValidationError("\(backup.path): no backup of \(service.identity) there")
      }
      let migrations = try BackupFile.check(backup.path)
      try BackupFile.restore(backup, to: target.appendingPathComponent("\(service.rawValue).sqlite"))
      print("\(service.identity): restored (\(migrations.count) migrations; newer ones run at start)")
    }
  }
}

enum BackupFile {
  static func service(named name: String) throws -> NestServiceName {
    guard let service = NestServiceName.allCases.first(where: { $0.rawValue == name || $0.identity == name }) else {
      throw ValidationError("--service \(name): not catalog, entitlement, order or settlement")
    }
    return service
  }

  /// Opens a copy read-only: SQLite's integrity check must pass; its applied migrations.
  static func check(_ path: String) throws -> [String] {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    defer { try? queue.close() }
    return try queue.read { db in
      let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check")
      guard integrity == ["ok"] else {
        throw ValidationError("\(path): integrity check failed: \(integrity.prefix(3).joined(separator: "; "))")
      }
      let migrations =
        try db.tableExists("grdb_migrations")
        ? try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid") : []
      return migrations
    }
  }

  /// Replaces the database at `target` (and its WAL, which belongs to the old file) with
  /// `backup`, whole or not at all.
  static func restore(_ backup: URL, to target: URL) throws {
    let staging = target.appendingPathExtension("restoring")
    try? FileManager.default.removeItem(at: staging)
    try FileManager.default.copyItem(at: backup, to: staging)
    for suffix in ["-wal", "-shm"] {
      try? FileManager.default.removeItem(atPath: target.path + suffix)
    }
    // rename(2): the old file, if any, is replaced in one step.
    guard rename(staging.path, target.path) == 0 else {
      throw ValidationError("cannot move \(staging.path) to \(target.path): \(String(cString: strerror(errno)))")
    }
  }
}
