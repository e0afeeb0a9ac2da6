// The ledger rules of docs/design.md §5: what a sale, a refund and a usage record post, who
// owes whom offline, and the checks that prove the ledger whole. Pure.
public import NestDomain
public import NestProto

public typealias Posting = Nest_Settlement_V1_Posting
public typealias Transaction = Nest_Settlement_V1_LedgerTransaction
public typealias AccountRef = Nest_Settlement_V1_AccountRef

public enum LedgerRules {
  public static let platform = AccountRef.with { $0.kind = .platform }
  public static let cloud = AccountRef.with { $0.kind = .cloud }

  /// The ledger account of a party: its role decides the kind.
  public static func account(_ party: Nest_Common_V1_Party) throws(DomainError) -> AccountRef {
    var violations: [DomainError.Violation] = []
    let kind: Nest_Settlement_V1_AccountKind
    switch party.role {
    case .customer: kind = .customer
    case .distributor: kind = .distributor
    case .isv: kind = .isv
    default:
      kind = .unspecified
      violations.append(.init(field: "party.role", description: "must be customer, distributor or isv"))
    }
    if party.accountID.isEmpty { violations.append(.init(field: "party.account_id", description: "is required")) }
    guard violations.isEmpty else { throw .invalid(violations) }
    return .with {
      $0.kind = kind
      $0.accountID = party.accountID
    }
  }

  static func posting(_ account: AccountRef, _ currency: String, _ amount: Int64, _ memo: String) -> Posting {
    .with {
      $0.account = account
      $0.amount = MoneyMath.money(currency, amount)
      $0.memo = memo
    }
  }

  /// A sale: buyer -amount, platform +commission, seller +(amount - commission).
  public static func sale(buyer: AccountRef, seller: AccountRef, amount: Nest_Common_V1_Money, bps: UInt32) -> [Posting]
  {
    let commission = MoneyMath.commission(amount.amountMinor, bps: bps)
    return [
      posting(buyer, amount.currency, -amount.amountMinor, "price"),
      posting(platform, amount.currency, commission, "commission"),
      posting(seller, amount.currency, amount.amountMinor - commission, "seller_net"),
    ]
  }

  /// The SALE transaction of a recorded sale (checked by `check` first).
  public static func saleTransaction(_ request: Nest_Settlement_V1_RecordSaleRequest, id: String, now: Int64)
    throws(DomainError) -> Transaction
  {
    guard let buyer = request.buyer, let seller = request.seller, let amount = request.amount else {
      throw .invalid("amount", "a sale needs buyer, seller and amount")
    }
    let postings = sale(
      buyer: try account(buyer), seller: try account(seller), amount: amount, bps: request.commissionBps)
    return .with {
      $0.id = id
      $0.kind = .sale
      $0.source = .orderID(request.orderID)
      $0.postings = postings
      $0.createdAtUnixMs = now
    }
  }

  /// The REFUND transaction reversing `original` (a SALE of `orderID`).
  public static func reversalTransaction(of original: Transaction, orderID: String, id: String, now: Int64)
    -> Transaction
  {
    .with {
      $0.id = id
      $0.kind = .refund
      $0.source = .orderID(orderID)
      $0.postings = reversal(of: original.postings)
      $0.reversesTransactionID = original.id
      $0.createdAtUnixMs = now
    }
  }

  /// The USAGE transaction charging a record's cost to the instance's fee payer.
  public static func usageTransaction(
    _ record: Nest_Settlement_V1_UsageRecord, payer: AccountRef, instanceID: String, id: String, now: Int64
  ) -> Transaction {
    .with {
      $0.id = id
      $0.kind = .usage
      $0.source = .usageRecordID(record.recordID)
      $0.instanceID = instanceID
      $0.postings = usage(payer: payer, cost: record.cost ?? .init())
      $0.createdAtUnixMs = now
    }
  }

  /// A refund: every posting of the sale negated.
  public static func reversal(of postings: [Posting]) -> [Posting] {
    postings.map { posting in
      var reversed = posting
      reversed.amount?.amountMinor = -(posting.amount?.amountMinor ?? 0)
      reversed.memo = "reversal of \(posting.memo)"
      return reversed
    }
  }

  /// Cloud usage: the fee payer -cost, cloud +cost.
  public static func usage(payer: AccountRef, cost: Nest_Common_V1_Money) -> [Posting] {
    [
      posting(payer, cost.currency, -cost.amountMinor, "usage"),
      posting(cloud, cost.currency, cost.amountMinor, "usage"),
    ]
  }

  /// Scenarios 1, 2 and 4 settle the wholesale amount offline.
  public static func owesOffline(_ scenario: Nest_Common_V1_Scenario) -> Bool {
    scenario == .scenario1 || scenario == .scenario2 || scenario == .scenario4
  }

  /// The net of `postings` per currency that is not zero: empty when balanced.
  public static func imbalance(_ postings: [Posting]) -> [Nest_Common_V1_Money] {
    MoneyMath.totals(postings.compactMap(\.amount)).filter { $0.amountMinor != 0 }
  }

  /// Checks a RecordSale request before anything is posted.
  public static func check(_ request: Nest_Settlement_V1_RecordSaleRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    if request.orderID.isEmpty { violations.append(.init(field: "order_id", description: "is required")) }
    switch request.kind {
    case .customerOrder where !request.parentOrderID.isEmpty:
      violations.append(.init(field: "parent_order_id", description: "must be empty for a customer order"))
    case .linkedOrder where request.parentOrderID.isEmpty:
      violations.append(.init(field: "parent_order_id", description: "is required for a linked order"))
    case .customerOrder, .linkedOrder: break
    default: violations.append(.init(field: "kind", description: "must be CUSTOMER_ORDER or LINKED_ORDER"))
    }
    for (field, party) in [("buyer", request.buyer), ("seller", request.seller)] {
      guard let party else {
        violations.append(.init(field: field, description: "is required"))
        continue
      }
      do throws(DomainError) {
        _ = try account(party)
      } catch {
        violations += error.violations.map {
          .init(field: "\(field).\($0.field.dropFirst("party.".count))", description: $0.description)
        }
      }
    }
    violations += MoneyRules.violations(request.amount, field: "amount")
    if request.commissionBps > 10_000 {
      violations.append(.init(field: "commission_bps", description: "must be at most 10000"))
    }
    let scenario = request.scenario?.scenario ?? .unspecified
    switch scenario {
    case .scenario1, .scenario2, .scenario3, .scenario4, .direct: break
    default: violations.append(.init(field: "scenario.scenario", description: "must be 1-4 or DIRECT"))
    }
    if request.kind == .customerOrder && owesOffline(scenario) {
      if let wholesale = request.wholesaleAmount {
        violations += MoneyRules.violations(wholesale, field: "wholesale_amount")
        if let amount = request.amount, wholesale.currency != amount.currency {
          violations.append(.init(field: "wholesale_amount.currency", description: "must be the currency of amount"))
        }
      } else {
        violations.append(.init(field: "wholesale_amount", description: "is required in scenarios 1, 2 and 4"))
      }
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// Checks one usage record; the reason it is INVALID, or nil.
  public static func problem(with record: Nest_Settlement_V1_UsageRecord) -> String? {
    if record.recordID.isEmpty { return "record_id: required" }
    if record.instanceID.isEmpty { return "instance_id: required" }
    if record.meteredItem.isEmpty { return "metered_item: required" }
    if record.quantity < 0 { return "quantity: negative" }
    if record.recordedAtUnixMs <= 0 { return "recorded_at_unix_ms: required" }
    if let problem = MoneyRules.violations(record.cost, field: "cost").first {
      return "\(problem.field): \(problem.description)"
    }
    if record.attributes.count > 32
      || record.attributes.contains(where: { $0.key.utf8.count > 63 || $0.value.utf8.count > 256 })
    {
      return "attributes: at most 32, keys at most 63 bytes, values at most 256 bytes"
    }
    return nil
  }
}
