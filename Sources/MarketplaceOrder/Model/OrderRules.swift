// The rules of an order (docs/design.md §1, §5, §8): its life cycle, its price, who it is
// sold by, the scenario-3 linked order, and how long a failed delivery waits. Pure.
public import NestDomain
public import NestProto

public typealias Order = Nest_Order_V1_Order
public typealias OrderStatus = Nest_Order_V1_OrderStatus

public typealias Delivery = Nest_Order_V1_Delivery

public enum OrderAction: String, CaseIterable, Sendable {
  case pay, fulfil, cancel, refund
}

public enum OrderRules {
  /// The status after `action`: CREATED -> PAID -> FULFILLED; CREATED -> CANCELLED;
  /// PAID or FULFILLED -> REFUNDED.
  public static func transition(from status: OrderStatus, _ action: OrderAction) throws(DomainError) -> OrderStatus {
    switch (action, status) {
    case (.pay, .created): return .paid
    case (.fulfil, .paid): return .fulfilled
    case (.cancel, .created): return .cancelled
    case (.refund, .paid), (.refund, .fulfilled): return .refunded
    default:
      throw DomainError(.failedPrecondition, "cannot \(action.rawValue) an order that is \(statusName(status))")
    }
  }

  /// Whether `action` may happen from `status`.
  public static func allows(_ status: OrderStatus, _ action: OrderAction) -> Bool {
    do {
      _ = try transition(from: status, action)
      return true
    } catch {
      return false
    }
  }

  /// The order's new status, its history entry and the time it entered it.
  public static func record(_ order: inout Order, _ status: OrderStatus, actor: String, reason: String = "", now: Int64)
  {
    order.status = status
    order.updatedAtUnixMs = now
    order.history.append(.entry(status, actor: actor, reason: reason, at: now))
    switch status {
    case .paid: order.paidAtUnixMs = now
    case .fulfilled: order.fulfilledAtUnixMs = now
    case .cancelled: order.cancelledAtUnixMs = now
    case .refunded: order.refundedAtUnixMs = now
    default: break
    }
  }

  /// The order moved by `action`, with its history entry; a transition its status does not
  /// allow is FAILED_PRECONDITION.
  public static func apply(_ action: OrderAction, to order: inout Order, actor: String, reason: String = "", now: Int64)
    throws(DomainError)
  {
    record(&order, try transition(from: order.status, action), actor: actor, reason: reason, now: now)
  }

  /// Checks what CreateOrder can check without asking anyone.
  public static func check(_ request: Nest_Order_V1_CreateOrderRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    if request.productID.isEmpty { violations.append(.init(field: "product_id", description: "is required")) }
    if request.planID.isEmpty { violations.append(.init(field: "plan_id", description: "is required")) }
    if request.quantity < 1 { violations.append(.init(field: "quantity", description: "must be at least 1")) }
    if request.periods < 1 { violations.append(.init(field: "periods", description: "must be at least 1")) }
    if request.labels.count > 32
      || request.labels.contains(where: { $0.key.isEmpty || $0.key.utf8.count > 63 || $0.value.utf8.count > 256 })
    {
      violations.append(
        .init(field: "labels", description: "at most 32, keys 1 to 63 bytes, values at most 256 bytes"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// The price of `quantity` units for `periods` periods at `unitPrice`, and its split.
  public static func price(
    unitPrice: Nest_Common_V1_Money, period: Nest_Common_V1_BillingPeriod, quantity: UInt32, periods: UInt32,
    commissionBps: UInt32
  ) throws(DomainError) -> Nest_Order_V1_PriceSnapshot {
    if period == .oneTime && periods != 1 {
      throw .invalid([.init(field: "periods", description: "must be 1 for a ONE_TIME plan")])
    }
    guard
      let amount = MoneyMath.amount(unit: unitPrice.amountMinor, quantity: Int64(quantity), periods: Int64(periods)),
      amount >= 0
    else {
      throw .invalid([.init(field: "quantity", description: "unit price x quantity x periods overflows")])
    }
    return split(amount, unitPrice: unitPrice, period: period, commissionBps: commissionBps)
  }

  /// A price of `amount` (>= 0) and its split: commission floored, the rest the seller's.
  public static func split(
    _ amount: Int64, unitPrice: Nest_Common_V1_Money, period: Nest_Common_V1_BillingPeriod, commissionBps: UInt32
  ) -> Nest_Order_V1_PriceSnapshot {
    let commission = MoneyMath.commission(amount, bps: commissionBps)
    return .with {
      $0.unitPrice = unitPrice
      $0.billingPeriod = period
      $0.amount = MoneyMath.money(unitPrice.currency, amount)
      $0.commissionBps = commissionBps
      $0.commission = MoneyMath.money(unitPrice.currency, commission)
      $0.sellerNet = MoneyMath.money(unitPrice.currency, amount - commission)
    }
  }

  /// Whether paying the order records a sale (see `Order.recordsSale`).
  public static func recordsSale(_ order: Order) -> Bool { order.recordsSale }

  /// The wholesale terms a sale of B is made under, from entitlement's answer to
  /// CheckDistribution: refused when the authorization's places are all taken (the
  /// reservation at payment is what enforces it; this tells the customer early).
  public static func wholesale(
    _ check: Nest_Entitlement_V1_CheckDistributionResponse, period: Nest_Common_V1_BillingPeriod, quantity: UInt32,
    periods: UInt32, newInstance: Bool = true
  ) throws(DomainError) -> Nest_Order_V1_WholesaleSnapshot {
    guard let authorization = check.authorization, let terms = authorization.terms,
      let unit = terms.wholesaleUnitPrice(for: period)
    else {
      throw DomainError(.failedPrecondition, "the distributor's authorization has no terms")
    }
    if newInstance && terms.maxInstances > 0 && check.instanceCount >= terms.maxInstances {
      throw DomainError(
        .failedPrecondition, "the authorization's maximum of \(terms.maxInstances) instances is reached")
    }
    let amount = try price(unitPrice: unit, period: period, quantity: quantity, periods: periods, commissionBps: 0)
    return .with {
      $0.authorizationID = authorization.id
      $0.wholesaleUnitPrice = unit
      $0.wholesaleAmount = amount.amount
      $0.termsValidUntilUnixMs = terms.validUntilUnixMs
    }
  }

  /// PayOrder's expected_amount, when given, must be the order's price.
  public static func checkExpectedAmount(_ expected: Nest_Common_V1_Money?, of order: Order) throws(DomainError) {
    if let expected, expected != order.price?.amount {
      throw DomainError(
        .failedPrecondition, "expected_amount differs from the order's price",
        violations: [.init(field: "expected_amount", description: "differs from price.amount")])
    }
  }

  /// Who sells: the distributor for a derived service, the ISV for a direct sale.
  public static func seller(of resolution: Nest_Common_V1_ScenarioResolution) -> Nest_Common_V1_Party {
    resolution.scenario == .direct
      ? .with {
        $0.role = .isv
        $0.accountID = resolution.isvID
      }
      : .with {
        $0.role = .distributor
        $0.accountID = resolution.distributorID
      }
  }

  /// Scenario 3's order for A, placed with the distributor as buyer at the wholesale price,
  /// PAID with its parent.
  public static func linkedOrder(
    for parent: Order, id: String, baseProductID: String, now: Int64
  ) throws(DomainError) -> Order {
    guard let resolution = parent.scenario, let wholesale = parent.wholesale, let unit = wholesale.wholesaleUnitPrice,
      let amount = wholesale.wholesaleAmount
    else {
      throw DomainError(.failedPrecondition, "order \(parent.id) has no wholesale terms to place a linked order with")
    }
    // The wholesale side of the parent's sale: unit x quantity x periods, or for a CHANGE
    // the prorated difference.
    let price = split(
      amount.amountMinor, unitPrice: unit, period: parent.price?.billingPeriod ?? .month,
      commissionBps: parent.price?.commissionBps ?? 0)
    return .with {
      $0.id = id
      $0.kind = .linked
      $0.buyer = .with {
        $0.role = .distributor
        $0.accountID = resolution.distributorID
      }
      $0.seller = .with {
        $0.role = .isv
        $0.accountID = resolution.isvID
      }
      $0.productID = baseProductID
      $0.serviceID = resolution.baseServiceID
      $0.serviceVersionID = resolution.baseVersionID
      $0.quantity = parent.quantity
      $0.periods = parent.periods
      $0.status = .paid
      $0.price = price
      $0.scenario = resolution
      $0.wholesale = wholesale
      $0.parentOrderID = parent.id
      $0.history = [.entry(OrderStatus.paid, actor: "marketplace-order", reason: "placed for \(parent.id)", at: now)]
      $0.createdAtUnixMs = now
      $0.updatedAtUnixMs = now
      $0.paidAtUnixMs = now
    }
  }

  /// The offline wholesale obligation a sale of `scenario` records: scenarios 1, 2 and 4.
  public static func owesOffline(_ scenario: Nest_Common_V1_Scenario) -> Bool {
    scenario == .scenario1 || scenario == .scenario2 || scenario == .scenario4
  }

  /// How long the dispatcher waits after the `attempts`-th failure: doubling from `initial`,
  /// never more than `cap`.
  public static func backoff(afterAttempts attempts: UInt32, initial: Duration, cap: Duration) -> Duration {
    let doublings = min(Int(attempts) - 1, 30)
    guard doublings > 0 else { return min(initial, cap) }
    return min(initial * (1 << doublings), cap)
  }
}
