// What renewals and plan changes cost: proration at the start, middle and last millisecond
// of a term, its rounding, int64 extremes, downgrades and trials; renewal targets.
import MarketplaceOrder
import NestDomain
import NestProto
import Testing

@Suite("Subscription orders")
struct SubscriptionOrdersTests {
  static let day: Int64 = 24 * 3600 * 1000

  func instance(unit: Int64, quantity: Int32 = 1, trial: Bool = false, wholesale: Int64? = nil)
    -> Nest_Entitlement_V1_ServiceInstance
  {
    .with {
      $0.id = "i"
      $0.status = .deployed
      $0.quantity = quantity
      $0.expiresAtUnixMs = 30 * Self.day
      $0.subscription = .with {
        $0.plan = .with {
          $0.productID = "p"
          $0.planID = "monthly"
          $0.billingPeriod = .month
          $0.unitPrice = MoneyMath.money("USD", unit)
          if let wholesale { $0.wholesaleUnitPrice = MoneyMath.money("USD", wholesale) }
        }
        $0.status = trial ? .trial : .active
        $0.trial = trial
        $0.termStartedAtUnixMs = 0
      }
    }
  }

  func plan(_ id: String, _ unit: Int64) -> Nest_Catalog_V1_Plan {
    .with {
      $0.planID = id
      $0.billingPeriod = .month
      $0.unitPrice = MoneyMath.money("USD", unit)
    }
  }

  @Test("proration: the whole difference at the start, its part in the middle, nothing at the end; floored")
  func proration() throws {
    let from = instance(unit: 1_000)
    func price(at now: Int64) throws -> Int64 {
      try SubscriptionOrders.change(
        from, to: plan("pro", 2_000), quantity: 1, wholesaleUnit: nil, commissionBps: 500, now: now
      ).price.amount?.amountMinor ?? -1
    }
    #expect(try price(at: 0) == 1_000)
    #expect(try price(at: 15 * Self.day) == 500)
    #expect(try price(at: 10 * Self.day) == 666)  // 1000 x 20/30 = 666.67, floored
    #expect(try price(at: 30 * Self.day - 1) == 0)  // 1000 x 1 ms / 30 days
    #expect(try price(at: 30 * Self.day) == 0)
    // The split of what is charged: commission floored, the rest the seller's.
    let middle = try SubscriptionOrders.change(
      from, to: plan("pro", 2_000), quantity: 1, wholesaleUnit: nil, commissionBps: 500, now: 10 * Self.day)
    #expect(middle.price.commission?.amountMinor == 33)
    #expect(middle.price.sellerNet?.amountMinor == 633)
    #expect(middle.change.immediate)
    #expect(middle.change.fromPlanID == "monthly")
  }

  @Test("MoneyMath.prorate: exact over the whole int64 range, whole periods and a part, nil past int64")
  func extremes() {
    #expect(MoneyMath.prorate(Int64.max, remaining: Int64.max - 1, period: Int64.max) == Int64.max - 1)
    #expect(MoneyMath.prorate(Int64.max, remaining: 1, period: 3) == Int64.max / 3)
    #expect(MoneyMath.prorate(7, remaining: -5, period: 10) == 0)
    #expect(MoneyMath.prorate(7, remaining: 25, period: 10) == 17)  // two periods and a half, floored
    #expect(MoneyMath.prorate(7, remaining: 5, period: 0) == 0)
    #expect(MoneyMath.prorate(Int64.max, remaining: 2, period: 1) == nil)
  }

  @Test("a term of several periods (bought or renewed ahead) prorates every period left")
  func severalPeriods() throws {
    var from = instance(unit: 1_000)
    from.expiresAtUnixMs = 90 * Self.day
    let change = try SubscriptionOrders.change(
      from, to: plan("pro", 2_000), quantity: 1, wholesaleUnit: nil, commissionBps: 0, now: 15 * Self.day)
    #expect(change.price.amount?.amountMinor == 2_500)  // 75 days left: two and a half months
    #expect(change.change.periodMs == 30 * Self.day)
  }

  @Test("a price per period that overflows int64 is INVALID_ARGUMENT")
  func overflow() {
    do {
      _ = try SubscriptionOrders.change(
        instance(unit: 1), to: plan("huge", Int64.max / 2), quantity: 3, wholesaleUnit: nil, commissionBps: 0, now: 0)
      Issue.record("an overflowing price was accepted")
    } catch {
      #expect(error.code == .invalidArgument)
    }
  }

  @Test("a downgrade costs nothing and waits; during a trial every change is free and at once")
  func downgradesAndTrials() throws {
    let down = try SubscriptionOrders.change(
      instance(unit: 2_000), to: plan("basic", 1_000), quantity: 1, wholesaleUnit: nil, commissionBps: 500, now: 0)
    #expect(down.price.amount?.amountMinor == 0)
    #expect(!down.change.immediate)
    let trial = try SubscriptionOrders.change(
      instance(unit: 1_000, trial: true), to: plan("pro", 2_000), quantity: 1, wholesaleUnit: nil, commissionBps: 500,
      now: 0)
    #expect(trial.price.amount?.amountMinor == 0)
    #expect(trial.change.immediate)
    #expect(throws: DomainError.self) {
      _ = try SubscriptionOrders.change(
        instance(unit: 1_000), to: plan("monthly", 1_000), quantity: 1, wholesaleUnit: nil, commissionBps: 0, now: 0)
    }
  }

  @Test("the wholesale side of an upgrade is prorated the same way; no more is owed when it does not rise")
  func wholesale() throws {
    let from = instance(unit: 1_000, quantity: 1, wholesale: 400)
    let more = try SubscriptionOrders.change(
      from, to: plan("monthly-2", 1_000), quantity: 2, wholesaleUnit: MoneyMath.money("USD", 400), commissionBps: 0,
      now: 15 * Self.day)
    #expect(more.price.amount?.amountMinor == 500)
    #expect(more.wholesale == 200)
    let same = try SubscriptionOrders.change(
      from, to: plan("pro", 2_000), quantity: 1, wholesaleUnit: MoneyMath.money("USD", 400), commissionBps: 0,
      now: 15 * Self.day)
    #expect(same.wholesale == 0)
  }

  @Test("a renewal renews the pending change's plan and quantity, else the current ones")
  func renewalTarget() {
    var current = instance(unit: 1_000, quantity: 2)
    #expect(SubscriptionOrders.renewalTarget(current) == ("monthly", 2))
    current.subscription?.pendingChange = .with {
      $0.plan = .with { $0.planID = "basic" }
      $0.quantity = 1
    }
    #expect(SubscriptionOrders.renewalTarget(current) == ("basic", 1))
  }

  @Test("renewable: a plan, not released, not ONE_TIME; a deprecated plan still renews, a delisted product does not")
  func renewable() throws {
    try SubscriptionOrders.checkRenewable(instance(unit: 1))
    var released = instance(unit: 1)
    released.status = .released
    #expect(throws: DomainError.self) { try SubscriptionOrders.checkRenewable(released) }
    var noPlan = instance(unit: 1)
    noPlan.subscription = nil
    #expect(throws: DomainError.self) { try SubscriptionOrders.checkRenewable(noPlan) }
    var deprecated = plan("monthly", 1_000)
    deprecated.deprecated = true
    let product = Nest_Catalog_V1_Product.with {
      $0.id = "p"
      $0.status = .listed
      $0.plans = [deprecated]
    }
    #expect(try SubscriptionOrders.renewalPlan("monthly", of: product).planID == "monthly")
    var delisted = product
    delisted.status = .delisted
    #expect(throws: DomainError.self) { try SubscriptionOrders.renewalPlan("monthly", of: delisted) }
  }

  @Test("a trial needs a plan that offers one, for one period")
  func trialEligibility() throws {
    var offering = plan("monthly", 1)
    offering.trialDays = 7
    try SubscriptionOrders.checkTrial(.with { $0.periods = 1 }, plan: offering)
    #expect(throws: DomainError.self) { try SubscriptionOrders.checkTrial(.with { $0.periods = 2 }, plan: offering) }
    #expect(throws: DomainError.self) {
      try SubscriptionOrders.checkTrial(.with { $0.periods = 1 }, plan: plan("monthly", 1))
    }
  }
}
