// catalog-service: the catalog as its own process. Flags or NEST_* variables (see
// `catalog-service --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Catalog
import NestServiceKit

@main
struct CatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog-service", abstract: "Services, versions, parameter sets and marketplace products.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration = try ServiceConfiguration.fromCommandLine(self.options, service: .catalog)
    try await CatalogServer.run(configuration: configuration, logger: configuration.logger("catalog-service"))
  }
}
