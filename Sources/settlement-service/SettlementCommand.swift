// settlement-service: the ledger, usage, offline obligations and statements as their own
// process. Flags or NEST_* variables (see `settlement-service --help`); stops gracefully on
// SIGTERM or SIGINT.
import ArgumentParser
import NestServiceKit
import Settlement

@main
struct SettlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "settlement-service",
    abstract: "The double-entry ledger, usage, offline obligations and statements.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration = try await ServiceConfiguration.fromCommandLine(.settlement, options: self.options)
    try await NestService.runExecutable(SettlementService.definition, configuration: configuration)
  }
}
