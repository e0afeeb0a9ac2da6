// `nestctl up`: the service executables, found beside nestctl, as separate processes on
// consecutive ports, each with its own database and log under --data-dir and one shared
// secret (generated on first start, kept in <data-dir>/secret). It waits for every
// Health/Check, prints where everything is, and on Ctrl-C or SIGTERM stops them gracefully.
import ArgumentParser
import Foundation
import NestServiceKit
import UnixSignals

extension LocalPlatform {
  /// The platform as `nestctl up` and `nestctl demo --spawn` run it.
  /// `basePort` 0: free ports, bound before the services start and handed to them.
  /// Entitlement notices a version to upgrade to within a second (a minute by default):
  /// what a developer publishes shows on their instances at once.
  static func local(
    dataDir: String, host: String, basePort: Int, extraArguments: [NestServiceName: [String]] = [:]
  ) throws -> LocalPlatform {
    var extraArguments = extraArguments
    if !(extraArguments[.entitlement] ?? []).contains("--upgrade-interval-ms") {
      extraArguments[.entitlement, default: []] += ["--upgrade-interval-ms", "1000"]
    }
    return try LocalPlatform(
      .init(
        executables: LocalPlatform.productsDirectory,
        dataDirectory: URL(fileURLWithPath: dataDir).standardizedFileURL, host: host,
        ports: basePort == 0 ? .inherited : .fixed(base: basePort), extraArguments: extraArguments))
  }

  var table: String {
    Output.table(
      header: ["service", "address", "pid", "database"],
      rows: NestServiceName.allCases.map {
        [$0.executable, "\(self.addresses[$0]!)", self.pid($0).map { "\($0)" } ?? "-", self.database($0).path]
      })
  }
}

struct UpCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "up", abstract: "Run the whole platform locally until Ctrl-C.",
    discussion: "Data survives a restart: run `nestctl up` again with the same --data-dir.")

  @Option(help: "Where each service keeps its database, and the shared secret.") var dataDir: String = ".nest"
  @Option(
    help: "The first of five consecutive ports (catalog, entitlement, order, settlement, events); 0 for any free ones.")
  var basePort: Int = 7101
  @Option(help: "The address to listen on.") var host: String = "127.0.0.1"

  func run() async throws {
    let platform = try LocalPlatform.local(dataDir: self.dataDir, host: self.host, basePort: self.basePort)
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
    do {
      try await platform.start()
    } catch {
      platform.stop()
      throw ValidationError("\(error)")
    }
    print(platform.table)
    print("secret: \(platform.secretFile.path)   logs: \(platform.options.dataDirectory.path)/<service>.log")
    print("a token: export NEST_TOKEN=$(nestctl token issue --role isv --subject isv-1)")
    print("Ctrl-C stops the platform.")
    fflush(nil)  // a pipe is block-buffered: whoever started us sees the table now
    let crashed = await withTaskGroup(of: (NestServiceName, Int32)?.self) { group in
      group.addTask {
        for await _ in signals { return nil }
        return nil
      }
      group.addTask {
        while !Task.isCancelled {
          if let exited = platform.exited() { return exited }
          do { try await Task.sleep(for: .milliseconds(200)) } catch { return nil }
        }
        return nil
      }
      let first = await group.next() ?? nil
      group.cancelAll()
      return first
    }
    platform.stop()
    if let (service, status) = crashed {
      FileHandle.standardError.write(Data("\(service.executable) exited with status \(status)\n".utf8))
      throw ExitCode(1)
    }
    print("stopped")
    fflush(nil)
  }
}
