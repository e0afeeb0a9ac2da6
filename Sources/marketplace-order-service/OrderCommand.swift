// marketplace-order-service: orders and the delivery outbox as their own process. Flags or
// NEST_* variables (see `marketplace-order-service --help`); stops gracefully on SIGTERM or
// SIGINT.
import ArgumentParser
import MarketplaceOrder
import NestServiceKit

@main
struct OrderCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "marketplace-order-service",
    abstract: "Marketplace orders, scenario-3 linked orders and the delivery outbox.")

  @OptionGroup var options: ServiceOptions

  @Option(help: "Platform commission in basis points, 0-10000 (NEST_COMMISSION_BPS; default 500).")
  var commissionBps: String?

  func run() async throws {
    let configuration = try await ServiceConfiguration.fromCommandLine(
      .order, options: self.options, extraFlags: self.commissionBps.map { ["commission.bps": $0] } ?? [:])
    // A bad commission is a start-up error too, before anything listens.
    do {
      _ = try await configuration.settings.int("commission.bps", default: 500, in: 0...10_000)
    } catch {
      throw ValidationError(error.description)
    }
    try await NestService.runExecutable(OrderService.definition, configuration: configuration)
  }
}
