// A property of the whole settlement service, in-process over its real store: any sequence of
// sales, refunds and usage leaves the ledger balanced per currency, every account's balance
// equal to what a plain model of the same operations says, and Reconcile clean.
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import Settlement
import Testing

/// Instances as entitlement would answer: fee payer by scenario.
struct FakePeers: SettlementPeers {
  let instances: [String: Nest_Entitlement_V1_ServiceInstance]
  func instance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance? { self.instances[id] }
  func paidOrders() async throws -> [Nest_Order_V1_Order] { [] }
  func instanceOrderIDs() async throws -> [String] { [] }
}

@Suite("Ledger property")
struct LedgerPropertyTests {
  @Test(
    "random sales, refunds and usage keep the ledger balanced and every balance exact",
    arguments: [1, 2, 3] as [UInt64])
  func balanced(seed: UInt64) async throws {
    var random = SeededGenerator(state: seed)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let payers: [Nest_Common_V1_Party] = [
      .with {
        $0.role = .customer; $0.accountID = "c1"
      },
      .with {
        $0.role = .distributor; $0.accountID = "d1"
      },
      .with {
        $0.role = .isv; $0.accountID = "i1"
      },
    ]
    let instances = Dictionary(
      uniqueKeysWithValues: (0..<3).map { index in
        (
          "inst-\(index)",
          Nest_Entitlement_V1_ServiceInstance.with {
            $0.id = "inst-\(index)"
            $0.feePayer = payers[index]
            $0.resourceOwner = payers[index]
          }
        )
      })
    let database = try ServiceDatabase.open(path: path, migrations: SettlementStore.migrations)
    let service = SettlementService(store: SettlementStore(database: database), peers: FakePeers(instances: instances))
    typealias Method = Nest_Settlement_V1_SettlementService.Method
    var model: [String: Int64] = [:]  // "kind/account/currency" -> balance
    func post(_ kind: Nest_Settlement_V1_AccountKind, _ account: String, _ currency: String, _ amount: Int64) {
      model["\(kind)/\(account)/\(currency)", default: 0] += amount
    }
    var sold: [(id: String, postings: [(Nest_Settlement_V1_AccountKind, String, String, Int64)])] = []
    var refunded: Set<String> = []
    do {
      for step in 0..<150 {
        let currency = ["USD", "EUR", "JPY"][Int(random.next() % 3)]
        switch random.next() % 3 {
        case 0:
          let amount = Int64(random.next() % 1_000_000)
          let bps = UInt32(random.next() % 10_001)
          let scenario: Nest_Common_V1_Scenario = [.scenario1, .scenario2, .scenario3, .scenario4, .direct][
            Int(random.next() % 5)]
          let seller: Nest_Common_V1_Party =
            scenario == .direct
            ? .with {
              $0.role = .isv; $0.accountID = "i1"
            }
            : .with {
              $0.role = .distributor; $0.accountID = "d1"
            }
          let id = "order-\(step)"
          _ = try await calling(Method.RecordSale.descriptor, as: .service, "marketplace-order") { context in
            try await service.recordSale(
              request: .with {
                $0.orderID = id
                $0.kind = .customerOrder
                $0.buyer = .with {
                  $0.role = .customer; $0.accountID = "c1"
                }
                $0.seller = seller
                $0.amount = MoneyMath.money(currency, amount)
                $0.commissionBps = bps
                $0.scenario = .with {
                  $0.scenario = scenario
                  $0.isvID = "i1"
                  $0.distributorID = "d1"
                }
                if LedgerRules.owesOffline(scenario) { $0.wholesaleAmount = MoneyMath.money(currency, amount / 2) }
                $0.paidAtUnixMs = 1
              }, context: context)
          }
          let commission = amount * Int64(bps) / 10_000  // fits: amount < 1e6
          let sellerKind: Nest_Settlement_V1_AccountKind = scenario == .direct ? .isv : .distributor
          let postings = [
            (Nest_Settlement_V1_AccountKind.customer, "c1", currency, -amount), (.platform, "", currency, commission),
            (sellerKind, seller.accountID, currency, amount - commission),
          ]
          for posting in postings { post(posting.0, posting.1, posting.2, posting.3) }
          sold.append((id, postings))
        case 1:
          guard let sale = sold.filter({ !refunded.contains($0.id) }).randomElement(using: &random) else { continue }
          // A redelivered refund changes nothing.
          for _ in 0..<2 {
            _ = try await calling(Method.RecordRefund.descriptor, as: .service, "marketplace-order") {
              try await service.recordRefund(request: .with { $0.orderID = sale.id }, context: $0)
            }
          }
          refunded.insert(sale.id)
          for posting in sale.postings { post(posting.0, posting.1, posting.2, -posting.3) }
        default:
          let instance = Int(random.next() % 3)
          let cost = Int64(random.next() % 10_000)
          let recordID = "usage-\(random.next() % 40)"  // repeats are DUPLICATE, charged once
          let result = try await calling(Method.RecordUsage.descriptor, as: .service, "metering") { context in
            try await service.recordUsage(
              request: .with {
                $0.records = [
                  .with {
                    $0.recordID = recordID
                    $0.instanceID = "inst-\(instance)"
                    $0.meteredItem = "cpu"
                    $0.cost = MoneyMath.money(currency, cost)
                    $0.recordedAtUnixMs = 1
                  }
                ]
              }, context: context
            ).results[0]
          }
          if result.result == .accepted {
            let payer = payers[instance]
            post(try LedgerRules.account(payer).kind, payer.accountID, currency, -cost)
            post(.cloud, "", currency, cost)
          } else {
            #expect(result.result == .duplicate)
          }
        }
      }
    }
    // The ledger alone: these sales have no orders elsewhere.
    let reconcile = try await calling(Method.Reconcile.descriptor, as: .operator, "op") {
      try await service.reconcile(request: .with { $0.skipPeerChecks = true }, context: $0)
    }
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    #expect(reconcile.sums.allSatisfy { $0.net?.amountMinor == 0 })
    for (key, expected) in model {
      let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
      let kind = Nest_Settlement_V1_AccountKind.allCases.first { "\($0)" == parts[0] }!
      let balance = try await calling(Method.GetBalance.descriptor, as: .operator, "op") { context in
        try await service.getBalance(
          request: .with {
            $0.account = .with {
              $0.kind = kind
              $0.accountID = parts[1]
            }
          }, context: context
        ).balance!
      }
      let actual = balance.amounts.first { $0.currency == parts[2] }?.amountMinor ?? 0
      #expect(actual == expected, "\(key)")
    }
  }
}
