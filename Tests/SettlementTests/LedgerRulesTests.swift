// The money rules of docs/design.md §5, each against an independent computation.
import NestDomain
import NestProto
import Settlement
import Testing

@Suite("Money and ledger rules")
struct LedgerRulesTests {
  /// floor(amount * bps / 10000) in 128-bit arithmetic: the reference the 64-bit formula must match.
  static func reference(_ amount: Int64, _ bps: UInt32) -> Int64 {
    let product = amount.multipliedFullWidth(by: Int64(bps))
    return Int64(10_000).dividingFullWidth(product).quotient
  }

  @Test(
    "commission is floored, exact for every int64 amount",
    arguments: [0, 1, 19, 20, 199, 200, 5_997, 9_999, 10_000, 123_456_789, Int64.max / 3, Int64.max] as [Int64])
  func commission(_ amount: Int64) {
    for bps: UInt32 in [0, 1, 333, 500, 9_999, 10_000] {
      #expect(MoneyMath.commission(amount, bps: bps) == Self.reference(amount, bps), "\(amount) at \(bps)")
    }
    #expect(MoneyMath.commission(5_997, bps: 500) == 299)  // 299.85 floors
    #expect(MoneyMath.commission(19, bps: 500) == 0)  // 0.95 floors
  }

  @Test("amounts that overflow int64 are refused")
  func overflow() {
    #expect(MoneyMath.amount(unit: 1_999, quantity: 3, periods: 2) == 11_994)
    #expect(MoneyMath.amount(unit: Int64.max / 2, quantity: 3, periods: 1) == nil)
    #expect(MoneyMath.amount(unit: 2, quantity: Int64.max / 2 + 1, periods: 1) == nil)
  }

  static let customer = AccountRef.with {
    $0.kind = .customer
    $0.accountID = "c"
  }
  static let distributor = AccountRef.with {
    $0.kind = .distributor
    $0.accountID = "d"
  }

  @Test("a sale: buyer pays the amount, the platform gets the commission, the seller the rest")
  func sale() {
    let postings = LedgerRules.sale(
      buyer: Self.customer, seller: Self.distributor, amount: MoneyMath.money("USD", 5_997), bps: 500)
    #expect(postings.map(\.account) == [Self.customer, LedgerRules.platform, Self.distributor])
    #expect(postings.map { $0.amount!.amountMinor } == [-5_997, 299, 5_698])
    #expect(LedgerRules.imbalance(postings).isEmpty)
  }

  @Test("a refund negates every posting; sale plus refund is zero for every account")
  func refund() {
    let sale = LedgerRules.sale(
      buyer: Self.customer, seller: Self.distributor, amount: MoneyMath.money("EUR", 10_001), bps: 777)
    let reversal = LedgerRules.reversal(of: sale)
    #expect(reversal.map { $0.amount!.amountMinor } == sale.map { -$0.amount!.amountMinor })
    #expect(reversal.map(\.account) == sale.map(\.account))
    var perAccount: [String: Int64] = [:]
    for posting in sale + reversal { perAccount["\(posting.account!)", default: 0] += posting.amount!.amountMinor }
    #expect(perAccount.values.allSatisfy { $0 == 0 })
  }

  @Test("usage is charged to the fee payer of each scenario and paid to the cloud")
  func usage() throws {
    let payers: [(Nest_Common_V1_Role, Nest_Settlement_V1_AccountKind)] = [
      (.customer, .customer), (.distributor, .distributor), (.isv, .isv),
    ]
    for (role, kind) in payers {
      let account = try LedgerRules.account(
        .with {
          $0.role = role; $0.accountID = "p"
        })
      #expect(account.kind == kind)
      let postings = LedgerRules.usage(payer: account, cost: MoneyMath.money("USD", 77))
      #expect(postings.map(\.account) == [account, LedgerRules.cloud])
      #expect(postings.map { $0.amount!.amountMinor } == [-77, 77])
    }
    #expect(throws: DomainError.self) {
      try LedgerRules.account(
        .with {
          $0.role = .operator; $0.accountID = "o"
        })
    }
    #expect(
      LedgerRules.owesOffline(.scenario1) && LedgerRules.owesOffline(.scenario2) && LedgerRules.owesOffline(.scenario4))
    #expect(!LedgerRules.owesOffline(.scenario3) && !LedgerRules.owesOffline(.direct))
  }

  @Test("statement totals: per currency, sorted, credits included")
  func totals() {
    let totals = MoneyMath.totals([
      MoneyMath.money("USD", 7_200), MoneyMath.money("EUR", 100), MoneyMath.money("USD", -7_200),
      MoneyMath.money("USD", 3_702), MoneyMath.money("EUR", 1),
    ])
    #expect(totals == [MoneyMath.money("EUR", 101), MoneyMath.money("USD", 3_702)])
  }

  @Test("RecordSale requests are checked field by field")
  func saleValidation() {
    #expect(throws: DomainError.self) {
      do {
        try LedgerRules.check(
          .with {
            $0.kind = .linkedOrder
            $0.buyer = .with { $0.role = .operator }
            $0.amount = MoneyMath.money("usd", -1)
            $0.commissionBps = 10_001
            $0.scenario = .with { $0.scenario = .scenario2 }
          })
      } catch let error as DomainError {
        #expect(
          Set(error.violations.map(\.field)) == [
            "order_id", "parent_order_id", "buyer.role", "buyer.account_id", "seller", "amount.currency",
            "amount.amount_minor", "commission_bps",
          ])
        throw error
      }
    }
  }
}
