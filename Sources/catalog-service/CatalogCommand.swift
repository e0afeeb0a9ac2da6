// catalog-service: the catalog as its own process. Flags or NEST_* variables (see
// `catalog-service --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Catalog
import NestServiceKit

@main
struct CatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog-service",
    abstract: "Services, versions, deployment packages, parameter sets, marketplace products and plans.")

  @OptionGroup var options: ServiceOptions

  func run() async throws {
    let configuration = try await ServiceConfiguration.fromCommandLine(.catalog, options: self.options)
    try await NestService.runExecutable(CatalogService.definition, configuration: configuration)
  }
}
