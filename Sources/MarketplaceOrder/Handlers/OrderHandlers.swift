// Creating, paying, cancelling, refunding and reading orders. CreateOrder snapshots what the
// order is sold under; PayOrder holds an instance slot under the authorization, then commits
// the PAID state, the scenario-3 linked order and the outbox rows in one transaction; the
// dispatcher carries them out. RefundOrder and CancelOrder queue what undoes them.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension OrderService {
  /// A peer's NOT_FOUND as this request's NOT_FOUND, naming the field.
  static func translatingNotFound<R>(_ what: String, _ id: String, field: String, _ body: () async throws -> R)
    async throws -> R
  {
    do {
      return try await body()
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound(what, id, field: field)
    }
  }

  /// The order for this call, as its declaration's relation allows; a LINKED order follows
  /// its parent and is not acted on by itself.
  static func customerOrder(_ id: String, _ access: Access, in db: Database) throws -> Order {
    let order = try access.authorize(
      try OrderStore.order(id, in: db), notFound: .notFound("order", id, field: "order_id"))
    guard order.kind != .linked else {
      throw DomainError(
        .failedPrecondition, "order \(id) is a linked order; it follows its parent \(order.parentOrderID)")
    }
    return order
  }

  public func createOrder(request: Nest_Order_V1_CreateOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_CreateOrderResponse
  {
    let access = try Access.forCall()
    try OrderRules.check(request)
    // The product, its service, the scenario and A's product, from one read of the catalog.
    let terms = try await Self.translatingNotFound("product", request.productID, field: "product_id") {
      try await self.peers.saleTerms(request.productID)
    }
    let product = terms.product ?? .init()
    guard product.status == .listed else {
      throw DomainError(.failedPrecondition, "product \(product.id) is not listed on the marketplace")
    }
    guard let plan = product.plans.first(where: { $0.planID == request.planID }), let unitPrice = plan.unitPrice else {
      throw DomainError.notFound("plan", request.planID, field: "plan_id")
    }
    guard !plan.deprecated else {
      throw DomainError(.failedPrecondition, "plan \(plan.planID) is deprecated: no new sales")
    }
    if request.trial {
      try SubscriptionOrders.checkTrial(request, plan: plan)
      if try await self.store.database.read({
        try OrderStore.hadTrial(buyerID: access.caller.subject, productID: product.id, in: $0)
      }) {
        throw DomainError(.failedPrecondition, "the customer already had a trial of product \(product.id)")
      }
    }
    guard let facts = terms.service, facts.status == .online else {
      throw DomainError(.failedPrecondition, "service \(product.serviceID) is not ONLINE")
    }
    let version = terms.defaultVersion
    if !request.parameterSetName.isEmpty,
      version?.parameterSets.contains(where: { $0.name == request.parameterSetName }) != true
    {
      throw DomainError.invalid("parameter_set_name", "is not a parameter set of the service's current version")
    }
    let resolution = terms.resolution ?? .init()
    var wholesale: Nest_Order_V1_WholesaleSnapshot? = nil
    if resolution.scenario != .direct {
      let check = try await self.peers.checkDistribution(
        baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      wholesale = try OrderRules.wholesale(
        check, period: plan.billingPeriod, quantity: request.quantity, periods: request.periods)
      wholesale?.baseProductID = terms.baseProductID
    }
    var price = try OrderRules.price(
      unitPrice: unitPrice, period: plan.billingPeriod, quantity: request.quantity, periods: request.periods,
      commissionBps: self.commissionBps)
    if request.trial {
      price = OrderRules.split(0, unitPrice: unitPrice, period: plan.billingPeriod, commissionBps: self.commissionBps)
      if var free = wholesale {
        free.wholesaleAmount = MoneyMath.money(free.wholesaleUnitPrice?.currency ?? "", 0)
        wholesale = free
      }
    }
    let orderID = Identifiers.new("ord")
    // A trial is paid when created: its place under the authorization is held first, as
    // PayOrder holds it.
    if request.trial, resolution.scenario != .direct {
      _ = try await self.peers.reserveSlot(orderID: orderID, authorizationID: wholesale?.authorizationID ?? "")
    }
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    let snapshot = wholesale
    let finalPrice = price
    let response: Nest_Order_V1_CreateOrderResponse = try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var order = Order.with {
          $0.id = orderID
          $0.kind = .customer
          $0.buyer = .with {
            $0.role = .customer
            $0.accountID = access.caller.subject
          }
          $0.seller = OrderRules.seller(of: resolution)
          $0.productID = product.id
          $0.planID = plan.planID
          $0.serviceID = product.serviceID
          $0.serviceVersionID = facts.defaultVersionID
          $0.quantity = request.quantity
          $0.periods = request.periods
          $0.parameterSetName = request.parameterSetName
          $0.price = finalPrice
          $0.scenario = resolution
          $0.wholesale = snapshot
          $0.labels = request.labels
          $0.createdAtUnixMs = now
          $0.trial = request.trial
          $0.trialDays = request.trial ? plan.trialDays : 0
          $0.autoRenew = request.autoRenew
        }
        OrderRules.record(&order, .created, actor: access.caller.subject, now: now)
        if order.trial {
          try OrderStore.requireNoTrial(buyerID: access.caller.subject, productID: product.id, in: db)
          order.paymentReference = "trial"
          _ = try Self.commitPayment(
            &order, actor: access.caller.subject, baseProductID: "", now: now, traceParent: traceParent, in: db)
        } else {
          try OrderStore.save(order, in: db)
        }
        return .with { $0.order = order }
      }
    }
    if request.trial { self.dispatcher?.signal() }
    return response
  }

  /// Pays `order` (CREATED) in the caller's transaction: PAID, in scenario 3 its linked order
  /// for A (when there is a wholesale amount to place), and the outbox rows; returns the
  /// linked orders.
  static func commitPayment(
    _ order: inout Order, actor: String, baseProductID: String, now: Int64, traceParent: String, in db: Database
  ) throws -> [Order] {
    try OrderRules.apply(.pay, to: &order, actor: actor, now: now)
    var linked: [Order] = []
    if order.scenario?.scenario == .scenario3, (order.wholesale?.wholesaleAmount?.amountMinor ?? 0) > 0 {
      linked.append(
        try OrderRules.linkedOrder(for: order, id: Identifiers.new("ord"), baseProductID: baseProductID, now: now))
      order.linkedOrderIds = linked.map(\.id)
    }
    try OrderStore.save(order, in: db)
    for link in linked { try OrderStore.save(link, in: db) }
    for step in DeliveryRules.paid(order, linked: linked, newID: { Identifiers.new("dlv") }, now: now) {
      try OrderStore.queue(step, traceParent: traceParent, in: db)
    }
    return linked
  }

  /// A's product, which a scenario-3 order's linked order is for: as the order keeps it from
  /// its sale terms, else (orders made before it was kept) as the catalog has it now; empty
  /// outside scenario 3.
  func baseProductID(of order: Order) async throws -> String {
    guard let resolution = order.scenario, resolution.scenario == .scenario3 else { return "" }
    if let kept = order.wholesale?.baseProductID, !kept.isEmpty { return kept }
    return try await self.peers.product(ofService: resolution.baseServiceID).id
  }

  public func payOrder(request: Nest_Order_V1_PayOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_PayOrderResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("order_id", request.orderID), ("payment_reference", request.paymentReference))
    let current = try self.store.database.readNow { try Self.customerOrder(request.orderID, access, in: $0) }
    // Before taking money for B: a place under the authorization (which must still be
    // ACTIVE) is held for the order in entitlement, so that max_instances holds whatever
    // races; scenario 3 also needs A's product for the linked order. A retry of a paid order
    // skips both.
    var baseProductID = ""
    if current.status == .created, let resolution = current.scenario, resolution.scenario != .direct {
      if current.kind == .customer {
        _ = try await self.peers.reserveSlot(
          orderID: current.id, authorizationID: current.wholesale?.authorizationID ?? "")
      } else {
        // A renewal or change keeps its instance's place; the authorization must still be
        // ACTIVE (entitlement answers FAILED_PRECONDITION otherwise).
        _ = try await self.peers.checkDistribution(
          baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      }
      baseProductID = try await self.baseProductID(of: current)
    }
    if current.status == .created, current.kind == .change {
      try SubscriptionOrders.checkStillPriced(current, instance: try await self.peers.instance(current.instanceID))
    }
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    let productID = baseProductID
    let response: Nest_Order_V1_PayOrderResponse = try await self.store.database.write { db in
      var order = try Self.customerOrder(request.orderID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "PayOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        try OrderRules.checkExpectedAmount(request.expectedAmount, of: order)
        order.paymentReference = request.paymentReference
        let linked = try Self.commitPayment(
          &order, actor: access.caller.subject, baseProductID: productID, now: now, traceParent: traceParent, in: db)
        return .with {
          $0.order = order
          $0.linkedOrders = linked
        }
      }
    }
    self.dispatcher?.signal()
    return try self.store.database.readNow { db in
      try .with {
        $0.order = try Self.withDelivery(response.order.map { [$0] } ?? [], in: db).first
        $0.linkedOrders = try Self.withDelivery(response.linkedOrders, in: db)
      }
    }
  }

  public func cancelOrder(request: Nest_Order_V1_CancelOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_CancelOrderResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    try DomainError.requireAtMost(1024, bytes: request.reason, field: "reason")
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    let response: Nest_Order_V1_CancelOrderResponse = try await self.store.database.write { db in
      var order = try Self.customerOrder(request.orderID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "CancelOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        order.reason = request.reason
        try OrderRules.apply(.cancel, to: &order, actor: access.caller.subject, reason: request.reason, now: now)
        try OrderStore.save(order, in: db)
        try OrderStore.queue(
          DeliveryRules.cancelled(order, newID: { Identifiers.new("dlv") }, now: now), traceParent: traceParent, in: db)
        return .with { $0.order = order }
      }
    }
    self.dispatcher?.signal()
    return response
  }

  public func refundOrder(request: Nest_Order_V1_RefundOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_RefundOrderResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("order_id", request.orderID), ("reason", request.reason))
    try DomainError.requireAtMost(1024, bytes: request.reason, field: "reason")
    let now = self.clock.nowUnixMs()
    let traceParent = TraceContext.currentTraceParent()
    let response: Nest_Order_V1_RefundOrderResponse = try await self.store.database.write { db in
      var order = try Self.customerOrder(request.orderID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "RefundOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        order.reason = request.reason
        try OrderRules.apply(.refund, to: &order, actor: access.caller.subject, reason: request.reason, now: now)
        try OrderStore.save(order, in: db)
        var linked: [Order] = []
        for var link in try OrderStore.orders(ids: order.linkedOrderIds, in: db) {
          link.reason = request.reason
          OrderRules.record(
            &link, .refunded, actor: access.caller.subject, reason: "parent \(order.id) refunded", now: now)
          try OrderStore.save(link, in: db)
          linked.append(link)
        }
        try OrderStore.queue(
          DeliveryRules.refunded(order, newID: { Identifiers.new("dlv") }, now: now), traceParent: traceParent, in: db)
        return .with {
          $0.order = order
          $0.linkedOrders = linked
        }
      }
    }
    self.dispatcher?.signal()
    return response
  }

  /// Each order with its delivery summary, read now (it is not stored with the order).
  static func withDelivery(_ orders: [Order], in db: Database) throws -> [Order] {
    let deliveries = try OrderStore.deliveries(ofOrders: orders.map(\.id), in: db)
    return orders.map { order in
      var order = order
      order.delivery = DeliveryRules.summary(deliveries[order.id] ?? [])
      return order
    }
  }

  public func getOrder(request: Nest_Order_V1_GetOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_GetOrderResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    return try self.store.database.readNow { db in
      let order = try access.authorize(
        try OrderStore.order(request.orderID, in: db), notFound: .notFound("order", request.orderID, field: "order_id"))
      return try .with {
        $0.order = try Self.withDelivery([order], in: db).first
        $0.linkedOrders = try Self.withDelivery(try OrderStore.orders(ids: order.linkedOrderIds, in: db), in: db)
      }
    }
  }

  public func listOrders(request: Nest_Order_V1_ListOrdersRequest, context: ServerContext) async throws
    -> Nest_Order_V1_ListOrdersResponse
  {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    try DomainError.checkRange(request.createdAfterUnixMs, request.createdBeforeUnixMs, field: "created")
    let party = try OrderPolicy.scope(request, for: access)
    return try await self.store.database.read { db in
      let result = try OrderStore.orders(request, party: party, page: page, in: db)
      return try .with {
        $0.orders = try Self.withDelivery(result.items, in: db)
        $0.page = .with { $0.nextPageToken = result.nextPageToken }
      }
    }
  }

  public func listDeliveries(request: Nest_Order_V1_ListDeliveriesRequest, context: ServerContext) async throws
    -> Nest_Order_V1_ListDeliveriesResponse
  {
    let page = try PageQuery(request.page)
    let result = try await self.store.database.read { try OrderStore.deliveries(request, page: page, in: $0) }
    return .with {
      $0.deliveries = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }
}
