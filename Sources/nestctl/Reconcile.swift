// `nestctl reconcile`: checks across all four services, as an operator, that every paid
// order has one instance and its sale transactions, that nothing waits in the outbox longer
// than a minute, and what settlement's own Reconcile says. Prints what disagrees.
import ArgumentParser
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTransport

struct ReconcileCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reconcile", abstract: "Check orders, instances, the ledger and the outbox against each other.")

  @Option(help: "A delivery pending longer than this many seconds is reported.") var maxPendingSeconds: Int = 60
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    let token = try await self.connection.mint(.operator, "nestctl")
    var problems: [String] = []
    try await reportingErrors {
      let paid = try await self.connection.withClient(.order, token: token) { client in
        try await Pages.all { token in
          let page = try await client.orders.listOrders(
            .with {
              $0.statuses = [.paid, .fulfilled, .refunded]
              $0.page = .with {
                $0.pageSize = 500; $0.pageToken = token
              }
            })
          return (page.orders, page.page?.nextPageToken ?? "")
        }
      }
      let pending = try await self.connection.withClient(.order, token: token) { client in
        try await Pages.all { token in
          let page = try await client.orders.listDeliveries(
            .with {
              $0.page = .with {
                $0.pageSize = 500; $0.pageToken = token
              }
            })
          return (page.deliveries, page.page?.nextPageToken ?? "")
        }
      }
      let instances = try await self.connection.withClient(.entitlement, token: token) { client in
        try await Pages.all { token in
          let page = try await client.entitlement.listServiceInstances(
            .with {
              $0.page = .with {
                $0.pageSize = 500; $0.pageToken = token
              }
            })
          return (page.instances, page.page?.nextPageToken ?? "")
        }
      }
      let sales = try await self.connection.withClient(.settlement, token: token) { client in
        try await Pages.all { token in
          let page = try await client.settlement.listTransactions(
            .with {
              $0.kind = .sale
              $0.page = .with {
                $0.pageSize = 500; $0.pageToken = token
              }
            })
          return (page.transactions, page.page?.nextPageToken ?? "")
        }
      }
      let ledger = try await self.connection.withClient(.settlement, token: token) {
        try await $0.settlement.reconcile(.with { $0.checkOrders = true })
      }
      var instancesByOrder: [String: Int] = [:]
      for instance in instances { instancesByOrder[instance.orderID, default: 0] += 1 }
      var salesByOrder: [String: Int] = [:]
      for sale in sales {
        if case .orderID(let order)? = sale.source { salesByOrder[order, default: 0] += 1 }
      }
      let inFlight = Set(pending.map(\.orderID))
      var withoutInstance: [String] = []
      var withoutSale: [String] = []
      for order in paid where !inFlight.contains(order.id) {
        if order.kind == .customer && instancesByOrder[order.id] != 1 {
          problems.append("order \(order.id): \(instancesByOrder[order.id] ?? 0) instances, expected 1")
          if instancesByOrder[order.id] == nil { withoutInstance.append(order.id) }
        }
        if salesByOrder[order.id] != 1 {
          problems.append("order \(order.id): \(salesByOrder[order.id] ?? 0) sale transactions, expected 1")
          if salesByOrder[order.id] == nil { withoutSale.append(order.id) }
        }
      }
      let now = Int64(Date().timeIntervalSince1970 * 1000)
      for delivery in pending where now - delivery.createdAtUnixMs > Int64(self.maxPendingSeconds) * 1000 {
        problems.append(
          "delivery \(delivery.id) (\(statusName(delivery.kind)) of \(delivery.orderID)) pending for \((now - delivery.createdAtUnixMs) / 1000) s, \(delivery.attempts) attempts: \(delivery.lastError)"
        )
      }
      for discrepancy in ledger.discrepancies {
        problems.append("settlement: \(statusName(discrepancy.kind)) \(discrepancy.orderID) \(discrepancy.description)")
      }
      // One service's database older than another's, as after restoring it from an older
      // backup: what the newer one holds that the older one does not.
      func behind(_ older: String, _ newer: String, _ what: String, _ orders: [String]) {
        guard !orders.isEmpty else { return }
        problems.append(
          "\(older) is behind \(newer) (restored from an older backup?): \(orders.count) \(what): "
            + orders.prefix(5).joined(separator: ", ") + (orders.count > 5 ? ", ..." : ""))
      }
      let known = Set(paid.map(\.id))
      behind(
        "marketplace-order", "entitlement", "instance(s) of orders it does not know as paid",
        instances.filter { !$0.orderID.isEmpty && !known.contains($0.orderID) }.map(\.orderID))
      behind(
        "marketplace-order", "settlement", "sale(s) of orders it does not know as paid",
        ledger.discrepancies.filter { $0.kind == .unknownOrder }.map(\.orderID))
      behind("entitlement", "marketplace-order", "delivered order(s) without their instance", withoutInstance)
      behind("settlement", "marketplace-order", "delivered order(s) without their sale", withoutSale)
      print(
        "\(paid.count) paid orders, \(instances.count) instances, \(sales.count) sale transactions, \(pending.count) deliveries pending"
      )
    }
    for problem in problems { print(problem) }
    print(problems.isEmpty ? "reconciled: everything agrees" : "\(problems.count) disagreement(s)")
    if !problems.isEmpty { throw ExitCode(1) }
  }
}
