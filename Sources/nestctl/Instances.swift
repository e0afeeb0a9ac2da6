// `nestctl instances renew|auto-renew|change-plan|upgrade|rollback|history|auto-upgrade`: an
// instance's subscription and version tasks, each one or two calls with the caller's token
// (--token / NEST_TOKEN: a customer's, or the resource owner's), printing what changed as
// people read it.
import ArgumentParser
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit

struct InstancesCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "instances",
    abstract: "Renew an instance, turn its auto-renew on or off, change its plan; upgrade it, roll it back.",
    subcommands: [
      Renew.self, AutoRenew.self, ChangePlan.self, Upgrade.self, Rollback.self, History.self, AutoUpgrade.self,
    ])

  struct Upgrade: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Upgrade an instance to a later version of its service, or (--dry-run) say what would change.")

    @Argument(help: "The instance id.") var instance: String
    @Option(help: "The version; default the one the instance is upgradable to.") var to = ""
    @Option(help: "The target version's parameter set, when the instance's is not in it.") var parameterSet = ""
    @Flag(help: "Only say what would change.") var dryRun = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let response = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.upgradeServiceInstance(
            .with {
              $0.clientToken = self.dryRun ? "" : "upgrade-\(UUID())"
              $0.instanceID = self.instance
              $0.targetVersionID = self.to
              $0.parameterSetName = self.parameterSet
              $0.dryRun = self.dryRun
            })
        }
        let plan = response.plan ?? .init()
        print(
          "\(self.dryRun ? "would upgrade" : "upgrade") \(self.instance): \(plan.fromVersionID) -> \(plan.toVersionID)"
            + (plan.securityRelease ? " (a security release)" : ""))
        print("  parameter set \(plan.fromParameterSetName) -> \(plan.toParameterSetName)")
        for (name, change) in plan.parameterChanges.sorted(by: { $0.key < $1.key }) { print("    \(name): \(change)") }
        print("  price unchanged; \(plan.licenseReissued ? "a new license is issued" : "no license to re-issue")")
        if plan.throughProvider { print("  made by the provider's fulfilment endpoint") }
        if !self.dryRun, let instance = response.instance {
          print("  now \(statusName(instance.upgradeStatus)), running \(instance.versionID)")
        }
      }
    }
  }

  struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Roll an instance's last upgrade back to the version it came from.")

    @Argument(help: "The instance id.") var instance: String
    @Option(help: "Why.") var reason = ""
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let response = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.rollbackServiceInstance(
            .with {
              $0.clientToken = "rollback-\(UUID())"
              $0.instanceID = self.instance
              $0.reason = self.reason
            })
        }
        let plan = response.plan ?? .init()
        let instance = response.instance ?? .init()
        print(
          "rollback \(self.instance): \(plan.fromVersionID) -> \(plan.toVersionID), now \(statusName(instance.upgradeStatus)), running \(instance.versionID)"
        )
      }
    }
  }

  struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "An instance's upgrades and rollbacks, and the version it can upgrade to.")

    @Argument(help: "The instance id.") var instance: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let instance = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.getServiceInstance(.with { $0.key = .instanceID(self.instance) }).instance ?? .init()
        }
        print(
          "instance \(instance.id): version \(instance.versionID), auto-upgrade \(instance.autoUpgrade ? "on" : "off")")
        if !instance.upgradableToVersionID.isEmpty {
          print(
            "  upgradable to \(instance.upgradableToVersionID)"
              + (instance.upgradableSecurityRelease ? " (a security release)" : ""))
        }
        for upgrade in instance.upgrades {
          print(
            "  \(statusName(upgrade.kind)) \(upgrade.fromVersionID) -> \(upgrade.toVersionID): \(statusName(upgrade.status)) by \(upgrade.requestedBy)"
              + (upgrade.reason.isEmpty ? "" : " (\(upgrade.reason))"))
        }
      }
    }
  }

  struct AutoUpgrade: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "auto-upgrade", abstract: "Turn automatic upgrades of an instance on or off.")

    @Argument(help: "The instance id.") var instance: String
    @Argument(help: "on or off.") var state: Switch
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let instance = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.setAutoUpgrade(
            .with {
              $0.clientToken = "auto-upgrade-\(UUID())"
              $0.instanceID = self.instance
              $0.autoUpgrade = self.state == .on
            }
          ).instance ?? .init()
        }
        print("instance \(instance.id): auto-upgrade \(instance.autoUpgrade ? "on" : "off")")
      }
    }
  }

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
    @Argument(help: "on or off.") var state: Switch
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let instance = try await self.connection.withClient(.entitlement) {
          try await $0.entitlement.setAutoRenew(
            .with {
              $0.instanceID = self.instance
              $0.autoRenew = self.state == .on
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

/// An on/off argument.
enum Switch: String, ExpressibleByArgument {
  case on, off
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
