// `nestctl instances renew|auto-renew|change-plan`: a customer's subscription tasks, each one
// or two calls with the caller's token (--token / NEST_TOKEN, a customer's), printing what
// changed as people read it.
import ArgumentParser
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit

struct InstancesCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "instances", abstract: "Renew an instance, turn its auto-renew on or off, change its plan.",
    subcommands: [Renew.self, AutoRenew.self, ChangePlan.self])

  struct Renew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Order and pay the renewal of an instance on its plan at the price in force.")

    @Argument(help: "The instance id.") var instance: String
    @Option(help: "Billing periods to renew.") var periods: UInt32 = 1
    @Option(help: "The payment reference (your payment provider's).") var paymentReference = "nestctl"
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let order = try await self.connection.withClient(.order) { client in
          let orders = client.orders
          let created =
            try await orders.createRenewalOrder(
              .with {
                $0.clientToken = "renew-\(UUID())"
                $0.instanceID = self.instance
                $0.periods = self.periods
              }
            ).order ?? .init()
          return try await orders.payOrder(
            .with {
              $0.orderID = created.id
              $0.paymentReference = self.paymentReference
              $0.expectedAmount = created.price?.amount ?? .init()
            }
          ).order ?? .init()
        }
        print(
          "renewal order \(order.id) \(statusName(order.status)): \(order.periods) x \(order.planID), \(amount(order))")
        print("the term is extended when the order is fulfilled (nestctl order get-order order_id=\(order.id))")
      }
    }
  }

  struct AutoRenew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "auto-renew", abstract: "Turn auto-renew of an instance on or off.")

    @Argument(help: "The instance id.") var instance: String
    @Argument(help: "on or off.") var state: String
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
      guard self.state == "on" || self.state == "off" else { throw ValidationError("state must be on or off") }
    }

    func run() async throws {
      try await reportingErrors {
        let instance = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.setAutoRenew(
            .with {
              $0.instanceID = self.instance
              $0.autoRenew = self.state == "on"
            }
          ).instance ?? .init()
        }
        print(
          "instance \(instance.id): auto-renew \(instance.subscription?.autoRenew == true ? "on" : "off"), term ends \(date(instance.expiresAtUnixMs))"
        )
      }
    }
  }

  struct ChangePlan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "change-plan",
      abstract: "Change an instance's plan or quantity: an upgrade pays the prorated difference now.")

    @Argument(help: "The instance id.") var instance: String
    @Option(help: "The new plan (same billing period); default the current.") var plan = ""
    @Option(help: "The new quantity; default the current.") var quantity: UInt32 = 0
    @Option(help: "The payment reference of an upgrade.") var paymentReference = "nestctl"
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let order = try await self.connection.withClient(.order) { client in
          let orders = client.orders
          let created =
            try await orders.createChangeOrder(
              .with {
                $0.clientToken = "change-\(UUID())"
                $0.instanceID = self.instance
                $0.planID = self.plan
                $0.quantity = self.quantity
              }
            ).order ?? .init()
          guard created.status == .created else { return created }
          return try await orders.payOrder(
            .with {
              $0.orderID = created.id
              $0.paymentReference = self.paymentReference
              $0.expectedAmount = created.price?.amount ?? .init()
            }
          ).order ?? .init()
        }
        let change = order.change ?? .init()
        print(
          "change order \(order.id) \(statusName(order.status)): \(change.fromPlanID) x \(change.fromQuantity) -> \(order.planID) x \(order.quantity), \(amount(order))"
        )
        if change.immediate {
          print(
            "  from now; prorated over \(days(change.termEndsAtUnixMs - change.pricedAtUnixMs)) of the term's \(days(change.termEndsAtUnixMs - change.termStartedAtUnixMs))"
          )
        } else {
          print("  from the next renewal (\(date(change.termEndsAtUnixMs)))")
        }
      }
    }
  }
}

func amount(_ order: Nest_Order_V1_Order) -> String {
  order.price?.amount.map { MoneyFormat.string($0) } ?? "-"
}

func date(_ unixMs: Int64) -> String {
  guard unixMs > 0 else { return "never" }
  let formatter = ISO8601DateFormatter()
  formatter.formatOptions = [.withFullDate]
  return formatter.string(from: Date(timeIntervalSince1970: Double(unixMs) / 1000))
}

func days(_ ms: Int64) -> String {
  String(format: "%.1f days", Double(ms) / Double(24 * 3600 * 1000))
}
