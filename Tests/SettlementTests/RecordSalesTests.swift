// RecordSales: several sales in one call, each recorded as RecordSale records it and
// answered on its own, so that one refused sale leaves the others recorded.
import Foundation
import GRDB
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import Settlement
import Testing

@Suite("RecordSales")
struct RecordSalesTests {
  typealias Method = Nest_Settlement_V1_SettlementService.Method

  static func sale(_ orderID: String, amount: Int64 = 10_000, token: String = "")
    -> Nest_Settlement_V1_RecordSaleRequest
  {
    var sale = directSale(orderID, customer: "c1", isv: "i1", amount: amount, commissionBps: 1_000)
    sale.clientToken = token
    return sale
  }

  /// What the customer c1's account holds, per currency, in minor units.
  static func customerBalance(_ database: NestDatabase) async throws -> [Int64] {
    try await database.read {
      try SettlementStore.balance(
        of: AccountRef.with {
          $0.kind = .customer
          $0.accountID = "c1"
        }, in: $0
      ).amounts.map(\.amountMinor)
    }
  }

  static func service() throws -> (SettlementService, NestDatabase, String) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sales-\(UUID()).sqlite").path
    let database = try ServiceDatabase.open(path: path, migrations: SettlementStore.migrations)
    return (
      SettlementService(store: SettlementStore(database: database), peers: FakePeers(instances: [:])), database, path
    )
  }

  static func recordSales(_ sales: [Nest_Settlement_V1_RecordSaleRequest], on service: SettlementService)
    async throws -> [Nest_Settlement_V1_SaleResult]
  {
    try await calling(Method.RecordSales.descriptor, as: .service, "marketplace-order") {
      try await service.recordSales(request: .with { $0.sales = sales }, context: $0).results
    }
  }

  @Test(
    "each sale has its result: recorded, the first result again, or refused with RecordSale's code; refusals write nothing"
  )
  func perSale() async throws {
    let (service, database, path) = try Self.service()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var first: [String: Nest_Settlement_V1_RecordSaleResponse] = [:]
    for id in ["o-before", "o-before-2"] {
      first[id] = try await calling(Method.RecordSale.descriptor, as: .service, "marketplace-order") {
        try await service.recordSale(request: Self.sale(id), context: $0)
      }
    }
    var invalid = Self.sale("o-invalid")
    invalid.amount = MoneyMath.money("USD", -5)
    let results = try await Self.recordSales(
      [Self.sale("o-new", token: "k-new"), Self.sale("o-before"), Self.sale("o-before-2", amount: 1), invalid],
      on: service)
    #expect(results.map(\.orderID) == ["o-new", "o-before", "o-before-2", "o-invalid"])
    #expect(
      results.map(\.errorCode)
        == [0, 0, Int32(RPCError.Code.alreadyExists.rawValue), Int32(RPCError.Code.invalidArgument.rawValue)])
    #expect(results[0].recorded?.transaction?.id.isEmpty == false)
    // A repeat of a recorded sale answers its first transaction.
    #expect(results[1].recorded?.transaction?.id == first["o-before"]?.transaction?.id)
    #expect(results[2].errorMessage.contains("different snapshot"), "\(results[2].errorMessage)")
    #expect(results[3].errorMessage.contains("amount"), "\(results[3].errorMessage)")
    #expect(results[2].recorded == nil && results[3].recorded == nil)

    // A later batch: the same order with another snapshot is refused alone.
    let again = try await Self.recordSales([Self.sale("o-new", amount: 99), Self.sale("o-later")], on: service)
    #expect(again.map(\.errorCode) == [Int32(RPCError.Code.alreadyExists.rawValue), 0])
    // The customer paid for the four sales recorded (o-before, o-before-2, o-new, o-later), once
    // each; the refused ones cost nothing.
    #expect(try await Self.customerBalance(database) == [-40_000])
  }

  @Test("the call is refused as a whole when it holds no sales, more than 256, or one order twice")
  func wholeCall() async throws {
    let (service, database, path) = try Self.service()
    defer { try? FileManager.default.removeItem(atPath: path) }
    for sales in [[], (0...256).map { Self.sale("o\($0)") }, [Self.sale("o1"), Self.sale("o2"), Self.sale("o1")]] {
      let refused = await code { _ = try await Self.recordSales(sales, on: service) }
      #expect(refused == .invalidArgument, "\(sales.count) sales")
    }
    // Nothing of a refused call was recorded.
    #expect(try await Self.customerBalance(database).isEmpty)
  }

  @Test("a sale the ledger's own constraints refuse fails alone, its savepoint undone; the others are recorded")
  func constraintRefusal() async throws {
    let (service, database, path) = try Self.service()
    defer { try? FileManager.default.removeItem(atPath: path) }
    // The ledger refusing one sale as its triggers refuse a bad write: SQLITE_CONSTRAINT.
    try await database.write { db in
      try db.execute(
        sql: """
          CREATE TRIGGER refuse_o_bad BEFORE INSERT ON sales WHEN NEW.order_id = 'o-bad'
          BEGIN SELECT RAISE(ABORT, 'refused by the test'); END
          """)
    }
    let results = try await Self.recordSales([Self.sale("o-1"), Self.sale("o-bad"), Self.sale("o-2")], on: service)
    #expect(results.map(\.errorCode) == [0, Int32(RPCError.Code.internalError.rawValue), 0])
    #expect(results[1].errorMessage.contains("SQLITE_CONSTRAINT"), "\(results[1].errorMessage)")
    // o-bad's transaction, written before the refused row, went with its savepoint.
    #expect(try await Self.customerBalance(database) == [-20_000])
  }

  @Test("the same client token and batch return the first results; another batch under it is ALREADY_EXISTS")
  func batchToken() async throws {
    let (service, _, path) = try Self.service()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let call = { (sales: [Nest_Settlement_V1_RecordSaleRequest]) in
      try await calling(Method.RecordSales.descriptor, as: .service, "marketplace-order") {
        try await service.recordSales(
          request: .with {
            $0.clientToken = "batch-1"
            $0.sales = sales
          }, context: $0)
      }
    }
    let first = try await call([Self.sale("o-1")])
    #expect(try await call([Self.sale("o-1")]) == first)
    #expect(await code { _ = try await call([Self.sale("o-2")]) } == .alreadyExists)
  }
}
