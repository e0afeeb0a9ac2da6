// entitlement-service: authorizations, instances, licenses and permission requests as their
// own process. Flags or NEST_* variables (see `entitlement-service --help`); stops
// gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Entitlement
import NestServiceKit

@main
struct EntitlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "entitlement-service",
    abstract: "Distribution authorizations, service instances, licenses and resource permissions.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration = try ServiceConfiguration.fromCommandLine(self.options, service: .entitlement)
    try await EntitlementServer.run(configuration: configuration, logger: configuration.logger("entitlement-service"))
  }
}
