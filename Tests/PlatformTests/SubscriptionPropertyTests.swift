// Random sequences of purchases, renewals, plan changes, trials, refunds, usage and time
// across the four scenarios and direct sales, against a plain model of every balance and of
// the offline wholesale owed; after every step the platform's balances equal the model's and
// Reconcile is clean. The seed is printed with any failure (NEST_PROPERTY_SEED repeats a run).
import Foundation
import GRPCCore
import NestDomain
import NestTestKit
import Testing

/// The model: what every account holds, what each distributor owes offline, and each
/// instance's term as the rules say it should be.
struct Model {
  struct Account: Hashable {
    var kind: Nest_Settlement_V1_AccountKind
    var id: String
  }

  struct Term {
    var kind: ScenarioKind
    var parties: ScenarioParties
    var customer: String
    var plan: String
    var quantity: Int64
    var termStart: Int64
    var end: Int64
    var pending: (plan: String, quantity: Int64)?
    var trial: Bool
    var released: Bool
  }

  /// A paid order and what its refund gives back.
  struct Paid {
    var order: Nest_Order_V1_Order
    var moves: [(Account, Int64)]
    var owed: Int64
    var instance: String
  }

  var balances: [Account: Int64] = [:]
  var owed: [String: Int64] = [:]  // per "isv/distributor": OPEN obligations
  var terms: [String: Term] = [:]
  var paid: [Paid] = []

  mutating func apply(_ moves: [(Account, Int64)]) {
    for (account, amount) in moves { self.balances[account, default: 0] += amount }
  }
}

@Suite("Subscriptions, property", .serialized, .timeLimit(.minutes(5)))
struct SubscriptionPropertyTests {
  static let prices = PriceList()

  static func unit(_ plan: String, _ kind: ScenarioKind) -> Int64 {
    let base = kind.b == nil ? prices.aPrice : prices.bPrice
    return plan == "pro" ? base * prices.proFactor : base
  }

  /// The money moves of a sale of `amount` (and, for B, `wholesale`) as the money rules say.
  static func saleMoves(
    _ kind: ScenarioKind, parties: ScenarioParties, customer: String, amount: Int64, wholesale: Int64
  )
    -> (moves: [(Model.Account, Int64)], owed: Int64)
  {
    let c = MoneyMath.commission(amount, bps: 500)
    var moves: [(Model.Account, Int64)] = [(.init(kind: .customer, id: customer), -amount)]
    guard kind.b != nil else {
      moves.append((.init(kind: .isv, id: parties.isv), amount - c))
      return (moves, 0)
    }
    moves.append((.init(kind: .distributor, id: parties.distributor), amount - c))
    if kind.online {
      if wholesale > 0 {
        moves.append((.init(kind: .distributor, id: parties.distributor), -wholesale))
        moves.append((.init(kind: .isv, id: parties.isv), wholesale - MoneyMath.commission(wholesale, bps: 500)))
      }
      return (moves, 0)
    }
    return (moves, wholesale)
  }

  @Test("random subscriptions match a plain model of every balance; Reconcile clean after every step")
  func randomSequences() async throws {
    let seed =
      ProcessInfo.processInfo.environment["NEST_PROPERTY_SEED"].flatMap(UInt64.init)
      ?? UInt64.random(in: 0...UInt64.max)
    var random = SeededGenerator(state: seed)
    let platform = try await NestTestPlatform.start(
      settings: [.entitlement: ["term.interval.ms": "20", "expiry.grace.ms": "\(366 * day)"]], clockStartingAt: start)
    let clock = try #require(platform.clock)
    let market = platform.marketplace
    let prices = Self.prices
    var setups: [(ScenarioKind, ScenarioParties, ScenarioSetup)] = []
    for kind in ScenarioKind.all {
      let parties = ScenarioParties(kind, run: "prop")
      setups.append((kind, parties, try await market.setUp(kind, parties: parties)))
    }
    var model = Model()
    var customers = 0
    var log: [String] = []

    for step in 0..<40 {
      let now = clock.nowUnixMs
      let live = model.terms.filter { !$0.value.released }.keys.sorted()
      let changeable = live.filter { now < model.terms[$0]!.end }
      let refundable = model.paid.indices.filter { model.paid[$0].order.status != .refunded }
      switch Int.random(in: 0..<8, using: &random) {
      case 0, 1:  // a purchase, or a trial
        let (kind, parties, setup) = setups.randomElement(using: &random)!
        customers += 1
        let customer = "cust-prop-\(customers)"
        let trial = Bool.random(using: &random)
        let plan = trial ? "monthly" : ["monthly", "pro"].randomElement(using: &random)!
        let quantity = Int64.random(in: 1...3, using: &random)
        let order = try await market.buy(
          customer, product: setup.productID, plan: plan, quantity: UInt32(quantity), trial: trial)
        _ = try await market.waitForOrder(order.id)
        let instance = try await market.instance(of: order)
        let days = trial ? Int64(prices.trialDays) : 30
        model.terms[instance.id] = .init(
          kind: kind, parties: parties, customer: customer, plan: plan, quantity: quantity, termStart: now,
          end: now + days * day, pending: nil, trial: trial, released: false)
        if !trial {
          let amount = Self.unit(plan, kind) * quantity
          let sale = Self.saleMoves(
            kind, parties: parties, customer: customer, amount: amount, wholesale: prices.wholesale * quantity)
          model.apply(sale.moves)
          model.owed["\(parties.isv)/\(parties.distributor)", default: 0] += sale.owed
          model.paid.append(.init(order: order, moves: sale.moves, owed: sale.owed, instance: instance.id))
        }
        log.append("\(step): \(kind) \(trial ? "trial" : "buy") \(plan) x\(quantity) -> \(instance.id)")
      case 2 where !live.isEmpty:  // a renewal by hand
        let id = live.randomElement(using: &random)!
        var term = model.terms[id]!
        let plan = term.pending?.plan ?? term.plan
        let quantity = term.pending?.quantity ?? term.quantity
        let order = try await market.renew(term.customer, instance: id)
        _ = try await market.waitForOrder(order.id)
        let amount = Self.unit(plan, term.kind) * quantity
        let sale = Self.saleMoves(
          term.kind, parties: term.parties, customer: term.customer, amount: amount,
          wholesale: prices.wholesale * quantity)
        model.apply(sale.moves)
        model.owed["\(term.parties.isv)/\(term.parties.distributor)", default: 0] += sale.owed
        model.paid.append(.init(order: order, moves: sale.moves, owed: sale.owed, instance: id))
        term.termStart = max(term.end, now)
        term.end = term.termStart + 30 * day
        (term.plan, term.quantity, term.pending, term.trial) = (plan, quantity, nil, false)
        model.terms[id] = term
        log.append("\(step): renew \(id) \(plan) x\(quantity) = \(amount)")
      case 3 where !changeable.isEmpty:  // a plan or quantity change
        let id = changeable.randomElement(using: &random)!
        var term = model.terms[id]!
        var plan = ["monthly", "pro"].randomElement(using: &random)!
        var quantity = Int64.random(in: 1...3, using: &random)
        if plan == term.plan && quantity == term.quantity {
          (plan, quantity) = (term.plan == "pro" ? "monthly" : "pro", term.quantity)
        }
        let from = Self.unit(term.plan, term.kind) * term.quantity
        let to = Self.unit(plan, term.kind) * quantity
        let order = try await market.change(term.customer, instance: id, plan: plan, quantity: UInt32(quantity))
        _ = try await market.waitForOrder(order.id)
        if term.trial || to > from {
          // Every day left of the term, however many periods it holds.
          let length = 30 * day
          let remaining = term.end - now
          let delta = term.trial ? 0 : (to - from) * remaining / length
          let wholesaleDelta =
            term.trial || quantity <= term.quantity
            ? 0 : prices.wholesale * (quantity - term.quantity) * remaining / length
          #expect(order.price?.amount?.amountMinor == delta, "seed \(seed) \(log.suffix(3))")
          if delta > 0 {
            let sale = Self.saleMoves(
              term.kind, parties: term.parties, customer: term.customer, amount: delta, wholesale: wholesaleDelta)
            model.apply(sale.moves)
            model.owed["\(term.parties.isv)/\(term.parties.distributor)", default: 0] += sale.owed
            model.paid.append(.init(order: order, moves: sale.moves, owed: sale.owed, instance: id))
          }
          (term.plan, term.quantity, term.pending) = (plan, quantity, nil)
        } else {
          #expect(order.price?.amount?.amountMinor == 0, "seed \(seed)")
          term.pending = (plan, quantity)
        }
        model.terms[id] = term
        log.append("\(step): change \(id) to \(plan) x\(quantity)")
      case 4 where !refundable.isEmpty:  // a refund by the seller
        let index = refundable.randomElement(using: &random)!
        let paid = model.paid[index]
        let seller = paid.order.seller ?? .init()
        _ = try await platform.orders(as: seller.role, seller.accountID) {
          try await $0.refundOrder(
            .with {
              $0.orderID = paid.order.id
              $0.reason = "property"
            })
        }
        _ = try await market.waitForOrder(paid.order.id)
        model.apply(paid.moves.map { ($0.0, -$0.1) })
        let term = model.terms[paid.instance]!
        model.owed["\(term.parties.isv)/\(term.parties.distributor)", default: 0] -= paid.owed
        model.paid[index].order.status = .refunded
        if paid.order.kind == .customer { model.terms[paid.instance]?.released = true }
        log.append("\(step): refund \(paid.order.id) (\(paid.order.kind))")
      case 5 where !live.isEmpty:  // cloud usage, charged to the fee payer
        let id = live.randomElement(using: &random)!
        let instance = try await market.instance(id)
        let cost = Int64.random(in: 1...500, using: &random)
        let usage = try await platform.settlement(as: .service, "metering") {
          try await $0.recordUsage(
            .with {
              $0.records = [
                .with {
                  $0.recordID = "prop/\(id)/\(step)"
                  $0.instanceID = id
                  $0.meteredItem = "ecs.vcpu-hours"
                  $0.quantity = 1
                  $0.unit = "vcpu-hour"
                  $0.cost = MoneyMath.money("USD", cost)
                  $0.recordedAtUnixMs = now
                }
              ]
            })
        }
        #expect(usage.results.first?.result == .accepted, "seed \(seed): \(usage.results)")
        let payer = instance.feePayer ?? .init()
        let kind: Nest_Settlement_V1_AccountKind =
          switch payer.role {
          case .customer: .customer
          case .distributor: .distributor
          default: .isv
          }
        model.apply([(.init(kind: kind, id: payer.accountID), -cost)])
        log.append("\(step): usage \(id) \(cost)")
      default:  // time passes
        let days = Int64.random(in: 0...20, using: &random)
        try clock.advance(days: days)
        log.append("\(step): +\(days) days")
      }

      for (account, expected) in model.balances {
        let actual = try await market.balance(account.kind, account.id)
        #expect(actual == expected, "seed \(seed): \(account.kind) \(account.id) after \(log.suffix(4))")
      }
      for (pair, expected) in model.owed {
        let ids = pair.split(separator: "/").map(String.init)
        let open = try await platform.settlement(as: .operator, "op") {
          try await $0.listObligations(
            .with {
              $0.isvID = ids[0]
              $0.distributorID = ids[1]
              $0.statuses = [.open]
            }
          ).obligations
        }
        #expect(open.reduce(0) { $0 + ($1.amount?.amountMinor ?? 0) } == expected, "seed \(seed): owed \(pair)")
      }
      for (id, term) in model.terms where !term.released {
        #expect(try await market.instance(id).expiresAtUnixMs == term.end, "seed \(seed): term of \(id)")
      }
      let reconcile = try await market.reconcile()
      #expect(reconcile.ok, "seed \(seed) after \(log.suffix(3)): \(reconcile.discrepancies)")
    }
    await platform.stop()
  }
}
