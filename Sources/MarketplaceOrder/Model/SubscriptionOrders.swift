// What renewals, plan changes and trials cost and when they are allowed (docs/design.md §9):
// a renewal is the instance's plan (its pending change's, if any) at the price in force; a
// change is priced by proration of the per-period difference over what is left of the term;
// a trial is free, once per customer and product. Pure.
public import NestDomain
public import NestProto

public typealias Instance = Nest_Entitlement_V1_ServiceInstance
public typealias Plan = Nest_Catalog_V1_Plan

public enum SubscriptionOrders {
  /// The instance can be renewed by an order: it has a plan and is not released.
  public static func checkRenewable(_ instance: Instance) throws(DomainError) {
    guard let subscription = instance.subscription, let plan = subscription.plan, !plan.planID.isEmpty else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) was not sold on a plan: it cannot be renewed by an order")
    }
    guard instance.status != .released, subscription.status != .ended else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is released")
    }
    guard instance.status != .deployFailed else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) failed to deploy")
    }
    guard plan.billingPeriod == .month || plan.billingPeriod == .year else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is on a ONE_TIME plan: there is nothing to renew")
    }
  }

  /// What a renewal renews: the pending change's plan and quantity, else the current ones.
  public static func renewalTarget(_ instance: Instance) -> (planID: String, quantity: UInt32) {
    let subscription = instance.subscription ?? .init()
    if let pending = subscription.pendingChange, let plan = pending.plan {
      return (plan.planID, UInt32(clamping: pending.quantity))
    }
    return (subscription.plan?.planID ?? "", UInt32(clamping: instance.quantity))
  }

  /// The plan of `product` an existing instance renews on: deprecated plans still renew.
  public static func renewalPlan(_ planID: String, of product: Nest_Catalog_V1_Product) throws(DomainError) -> Plan {
    guard product.status == .listed else {
      throw DomainError(.failedPrecondition, "product \(product.id) is not listed on the marketplace")
    }
    guard let plan = product.plans.first(where: { $0.planID == planID }), plan.unitPrice != nil else {
      throw DomainError.notFound("plan", planID, field: "instance_id")
    }
    return plan
  }

  /// The instance can change plan now: running on a plan, within its term.
  public static func checkChangeable(_ instance: Instance, now: Int64) throws(DomainError) {
    try checkRenewable(instance)
    guard
      instance.status == .deployed || instance.status == .suspended || instance.status == .created
        || instance.status == .deploying
    else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is \(statusName(instance.status))")
    }
    guard instance.expiresAtUnixMs > now else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is past its term: renew it first")
    }
  }

  /// A plan a change may move to: on the product, not deprecated, the same billing period.
  public static func changePlan(
    _ planID: String, of product: Nest_Catalog_V1_Product, instance: Instance
  ) throws(DomainError) -> Plan {
    guard product.status == .listed else {
      throw DomainError(.failedPrecondition, "product \(product.id) is not listed on the marketplace")
    }
    guard let plan = product.plans.first(where: { $0.planID == planID }), plan.unitPrice != nil else {
      throw DomainError.notFound("plan", planID, field: "plan_id")
    }
    let current = instance.subscription?.plan ?? .init()
    if plan.planID != current.planID && plan.deprecated {
      throw DomainError(.failedPrecondition, "plan \(planID) is deprecated: no new sales")
    }
    guard plan.billingPeriod == current.billingPeriod else {
      throw .invalid("plan_id", "must have the instance's billing period (\(statusName(current.billingPeriod)))")
    }
    return plan
  }

  /// A change: its snapshot, its price (the prorated difference of an upgrade; nothing
  /// otherwise) and, for B, its wholesale side prorated the same way.
  /// `per period` = unit price x quantity; `delta = floor((to - from) * remaining / period)`
  /// where `remaining` runs to the end of the term (several periods when bought or renewed
  /// for several) and `period` is one billing period.
  public static func change(
    _ instance: Instance, to plan: Plan, quantity: UInt32, wholesaleUnit: Nest_Common_V1_Money?,
    commissionBps: UInt32, now: Int64
  ) throws(DomainError) -> (change: Nest_Order_V1_PlanChange, price: Nest_Order_V1_PriceSnapshot, wholesale: Int64) {
    let subscription = instance.subscription ?? .init()
    let current = subscription.plan ?? .init()
    let fromQuantity = UInt32(clamping: instance.quantity)
    guard plan.planID != current.planID || quantity != fromQuantity else {
      throw .invalid("plan_id", "names the current plan and quantity: nothing changes")
    }
    let fromUnit = current.unitPrice ?? .init()
    let toUnit = plan.unitPrice ?? .init()
    guard fromUnit.currency == toUnit.currency || fromUnit.currency.isEmpty else {
      throw DomainError(.failedPrecondition, "plan \(plan.planID) is priced in another currency than the instance")
    }
    guard let from = perPeriod(fromUnit.amountMinor, fromQuantity), let to = perPeriod(toUnit.amountMinor, quantity)
    else {
      throw .invalid("quantity", "unit price x quantity overflows")
    }
    guard let period = BillingPeriods.milliseconds(plan.billingPeriod) else {
      throw DomainError(.failedPrecondition, "a ONE_TIME plan is not changed by proration")
    }
    let remaining = instance.expiresAtUnixMs - now
    // During a trial nothing is paid yet: every change applies at once, free.
    let immediate = subscription.trial || to > from
    var delta: Int64 = 0
    var wholesaleDelta: Int64 = 0
    if !subscription.trial, to > from {
      guard let prorated = MoneyMath.prorate(to - from, remaining: remaining, period: period) else {
        throw .invalid("quantity", "the prorated difference overflows")
      }
      delta = prorated
      if let wholesaleUnit, let previous = current.wholesaleUnitPrice {
        guard let wholesaleFrom = perPeriod(previous.amountMinor, fromQuantity),
          let wholesaleTo = perPeriod(wholesaleUnit.amountMinor, quantity),
          let proratedWholesale = MoneyMath.prorate(
            max(wholesaleTo - wholesaleFrom, 0), remaining: remaining, period: period)
        else {
          throw .invalid("quantity", "wholesale price x quantity overflows")
        }
        wholesaleDelta = proratedWholesale
      }
    }
    let change = Nest_Order_V1_PlanChange.with {
      $0.fromPlanID = current.planID
      $0.fromQuantity = fromQuantity
      $0.fromUnitPrice = fromUnit
      $0.toUnitPrice = toUnit
      $0.termStartedAtUnixMs = subscription.termStartedAtUnixMs
      $0.termEndsAtUnixMs = instance.expiresAtUnixMs
      $0.pricedAtUnixMs = now
      $0.immediate = immediate
      $0.periodMs = period
    }
    let price = OrderRules.split(delta, unitPrice: toUnit, period: plan.billingPeriod, commissionBps: commissionBps)
    return (change, price, wholesaleDelta)
  }

  static func perPeriod(_ unit: Int64, _ quantity: UInt32) -> Int64? {
    let (value, overflow) = unit.multipliedReportingOverflow(by: Int64(quantity))
    return overflow || value < 0 ? nil : value
  }

  /// A change is paid only while the instance is as it was priced against: the same plan,
  /// quantity and term end (a renewal or another change coming first makes it stale).
  public static func checkStillPriced(_ order: Order, instance: Instance) throws(DomainError) {
    let change = order.change ?? .init()
    guard instance.subscription?.plan?.planID == change.fromPlanID,
      UInt32(clamping: instance.quantity) == change.fromQuantity,
      instance.expiresAtUnixMs == change.termEndsAtUnixMs,
      instance.status != .released, instance.status != .expired
    else {
      throw DomainError(
        .failedPrecondition,
        "instance \(instance.id) changed since order \(order.id) was priced: cancel it and order the change again")
    }
  }

  /// A trial of `plan`: the plan must offer one, for one period.
  public static func checkTrial(_ request: Nest_Order_V1_CreateOrderRequest, plan: Plan) throws(DomainError) {
    guard plan.trialDays > 0 else {
      throw DomainError(.failedPrecondition, "plan \(plan.planID) offers no trial")
    }
    guard request.periods == 1 else { throw .invalid("periods", "must be 1 for a trial") }
  }

  /// The plan as the instance carries it (per-unit prices of the term being paid for).
  public static func instancePlan(of order: Order) -> Nest_Entitlement_V1_InstancePlan {
    .with {
      $0.productID = order.productID
      $0.planID = order.planID
      $0.billingPeriod = order.price?.billingPeriod ?? .unspecified
      $0.unitPrice = order.change?.toUnitPrice ?? order.price?.unitPrice ?? .init()
      if let wholesale = order.wholesale?.wholesaleUnitPrice { $0.wholesaleUnitPrice = wholesale }
    }
  }

  /// The payment reference of a renewal the platform pays itself.
  public static func autoRenewReference(_ instanceID: String) -> String { "auto-renew:\(instanceID)" }

  static let dayMs: Int64 = 24 * 3600 * 1000

  /// When a trial paid at `paidAt` ends.
  public static func trialEnd(_ order: Order) -> Int64 { order.paidAtUnixMs + Int64(order.trialDays) * dayMs }
}
