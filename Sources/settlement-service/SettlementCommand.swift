// settlement-service: the ledger, obligations, statements and usage as their own process.
// Flags or NEST_* variables (see `settlement-service --help`); stops gracefully on SIGTERM
// or SIGINT.
import ArgumentParser
import NestServiceKit
import Settlement

@main
struct SettlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "settlement-service",
    abstract: "The double-entry ledger, usage charges, offline obligations and statements.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration = try ServiceConfiguration.fromCommandLine(self.options, service: .settlement)
    try await SettlementServer.run(configuration: configuration, logger: configuration.logger("settlement-service"))
  }
}
