// The outbox's rules: what a paid, cancelled or refunded order asks of the other services, in
// what order, where each row goes, how long a failed row waits, how far an order's rows have
// got as its parties may read it, and the requests each row carries (built from the order's
// snapshot alone, so every attempt sends the same request). Pure.
public import NestDomain
public import NestProto

public enum DeliveryRules {
  /// The service a row of `kind` is delivered to.
  public static func target(of kind: Nest_Order_V1_DeliveryKind) -> Nest_Order_V1_DeliveryTarget {
    switch kind {
    case .createInstance, .releaseInstance, .releaseSlot, .renewInstance, .changeInstance: .entitlement
    default: .settlement
    }
  }

  /// A new PENDING row, due now.
  public static func row(
    _ kind: Nest_Order_V1_DeliveryKind, for orderID: String, key: String, id: String, now: Int64
  ) -> Delivery {
    .with {
      $0.id = id
      $0.orderID = orderID
      $0.kind = kind
      $0.target = target(of: kind)
      $0.status = .pending
      $0.idempotencyKey = key
      $0.createdAtUnixMs = now
      $0.nextAttemptAtUnixMs = now
    }
  }

  /// The rows a payment queues, as the steps they go out in: what the order does to its
  /// instance (create, renew or change it), the sale of the order (none for a trial or a free
  /// change), the sale of each linked order. A new instance and its sales go together: the
  /// payment holds the instance's place, so entitlement does not refuse it for good. A renewal's
  /// or change's sales (the linked order's too: see OrderStore.dueDeliveries) wait for the
  /// instance to take it: entitlement refuses one for good when the term or plan it expects no
  /// longer holds, and then no money is to be split.
  public static func paid(_ order: Order, linked: [Order], newID: () -> String, now: Int64) -> [[Delivery]] {
    let instanceKind: Nest_Order_V1_DeliveryKind =
      switch order.kind {
      case .renewal: .renewInstance
      case .change: .changeInstance
      default: .createInstance
      }
    let instance = row(instanceKind, for: order.id, key: order.id, id: newID(), now: now)
    var sales: [Delivery] = []
    if OrderRules.recordsSale(order) {
      sales.append(row(.recordSale, for: order.id, key: order.id, id: newID(), now: now))
    }
    sales += linked.map { row(.recordSale, for: $0.id, key: $0.id, id: newID(), now: now) }
    guard instanceKind != .createInstance else { return [[instance] + sales] }
    return sales.isEmpty ? [[instance]] : [[instance], sales]
  }

  /// The rows a refund queues, delivered together once the payment's are: the reversal of
  /// its sales (when it had one) and, for an order that created an instance, its release. A renewal's or change's refund gives the
  /// money back and leaves the instance's term as it is.
  public static func refunded(_ order: Order, newID: () -> String, now: Int64) -> [Delivery] {
    var rows: [Delivery] = []
    if OrderRules.recordsSale(order) {
      rows.append(row(.recordRefund, for: order.id, key: "refund:\(order.id)", id: newID(), now: now))
    }
    if order.kind == .customer {
      rows.append(row(.releaseInstance, for: order.id, key: "release:\(order.id)", id: newID(), now: now))
    }
    return rows
  }

  /// The row a cancellation queues for a sale under an authorization: letting go of an
  /// instance slot a payment attempt may have reserved.
  public static func cancelled(_ order: Order, newID: () -> String, now: Int64) -> [Delivery] {
    guard let authorization = order.wholesale?.authorizationID, !authorization.isEmpty else { return [] }
    return [row(.releaseSlot, for: order.id, key: "release-slot:\(order.id)", id: newID(), now: now)]
  }

  /// The row after an attempt: DELIVERED with its acknowledgement, or rescheduled after a
  /// failure (code and message) with capped exponential backoff.
  public static func attempted(
    _ row: Delivery, failure: (code: Int32, message: String)?, acknowledgement: Delivery.OneOf_Acknowledgement?,
    now: Int64, initialBackoff: Duration, maximumBackoff: Duration
  ) -> Delivery {
    var row = row
    row.attempts += 1
    row.lastAttemptAtUnixMs = now
    if let failure {
      row.lastErrorCode = failure.code
      row.lastError = failure.message
      let wait = OrderRules.backoff(afterAttempts: row.attempts, initial: initialBackoff, cap: maximumBackoff)
      row.nextAttemptAtUnixMs =
        now + wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000
    } else {
      row.status = .delivered
      row.deliveredAtUnixMs = now
      row.nextAttemptAtUnixMs = 0
      row.lastErrorCode = 0
      row.lastError = ""
      row.acknowledgement = acknowledgement
    }
    return row
  }

  /// How far an order's rows have got: counts, the last failure (for operators and
  /// services), and the short state everyone may read.
  public static func summary(_ rows: [Delivery]) -> Nest_Order_V1_DeliverySummary {
    let pending = rows.filter { $0.status == .pending }
    let lastError = pending.last(where: { !$0.lastError.isEmpty })?.lastError ?? ""
    return .with {
      $0.pending = UInt32(pending.count)
      $0.delivered = UInt32(rows.count - pending.count)
      $0.lastError = lastError
      $0.nextAttemptAtUnixMs = pending.map(\.nextAttemptAtUnixMs).min() ?? 0
      $0.state =
        rows.isEmpty ? .none : pending.isEmpty ? .done : pending.contains { $0.attempts > 0 } ? .retrying : .inProgress
    }
  }

  /// CreateServiceInstance for a paid customer order. Without a client token: entitlement is
  /// idempotent on the order id, and a token would only make it keep every request and its
  /// answer a second time.
  public static func instanceRequest(for order: Order) -> Nest_Entitlement_V1_CreateServiceInstanceRequest {
    .with {
      $0.orderID = order.id
      $0.serviceID = order.serviceID
      $0.versionID = order.serviceVersionID
      $0.customerID = order.buyer?.accountID ?? ""
      $0.authorizationID = order.wholesale?.authorizationID ?? ""
      $0.quantity = Int32(clamping: order.quantity)
      $0.expiry = .term(
        .with {
          $0.billingPeriod = order.price?.billingPeriod ?? .month
          $0.periods = Int32(clamping: order.periods)
        })
      $0.parameterSetName = order.parameterSetName
      $0.resolution = order.scenario
      if !order.planID.isEmpty { $0.plan = SubscriptionOrders.instancePlan(of: order) }
      $0.trial = order.trial
      $0.autoRenew = order.autoRenew
      // A trial runs for its days from payment, then renews by the plan's periods.
      if order.trial { $0.expiry = .expiresAtUnixMs(SubscriptionOrders.trialEnd(order)) }
    }
  }

  /// RenewServiceInstance for a paid renewal order: its periods on its plan.
  public static func renewRequest(for order: Order, key: String) -> Nest_Entitlement_V1_RenewServiceInstanceRequest {
    .with {
      $0.clientToken = key
      $0.instanceID = order.instanceID
      $0.orderID = order.id
      $0.renewal = .periods(Int32(clamping: order.periods))
      $0.plan = SubscriptionOrders.instancePlan(of: order)
      $0.quantity = Int32(clamping: order.quantity)
    }
  }

  /// ChangeServiceInstance for a paid change order, with what it was priced against.
  public static func changeRequest(for order: Order, key: String) -> Nest_Entitlement_V1_ChangeServiceInstanceRequest {
    let change = order.change ?? .init()
    return .with {
      $0.clientToken = key
      $0.instanceID = order.instanceID
      $0.orderID = order.id
      $0.plan = SubscriptionOrders.instancePlan(of: order)
      $0.quantity = Int32(clamping: order.quantity)
      $0.immediate = change.immediate
      $0.expectedPlanID = change.fromPlanID
      $0.expectedQuantity = Int32(clamping: change.fromQuantity)
      $0.expectedExpiresAtUnixMs = change.termEndsAtUnixMs
    }
  }

  /// RecordSale for a paid order (customer or linked). Without a client token, as
  /// CreateServiceInstance: settlement is idempotent on the order id.
  public static func saleRequest(for order: Order) -> Nest_Settlement_V1_RecordSaleRequest {
    .with {
      $0.orderID = order.id
      $0.kind = order.kind == .linked ? .linkedOrder : .customerOrder
      $0.parentOrderID = order.parentOrderID
      $0.linkedOrderIds = order.linkedOrderIds
      $0.buyer = order.buyer
      $0.seller = order.seller
      $0.amount = order.price?.amount
      $0.commissionBps = order.price?.commissionBps ?? 0
      $0.scenario = order.scenario
      if order.kind != .linked, OrderRules.owesOffline(order.scenario?.scenario ?? .unspecified) {
        $0.wholesaleAmount = order.wholesale?.wholesaleAmount
      }
      $0.authorizationID = order.wholesale?.authorizationID ?? ""
      $0.productID = order.productID
      $0.planID = order.planID
      $0.quantity = order.quantity
      $0.periods = order.periods
      $0.billingPeriod = order.price?.billingPeriod ?? .unspecified
      $0.paidAtUnixMs = order.paidAtUnixMs
    }
  }

  /// RecordRefund for a refunded customer order and its linked orders.
  public static func refundRequest(for order: Order, key: String) -> Nest_Settlement_V1_RecordRefundRequest {
    .with {
      $0.clientToken = key
      $0.orderID = order.id
      $0.linkedOrderIds = order.linkedOrderIds
      $0.reason = order.reason
      $0.refundedAtUnixMs = order.refundedAtUnixMs
    }
  }

  /// ReleaseServiceInstance for a refunded order; it waits until the instance exists.
  public static func releaseRequest(for order: Order, key: String) throws(DomainError)
    -> Nest_Entitlement_V1_ReleaseServiceInstanceRequest
  {
    guard !order.instanceID.isEmpty else {
      throw DomainError(.failedPrecondition, "the instance of \(order.id) is not created yet")
    }
    return .with {
      $0.clientToken = key
      $0.instanceID = order.instanceID
      $0.reason = "refund of order \(order.id): \(order.reason)"
    }
  }
}
