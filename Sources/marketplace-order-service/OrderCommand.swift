// marketplace-order-service: orders and the delivery outbox as their own process. Flags or
// NEST_* variables (see `marketplace-order-service --help`); stops gracefully on SIGTERM or
// SIGINT.
import ArgumentParser
import Foundation
import MarketplaceOrder
import NestServiceKit

@main
struct OrderCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "marketplace-order-service",
    abstract: "Marketplace orders, scenario-3 linked orders and the delivery outbox.")

  @OptionGroup var options: ServiceOptions

  @Option(help: "Platform commission in basis points, 0-10000 (NEST_COMMISSION_BPS; default 500).")
  var commissionBps: UInt32?

  func run() async throws {
    let configuration = try ServiceConfiguration.fromCommandLine(self.options, service: .order)
    let variable = ProcessInfo.processInfo.environment["NEST_COMMISSION_BPS"].flatMap { UInt32($0) }
    let bps = self.commissionBps ?? variable ?? 500
    guard bps <= 10_000 else { throw ValidationError("--commission-bps must be 0 to 10000") }
    try await OrderServer.run(
      configuration: configuration, commissionBps: bps, logger: configuration.logger("marketplace-order-service"))
  }
}
