// The gaps the access declarations closed, each as a party would have found it.
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestTestKit
import Testing

@Suite("Access defects", .timeLimit(.minutes(3)))
struct AccessDefectTests {
  @Test("a delivery that fails shows its buyer a short state, never the internal error; an operator sees the cause")
  func deliveryErrors() async throws {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let setup = try await marketplace.setUp(
      .scenario3, parties: ScenarioParties(isv: "isv-d", distributor: "dist-d", customer: "cust-d"))
    await platform.stop(.settlement)
    let order = try await marketplace.buy("cust-d", product: setup.productID)
    // The operator sees why RECORD_SALE keeps failing.
    let failing = try await marketplace.waitForOrder(order.id, timeout: .seconds(30)) {
      !($0.order?.delivery?.lastError.isEmpty ?? true)
    }
    #expect(failing.order?.delivery?.lastError.isEmpty == false)
    #expect(failing.order?.delivery?.state == .retrying)
    // The customer sees that it is being retried, and nothing else.
    let seen = try await platform.orders(as: .customer, "cust-d") {
      try await $0.getOrder(.with { $0.orderID = order.id })
    }
    #expect(seen.order?.delivery?.lastError == "")
    #expect(seen.order?.delivery?.state == .retrying)
    #expect(seen.order?.delivery?.pending ?? 0 > 0)
    await platform.stop()
  }

  @Test("a service records sales only as the service the declaration names: another service's token is refused")
  func serviceIdentity() async throws {
    let platform = try await NestTestPlatform.start()
    let sale = directSale("order-that-does-not-exist", customer: "cust-x", isv: "isv-x", amount: 1_000)
    for service in ["catalog", "entitlement", "settlement", "metering"] {
      let refused = await code {
        _ = try await platform.settlement(as: .service, service) { try await $0.recordSale(sale) }
      }
      #expect(refused == .permissionDenied, "\(service)")
    }
    for service in ["catalog", "settlement"] {
      let refused = await code {
        _ = try await platform.entitlement(as: .service, service) {
          try await $0.createServiceInstance(.with { $0.orderID = "o" })
        }
      }
      #expect(refused == .permissionDenied, "\(service)")
    }
    #expect(try await platform.marketplace.balance(.customer, "cust-x") == 0)
    await platform.stop()
  }

  @Test("a statement is read back after it is issued: status, totals, obligations and the settlement reference")
  func statements() async throws {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let parties = ScenarioParties(isv: "isv-s", distributor: "dist-s", customer: "cust-s")
    let setup = try await marketplace.setUp(.scenario1, parties: parties)
    let order = try await marketplace.buy("cust-s", product: setup.productID, quantity: 2, periods: 3)
    _ = try await marketplace.waitForOrder(order.id)
    let settled = try await marketplace.settleOffline(isv: "isv-s", distributor: "dist-s", reference: "bank-77")
    let read = try await platform.settlement(as: .distributor, "dist-s") {
      try await $0.getStatement(.with { $0.statementID = settled.id })
    }
    #expect(read.statement?.status == .settled)
    #expect(read.statement?.externalReference == "bank-77")
    #expect(read.statement?.totals == [MoneyMath.money("USD", marketplace.prices.wholesale * 6)])
    #expect(read.obligations.map(\.id) == settled.obligationIds)
    #expect(read.obligations.allSatisfy { $0.status == .settled })
    let listed = try await platform.settlement(as: .isv, "isv-s") { try await $0.listStatements(.init()).statements }
    #expect(listed.map(\.id) == [settled.id])
    // Another pair's party neither reads nor lists it.
    #expect(
      await code {
        _ = try await platform.settlement(as: .isv, "isv-other") {
          try await $0.getStatement(.with { $0.statementID = settled.id })
        }
      } == .notFound)
    #expect(
      try await platform.settlement(as: .isv, "isv-other") { try await $0.listStatements(.init()).statements }.isEmpty)
    await platform.stop()
  }

  @Test("Reconcile checks orders and instances unless asked not to")
  func reconcileChecksOrders() async throws {
    let platform = try await NestTestPlatform.start()
    // A sale marketplace-order never made (recorded as marketplace-order would, by hand).
    _ = try await platform.settlement(as: .service, "marketplace-order") {
      try await $0.recordSale(
        .with {
          $0.orderID = "order-nobody-paid"
          $0.kind = .customerOrder
          $0.buyer = .with {
            $0.role = .customer
            $0.accountID = "cust-r"
          }
          $0.seller = .with {
            $0.role = .isv
            $0.accountID = "isv-r"
          }
          $0.amount = MoneyMath.money("USD", 500)
          $0.scenario = .with { $0.scenario = .direct }
        })
    }
    let checked = try await platform.marketplace.reconcile()
    #expect(checked.peersChecked)
    #expect(!checked.ok)
    #expect(checked.discrepancies.map(\.kind) == [.unknownOrder])
    let ledgerOnly = try await platform.settlement(as: .operator, "op") {
      try await $0.reconcile(.with { $0.skipPeerChecks = true })
    }
    #expect(!ledgerOnly.peersChecked)
    #expect(ledgerOnly.ok)
    await platform.stop()
  }
}
