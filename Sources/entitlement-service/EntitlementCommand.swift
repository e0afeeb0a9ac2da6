// entitlement-service: distribution authorizations, instances, licenses and permission
// requests as their own process. Flags or NEST_* variables (see `entitlement-service
// --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Entitlement
import NestServiceKit

@main
struct EntitlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "entitlement-service",
    abstract: "Distribution authorizations, service instances, licenses and resource permissions.")

  @OptionGroup var options: ServiceOptions

  @Option(help: "Fully managed instances get <base>/<instance id> as logon URL (NEST_LOGON_URL_BASE).")
  var logonUrlBase: String?

  func run() async throws {
    let configuration = try await ServiceConfiguration.fromCommandLine(
      .entitlement, options: self.options, extraFlags: self.logonUrlBase.map { ["logon.url.base": $0] } ?? [:])
    try await NestService.runExecutable(EntitlementService.definition, configuration: configuration)
  }
}
