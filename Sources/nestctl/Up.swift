// `nestctl up`: the four service executables, found beside nestctl, as separate processes on
// consecutive ports, each with its own database under --data-dir and one shared secret
// (generated on first start, kept in <data-dir>/secret). It waits for every Health/Check,
// prints where everything is, and on Ctrl-C or SIGTERM stops them gracefully.
import ArgumentParser
import Foundation
import NestServiceKit
import UnixSignals

#if canImport(Glibc)
  import Glibc
#endif

/// The four services as child processes.
final class Platform: @unchecked Sendable {
  // @unchecked: `children` is set once in start() and only read afterwards.
  struct Child {
    var service: NestServiceName
    var executable: String
    var address: ServiceAddress
    var database: String
    var process: Process
  }

  static let executables: [NestServiceName: String] = [
    .catalog: "catalog-service", .entitlement: "entitlement-service", .order: "marketplace-order-service",
    .settlement: "settlement-service",
  ]

  let dataDir: URL
  let host: String
  let basePort: Int
  private(set) var children: [Child] = []

  init(dataDir: String, host: String, basePort: Int) {
    self.dataDir = URL(fileURLWithPath: dataDir).standardizedFileURL
    self.host = host
    self.basePort = basePort
  }

  func address(_ service: NestServiceName) -> ServiceAddress {
    let offset = NestServiceName.allCases.firstIndex(of: service)!
    return ServiceAddress(host: self.host, port: self.basePort + offset)
  }

  var secretFile: URL { self.dataDir.appendingPathComponent("secret") }

  /// The secret of this data directory, made on first use (32 random bytes, hex, mode 0600).
  func secret() throws -> String {
    if let existing = try? String(contentsOf: self.secretFile, encoding: .utf8) {
      return existing.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    var generator = SystemRandomNumberGenerator()
    let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    try FileManager.default.createDirectory(at: self.dataDir, withIntermediateDirectories: true)
    FileManager.default.createFile(
      atPath: self.secretFile.path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
    return secret
  }

  /// Starts all four and waits until each answers Health/Check SERVING.
  func start() async throws {
    _ = try self.secret()
    let directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    var peerFlags: [String] = []
    for service in NestServiceName.allCases {
      peerFlags += ["--\(service.rawValue)-address", "\(self.address(service))"]
    }
    for service in NestServiceName.allCases {
      let executable = directory.appendingPathComponent(Self.executables[service]!)
      guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw ValidationError("\(executable.path) is missing: build the package first (swift build)")
      }
      let database = self.dataDir.appendingPathComponent("\(service.rawValue).sqlite").path
      let process = Process()
      process.executableURL = executable
      process.arguments =
        [
          "--host", self.host, "--port", "\(self.address(service).port)", "--database", database,
          "--auth-secret-file", self.secretFile.path, "--log-level", "warning",
        ] + peerFlags
      // Each service's own output goes to <data-dir>/<service>.log.
      let log = self.dataDir.appendingPathComponent("\(service.rawValue).log")
      if !FileManager.default.fileExists(atPath: log.path) {
        FileManager.default.createFile(atPath: log.path, contents: nil)
      }
      let handle = try FileHandle(forWritingTo: log)
      handle.seekToEndOfFile()
      process.standardOutput = handle
      process.standardError = handle
      try process.run()
      self.children.append(
        Child(
          service: service, executable: executable.lastPathComponent, address: self.address(service),
          database: database,
          process: process))
    }
    for child in self.children {
      guard await Readiness.waitUntilServing(child.address) else {
        self.stop()
        throw ValidationError("\(child.executable) did not answer Health/Check at \(child.address)")
      }
    }
  }

  var table: String {
    Output.table(
      header: ["service", "address", "pid", "database"],
      rows: self.children.map { [$0.executable, "\($0.address)", "\($0.process.processIdentifier)", $0.database] })
  }

  /// SIGTERM to each (they drain and exit), SIGKILL after 15 seconds.
  func stop() {
    for child in self.children where child.process.isRunning { child.process.terminate() }
    let deadline = Date().addingTimeInterval(15)
    for child in self.children {
      while child.process.isRunning && Date() < deadline { usleep(20_000) }
      if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
      child.process.waitUntilExit()
    }
  }

  /// The first child that exited by itself, if any.
  var exited: Child? { self.children.first { !$0.process.isRunning } }
}

struct UpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up", abstract: "Run the whole platform locally until Ctrl-C.",
    discussion: "Data survives a restart: run `nestctl up` again with the same --data-dir.")

  @Option(help: "Where each service keeps its database, and the shared secret.") var dataDir: String = ".nest"
  @Option(help: "The first of four consecutive ports (catalog, entitlement, order, settlement).")
  var basePort: Int = 7101
  @Option(help: "The address to listen on.") var host: String = "127.0.0.1"

  func run() async throws {
    let platform = Platform(dataDir: self.dataDir, host: self.host, basePort: self.basePort)
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
    try await platform.start()
    print(platform.table)
    print("secret: \(platform.secretFile.path)   logs: \(platform.dataDir.path)/<service>.log")
    print("a token: export NEST_TOKEN=$(nestctl token issue --role isv --subject isv-1)")
    print("Ctrl-C stops the platform.")
    fflush(nil)  // a pipe is block-buffered: whoever started us sees the table now
    let crashed = await withTaskGroup(of: Platform.Child?.self) { group in
      group.addTask {
        for await _ in signals { return nil }
        return nil
      }
      group.addTask {
        while !Task.isCancelled {
          if let child = platform.exited { return child }
          try? await Task.sleep(for: .milliseconds(200))
        }
        return nil
      }
      let first = await group.next() ?? nil
      group.cancelAll()
      return first
    }
    platform.stop()
    if let crashed {
      FileHandle.standardError.write(
        Data("\(crashed.executable) exited with status \(crashed.process.terminationStatus)\n".utf8))
      throw ExitCode(1)
    }
    print("stopped")
    fflush(nil)
  }
}
