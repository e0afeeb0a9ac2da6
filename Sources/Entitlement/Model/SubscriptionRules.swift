// An instance as a subscription (docs/design.md §9): its business status apart from its
// deployment, what a renewal or a plan change does to it, and when the background must act
// (place the auto-renewal, expire, release). Pure.
public import NestDomain
public import NestProto

public typealias Subscription = Nest_Entitlement_V1_Subscription
public typealias SubscriptionStatus = Nest_Entitlement_V1_SubscriptionStatus

/// What happens to a subscription.
public enum SubscriptionEvent: String, CaseIterable, Sendable {
  /// Auto-renew placed (and paid) the renewal order.
  case renewalPlaced
  /// Auto-renew could not place it.
  case renewalFailed
  /// A renewal order was applied.
  case renewed
  /// The term ended without a renewal.
  case expire
  /// Released (after the grace period, or a refund).
  case release
}

public enum SubscriptionRules {
  /// The status after `event`, or FAILED_PRECONDITION:
  /// TRIAL/ACTIVE/RENEW_FAILED -renewalPlaced-> RENEWING -renewalFailed-> RENEW_FAILED;
  /// anything but ENDED -renewed-> ACTIVE; anything live -expire-> EXPIRED; anything
  /// -release-> ENDED.
  public static func transition(from status: SubscriptionStatus, _ event: SubscriptionEvent) throws(DomainError)
    -> SubscriptionStatus
  {
    switch (event, status) {
    case (.renewalPlaced, .trial), (.renewalPlaced, .active), (.renewalPlaced, .renewFailed),
      (.renewalPlaced, .renewing):
      return .renewing
    case (.renewalFailed, .renewing), (.renewalFailed, .trial), (.renewalFailed, .active),
      (.renewalFailed, .renewFailed):
      return .renewFailed
    case (.renewed, .trial), (.renewed, .active), (.renewed, .renewing), (.renewed, .renewFailed),
      (.renewed, .expired):
      return .active
    case (.expire, .trial), (.expire, .active), (.expire, .renewing), (.expire, .renewFailed):
      return .expired
    case (.release, _):
      return .ended
    default:
      throw DomainError(
        .failedPrecondition, "a subscription that is \(statusName(status)) cannot be \(event.rawValue)")
    }
  }

  public static func allows(_ status: SubscriptionStatus, _ event: SubscriptionEvent) -> Bool {
    do {
      _ = try transition(from: status, event)
      return true
    } catch {
      return false
    }
  }

  /// The subscription of a new instance: on its plan, ACTIVE (or TRIAL), its term from now.
  public static func new(
    plan: Nest_Entitlement_V1_InstancePlan, trial: Bool, autoRenew: Bool, orderID: String, now: Int64
  ) -> Subscription {
    .with {
      $0.plan = plan
      $0.status = trial ? .trial : .active
      $0.autoRenew = autoRenew
      $0.termStartedAtUnixMs = now
      $0.trial = trial
      $0.orderIds = [orderID]
    }
  }

  /// Moves the subscription by `event`, with the reason RENEW_FAILED and EXPIRED carry.
  public static func apply(_ event: SubscriptionEvent, to subscription: inout Subscription, reason: String = "")
    throws(DomainError)
  {
    subscription.status = try transition(from: subscription.status, event)
    subscription.statusReason = event == .renewalFailed || event == .expire ? reason : ""
  }

  /// A renewal order applied: a new term from the later of the old end and now, on the
  /// renewed plan and quantity (the pending change's, which the order was priced on), the
  /// trial over. Returns the quantity of the new term.
  public static func renew(
    _ subscription: inout Subscription, orderID: String, plan: Nest_Entitlement_V1_InstancePlan?, quantity: Int32,
    currentQuantity: Int32, termStart: Int64
  ) throws(DomainError) -> Int32 {
    try apply(.renewed, to: &subscription)
    if let plan { subscription.plan = plan }
    subscription.pendingChange = nil
    subscription.trial = false
    subscription.termStartedAtUnixMs = termStart
    subscription.orderIds.append(orderID)
    return quantity > 0 ? quantity : currentQuantity
  }

  /// Whether the order was applied to the subscription already.
  public static func applied(_ orderID: String, to subscription: Subscription?) -> Bool {
    subscription?.orderIds.contains(orderID) ?? false
  }

  /// A change order applied: the instance must be as the order was priced against (else
  /// ABORTED: a renewal or another change came first). Immediate: the plan and quantity now
  /// (returned); otherwise the pending change of the next renewal (nil returned).
  public static func change(
    _ instance: Nest_Entitlement_V1_ServiceInstance, _ request: Nest_Entitlement_V1_ChangeServiceInstanceRequest,
    now: Int64
  ) throws(DomainError) -> (subscription: Subscription, quantity: Int32?) {
    guard var subscription = instance.subscription, subscription.plan != nil else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) was not sold on a plan")
    }
    guard instance.status != .released, instance.status != .expired, subscription.status != .ended,
      subscription.status != .expired
    else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is \(statusName(instance.status))")
    }
    guard subscription.plan?.planID == request.expectedPlanID, instance.quantity == request.expectedQuantity,
      instance.expiresAtUnixMs == request.expectedExpiresAtUnixMs
    else {
      throw DomainError(
        .aborted,
        "instance \(instance.id) changed since order \(request.orderID) was priced (a renewal or another change came first)"
      )
    }
    subscription.orderIds.append(request.orderID)
    guard request.immediate else {
      subscription.pendingChange = .with {
        $0.plan = request.plan ?? .init()
        $0.quantity = request.quantity
        $0.orderID = request.orderID
      }
      return (subscription, nil)
    }
    subscription.plan = request.plan ?? .init()
    subscription.pendingChange = nil
    return (subscription, request.quantity)
  }

  /// Checks what ChangeServiceInstance can check without reading anything.
  public static func checkChange(_ request: Nest_Entitlement_V1_ChangeServiceInstanceRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    if request.instanceID.isEmpty { violations.append(.init(field: "instance_id", description: "is required")) }
    if request.orderID.isEmpty { violations.append(.init(field: "order_id", description: "is required")) }
    if request.plan == nil || request.plan?.planID.isEmpty == true {
      violations.append(.init(field: "plan", description: "is required"))
    }
    if request.quantity < 1 { violations.append(.init(field: "quantity", description: "must be at least 1")) }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// The background's next step for an instance at `now`, if any: place the auto-renewal
  /// `lead` before the term ends (and retry it until then), expire it at the end, release it
  /// `grace` after.
  public enum Due: Equatable, Sendable {
    case placeRenewal
    case expire
    case release
  }

  public static func due(
    _ instance: Nest_Entitlement_V1_ServiceInstance, now: Int64, lead: Int64, grace: Int64
  ) -> Due? {
    let end = instance.expiresAtUnixMs
    guard end > 0 else { return nil }
    switch instance.status {
    case .expired:
      return now >= end + grace ? .release : nil
    case .deployed, .suspended:
      if now >= end { return .expire }
    case .created, .deploying:
      break
    default:
      return nil
    }
    guard let subscription = instance.subscription, subscription.autoRenew, subscription.plan != nil,
      allows(subscription.status, .renewalPlaced), now >= end - lead, now < end
    else { return nil }
    return .placeRenewal
  }
}
