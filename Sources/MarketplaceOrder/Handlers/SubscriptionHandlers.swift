// Orders that keep an instance going: a customer's renewal and plan change, and the renewal
// auto-renew places and pays. Each is priced from the instance (asked of entitlement) and the
// product's plans in force (asked of catalog); at most one RENEWAL or CHANGE of an instance is
// open at a time, so that a renewal and a change never both count the same term.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

/// An instance as marketplace-order sees it for access: its customer.
struct CustomerInstance: AccessControlled {
  static let resourceName = "instance"
  var instance: Instance

  func holds(_ relation: Relation, for caller: Principal) -> Bool {
    guard relation == .customer || relation == .party || relation == .viewer else { return false }
    return caller.role == .customer && caller.subject == self.instance.customerID
  }
}

extension OrderService {
  /// The instance, as the caller may act on it (NOT_FOUND when it is not the caller's).
  func instance(_ id: String, for access: Access) async throws -> Instance {
    try DomainError.requireNonEmpty(("instance_id", id))
    let instance = try await Self.translatingNotFound("instance", id, field: "instance_id") {
      try await self.peers.instance(id)
    }
    return try access.authorize(
      CustomerInstance(instance: instance), notFound: .notFound("instance", id, field: "instance_id")
    )
    .instance
  }

  /// A RENEWAL order (CREATED) for `periods` periods of the instance's plan at the price in
  /// force, with its scenario and wholesale terms as of now.
  func renewalDraft(_ instance: Instance, periods: UInt32, now: Int64) async throws -> Order {
    try SubscriptionOrders.checkRenewable(instance)
    let target = SubscriptionOrders.renewalTarget(instance)
    let productID = instance.subscription?.plan?.productID ?? ""
    let terms = try await Self.translatingNotFound("product", productID, field: "instance_id") {
      try await self.peers.saleTerms(productID)
    }
    let product = terms.product ?? .init()
    let plan = try SubscriptionOrders.renewalPlan(target.planID, of: product)
    let resolution = terms.resolution ?? .init()
    var wholesale: Nest_Order_V1_WholesaleSnapshot? = nil
    if resolution.scenario != .direct {
      let check = try await self.peers.checkDistribution(
        baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      wholesale = try OrderRules.wholesale(
        check, period: plan.billingPeriod, quantity: target.quantity, periods: periods, newInstance: false)
      wholesale?.baseProductID = terms.baseProductID
    }
    let price = try OrderRules.price(
      unitPrice: plan.unitPrice ?? .init(), period: plan.billingPeriod, quantity: target.quantity, periods: periods,
      commissionBps: self.commissionBps)
    return Self.draft(
      .renewal, instance: instance, product: product, planID: plan.planID, quantity: target.quantity,
      periods: periods, price: price, resolution: resolution, wholesale: wholesale, now: now)
  }

  static func draft(
    _ kind: Nest_Order_V1_OrderKind, instance: Instance, product: Nest_Catalog_V1_Product, planID: String,
    quantity: UInt32, periods: UInt32, price: Nest_Order_V1_PriceSnapshot,
    resolution: Nest_Common_V1_ScenarioResolution, wholesale: Nest_Order_V1_WholesaleSnapshot?, now: Int64
  ) -> Order {
    var order = Order.with {
      $0.id = Identifiers.new("ord")
      $0.kind = kind
      $0.buyer = .with {
        $0.role = .customer
        $0.accountID = instance.customerID
      }
      $0.seller = OrderRules.seller(of: resolution)
      $0.productID = product.id
      $0.planID = planID
      $0.serviceID = instance.serviceID
      $0.serviceVersionID = instance.versionID
      $0.quantity = quantity
      $0.periods = periods
      $0.parameterSetName = instance.parameterSetName
      $0.price = price
      $0.scenario = resolution
      if let wholesale { $0.wholesale = wholesale }
      $0.instanceID = instance.id
      $0.createdAtUnixMs = now
    }
    OrderRules.record(&order, .created, actor: instance.customerID, now: now)
    return order
  }

  public func createRenewalOrder(request: Nest_Order_V1_CreateRenewalOrderRequest, context: ServerContext)
    async throws -> Nest_Order_V1_CreateRenewalOrderResponse
  {
    let access = try Access.forCall()
    let instance = try await self.instance(request.instanceID, for: access)
    let now = self.clock.nowUnixMs()
    let draft = try await self.renewalDraft(instance, periods: max(request.periods, 1), now: now)
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateRenewalOrder", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        try OrderStore.requireNoOpenSubscriptionOrder(instanceID: instance.id, in: db)
        try OrderStore.save(draft, in: db)
        return .with { $0.order = draft }
      }
    }
  }

  public func createChangeOrder(request: Nest_Order_V1_CreateChangeOrderRequest, context: ServerContext)
    async throws -> Nest_Order_V1_CreateChangeOrderResponse
  {
    let access = try Access.forCall()
    let instance = try await self.instance(request.instanceID, for: access)
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    try SubscriptionOrders.checkChangeable(instance, now: now)
    let current = instance.subscription?.plan ?? .init()
    let productID = current.productID
    let sale = try await Self.translatingNotFound("product", productID, field: "instance_id") {
      try await self.peers.saleTerms(productID)
    }
    let product = sale.product ?? .init()
    let plan = try SubscriptionOrders.changePlan(
      request.planID.isEmpty ? current.planID : request.planID, of: product, instance: instance)
    let quantity = request.quantity == 0 ? UInt32(clamping: instance.quantity) : request.quantity
    let resolution = sale.resolution ?? .init()
    var wholesaleUnit: Nest_Common_V1_Money? = nil
    var terms: Nest_Order_V1_WholesaleSnapshot? = nil
    if resolution.scenario != .direct {
      let check = try await self.peers.checkDistribution(
        baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      terms = try OrderRules.wholesale(
        check, period: plan.billingPeriod, quantity: quantity, periods: 1, newInstance: false)
      wholesaleUnit = terms?.wholesaleUnitPrice
    }
    let priced = try SubscriptionOrders.change(
      instance, to: plan, quantity: quantity, wholesaleUnit: wholesaleUnit, commissionBps: self.commissionBps, now: now)
    var wholesale = terms
    if var snapshot = wholesale {
      snapshot.wholesaleAmount = MoneyMath.money(snapshot.wholesaleUnitPrice?.currency ?? "", priced.wholesale)
      if let previous = current.wholesaleUnitPrice { snapshot.previousWholesaleUnitPrice = previous }
      snapshot.baseProductID = sale.baseProductID
      wholesale = snapshot
    }
    var draft = Self.draft(
      .change, instance: instance, product: product, planID: plan.planID, quantity: quantity, periods: 1,
      price: priced.price, resolution: resolution, wholesale: wholesale, now: now)
    draft.change = priced.change
    let change = draft
    let free = (change.price?.amount?.amountMinor ?? 0) == 0
    let response: Nest_Order_V1_CreateChangeOrderResponse = try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateChangeOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        try OrderStore.requireNoOpenSubscriptionOrder(instanceID: instance.id, in: db)
        var order = change
        if free {
          // Nothing to pay (a downgrade, or a change during a trial): paid as it is made.
          order.paymentReference = "no charge"
          _ = try Self.commitPayment(
            &order, actor: access.caller.subject, baseProductID: "", now: now, traceParent: traceParent, in: db)
        } else {
          try OrderStore.save(order, in: db)
        }
        return .with { $0.order = order }
      }
    }
    if free { self.dispatcher?.signal() }
    return response
  }

  public func placeRenewal(request: Nest_Order_V1_PlaceRenewalRequest, context: ServerContext) async throws
    -> Nest_Order_V1_PlaceRenewalResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("instance_id", request.instanceID))
    let instance = try await Self.translatingNotFound("instance", request.instanceID, field: "instance_id") {
      try await self.peers.instance(request.instanceID)
    }
    guard instance.expiresAtUnixMs == request.termEndsAtUnixMs else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id)'s term ends at \(instance.expiresAtUnixMs), not the one named",
        violations: [.init(field: "term_ends_at_unix_ms", description: "is not the instance's term end")])
    }
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    let draft = try await self.renewalDraft(instance, periods: 1, now: now)
    let productID = try await self.baseProductID(of: draft)
    let response: Nest_Order_V1_PlaceRenewalResponse = try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "PlaceRenewal", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        try OrderStore.requireNoOpenSubscriptionOrder(instanceID: instance.id, in: db)
        var order = draft
        order.paymentReference = SubscriptionOrders.autoRenewReference(instance.id)
        let linked = try Self.commitPayment(
          &order, actor: access.caller.subject, baseProductID: productID, now: now, traceParent: traceParent, in: db)
        return .with {
          $0.order = order
          $0.linkedOrders = linked
        }
      }
    }
    self.dispatcher?.signal()
    return response
  }
}
