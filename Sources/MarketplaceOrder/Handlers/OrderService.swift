// The MarketplaceOrderService RPCs (DESIGN sections 1, 5, 6 and 8). CreateOrder snapshots
// what it is sold under; PayOrder commits the PAID state, the scenario-3 linked order and the
// outbox rows in one transaction, and the dispatcher carries them out; RefundOrder queues the
// reversal the same way.
import Foundation
import GRDB
public import GRPCCore
import NestAuth
public import NestProto
public import NestServiceKit
import NestTransport

public struct OrderService: Nest_Order_V1_MarketplaceOrderService.SimpleServiceProtocol {
  let store: OrderStore
  let peers: any OrderPeers
  let dispatcher: Dispatcher?
  let commissionBps: UInt32
  let now: @Sendable () -> Int64

  /// - `commissionBps`: the platform's commission on every marketplace sale (DESIGN section 5).
  /// - `dispatcher`: woken when rows are queued (nil: it polls).
  public init(
    store: OrderStore, peers: any OrderPeers, dispatcher: Dispatcher?, commissionBps: UInt32 = 500,
    now: @escaping @Sendable () -> Int64 = Clock.nowUnixMs
  ) {
    self.store = store
    self.peers = peers
    self.dispatcher = dispatcher
    self.commissionBps = commissionBps
    self.now = now
  }

  static func record(_ order: inout Order, _ status: OrderStatus, actor: String, reason: String = "", now: Int64) {
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

  // MARK: Creating and paying

  public func createOrder(request: Nest_Order_V1_CreateOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_CreateOrderResponse
  {
    let caller = try Caller.require(.customer)
    try OrderRules.check(request)
    let product = try await Self.translatingNotFound("product", request.productID, field: "product_id") {
      try await self.peers.product(request.productID)
    }
    guard product.status == .listed else {
      throw DomainError(.failedPrecondition, "product \(product.id) is not listed on the marketplace")
    }
    guard let plan = product.plans.first(where: { $0.planID == request.planID }), let unitPrice = plan.unitPrice else {
      throw DomainError.notFound("plan", request.planID, field: "plan_id")
    }
    let service = try await self.peers.service(product.serviceID)
    guard let facts = service.service, facts.status == .online else {
      throw DomainError(.failedPrecondition, "service \(product.serviceID) is not ONLINE")
    }
    let version = service.versions.first { $0.id == facts.defaultVersionID }
    if !request.parameterSetName.isEmpty,
      version?.parameterSets.contains(where: { $0.name == request.parameterSetName }) != true
    {
      throw DomainError.invalid([
        .init(field: "parameter_set_name", description: "is not a parameter set of the service's current version")
      ])
    }
    let resolution = try await self.peers.resolveScenario(product.serviceID)
    var wholesale: Nest_Order_V1_WholesaleSnapshot? = nil
    if resolution.scenario != .direct {
      let check = try await self.peers.checkDistribution(
        baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      guard let authorization = check.authorization, let terms = authorization.terms, let unit = terms.wholesalePrice
      else {
        throw DomainError(.failedPrecondition, "the distributor's authorization has no terms")
      }
      if terms.maxInstances > 0 && check.instanceCount >= terms.maxInstances {
        throw DomainError(
          .failedPrecondition, "the authorization's maximum of \(terms.maxInstances) instances is reached")
      }
      let amount = try OrderRules.price(
        unitPrice: unit, period: plan.billingPeriod, quantity: request.quantity, periods: request.periods,
        commissionBps: 0)
      wholesale = .with {
        $0.authorizationID = authorization.id
        $0.wholesaleUnitPrice = unit
        $0.wholesaleAmount = amount.amount
        $0.termsValidUntilUnixMs = terms.validUntilUnixMs
      }
    }
    let price = try OrderRules.price(
      unitPrice: unitPrice, period: plan.billingPeriod, quantity: request.quantity, periods: request.periods,
      commissionBps: self.commissionBps)
    let now = self.now()
    let snapshot = wholesale
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "CreateOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var order = Order.with {
          $0.id = Caller.newID("ord")
          $0.kind = .customer
          $0.buyer = .with {
            $0.role = .customer
            $0.accountID = caller.subject
          }
          $0.seller = OrderRules.seller(of: resolution)
          $0.productID = product.id
          $0.planID = plan.planID
          $0.serviceID = product.serviceID
          $0.serviceVersionID = facts.defaultVersionID
          $0.quantity = request.quantity
          $0.periods = request.periods
          $0.parameterSetName = request.parameterSetName
          $0.price = price
          $0.scenario = resolution
          $0.wholesale = snapshot
          $0.labels = request.labels
          $0.createdAtUnixMs = now
        }
        Self.record(&order, .created, actor: caller.subject, now: now)
        try OrderStore.save(order, in: db)
        return .with { $0.order = order }
      }
    }
  }

  /// The order if the caller may see it: its buyer or seller, an operator or a service.
  static func visibleOrder(_ id: String, to caller: Principal, in db: Database) throws -> Order {
    guard let order = try OrderStore.order(id, in: db),
      Caller.isPlatform(caller) || order.buyer?.accountID == caller.subject || order.seller?.accountID == caller.subject
    else { throw DomainError.notFound("order", id, field: "order_id") }
    return order
  }

  /// The order for its buyer, a customer order: NOT_FOUND for anyone else.
  static func buyersOrder(_ id: String, caller: Principal, in db: Database) throws -> Order {
    guard let order = try OrderStore.order(id, in: db), order.buyer?.accountID == caller.subject,
      order.buyer?.role == caller.role
    else { throw DomainError.notFound("order", id, field: "order_id") }
    guard order.kind == .customer else {
      throw DomainError(.failedPrecondition, "order \(id) is a linked order; it follows its parent")
    }
    return order
  }

  static func queue(
    _ kind: Nest_Order_V1_DeliveryKind, for orderID: String, key: String, now: Int64, in db: Database
  ) throws {
    let target: Nest_Order_V1_DeliveryTarget =
      kind == .createInstance || kind == .releaseInstance ? .entitlement : .settlement
    try OrderStore.save(
      Delivery.with {
        $0.id = Caller.newID("dlv")
        $0.orderID = orderID
        $0.kind = kind
        $0.target = target
        $0.status = .pending
        $0.idempotencyKey = key
        $0.createdAtUnixMs = now
        $0.nextAttemptAtUnixMs = now
      }, in: db)
  }

  public func payOrder(request: Nest_Order_V1_PayOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_PayOrderResponse
  {
    let caller = try Caller.require(.customer)
    try DomainError.requireNonEmpty(("order_id", request.orderID), ("payment_reference", request.paymentReference))
    let current = try await self.store.database.read { try Self.buyersOrder(request.orderID, caller: caller, in: $0) }
    // Before taking money for B: the authorization must still be ACTIVE; scenario 3 also
    // needs A's product for the linked order. A retry of a paid order skips both.
    var baseProductID = ""
    if current.status == .created, let resolution = current.scenario, resolution.scenario != .direct {
      _ = try await self.peers.checkDistribution(
        baseServiceID: resolution.baseServiceID, distributorID: resolution.distributorID)
      if resolution.scenario == .scenario3 {
        baseProductID = try await self.peers.product(ofService: resolution.baseServiceID).id
      }
    }
    let now = self.now()
    let productID = baseProductID
    let response: Nest_Order_V1_PayOrderResponse = try await self.store.database.write { db in
      var order = try Self.buyersOrder(request.orderID, caller: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "PayOrder", token: request.clientToken, request: request, nowUnixMs: now
      ) {
        let status = try OrderRules.transition(from: order.status, .pay)
        if let expected = request.expectedAmount, expected != order.price?.amount {
          throw DomainError(
            .failedPrecondition, "expected_amount differs from the order's price",
            violations: [.init(field: "expected_amount", description: "differs from price.amount")])
        }
        order.paymentReference = request.paymentReference
        Self.record(&order, status, actor: caller.subject, now: now)
        var linked: [Order] = []
        if order.scenario?.scenario == .scenario3 {
          let link = try OrderRules.linkedOrder(for: order, id: Caller.newID("ord"), baseProductID: productID, now: now)
          order.linkedOrderIds = [link.id]
          linked.append(link)
        }
        try OrderStore.save(order, in: db)
        try Self.queue(.createInstance, for: order.id, key: order.id, now: now, in: db)
        try Self.queue(.recordSale, for: order.id, key: order.id, now: now, in: db)
        for link in linked {
          try OrderStore.save(link, in: db)
          try Self.queue(.recordSale, for: link.id, key: link.id, now: now, in: db)
        }
        return .with {
          $0.order = order
          $0.linkedOrders = linked
        }
      }
    }
    self.dispatcher?.signal()
    var fresh = response
    fresh.order = try await self.withDelivery(response.order.map { [$0] } ?? []).first
    fresh.linkedOrders = try await self.withDelivery(response.linkedOrders)
    return fresh
  }

  public func cancelOrder(request: Nest_Order_V1_CancelOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_CancelOrderResponse
  {
    let caller = try Caller.require(.customer)
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    guard request.reason.utf8.count <= 1024 else {
      throw DomainError.invalid([.init(field: "reason", description: "must be at most 1024 bytes")])
    }
    let now = self.now()
    return try await self.store.database.write { db in
      var order = try Self.buyersOrder(request.orderID, caller: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "CancelOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let status = try OrderRules.transition(from: order.status, .cancel)
        order.reason = request.reason
        Self.record(&order, status, actor: caller.subject, reason: request.reason, now: now)
        try OrderStore.save(order, in: db)
        return .with { $0.order = order }
      }
    }
  }

  public func refundOrder(request: Nest_Order_V1_RefundOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_RefundOrderResponse
  {
    let caller = try Caller.require(.operator, .isv, .distributor)
    try DomainError.requireNonEmpty(("order_id", request.orderID), ("reason", request.reason))
    guard request.reason.utf8.count <= 1024 else {
      throw DomainError.invalid([.init(field: "reason", description: "must be at most 1024 bytes")])
    }
    let now = self.now()
    let response: Nest_Order_V1_RefundOrderResponse = try await self.store.database.write { db in
      guard var order = try OrderStore.order(request.orderID, in: db),
        caller.role == .operator
          || (order.seller?.accountID == caller.subject && order.seller?.role == caller.role)
      else { throw DomainError.notFound("order", request.orderID, field: "order_id") }
      return try ClientTokens.once(
        db, caller: caller.subject, method: "RefundOrder", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        guard order.kind == .customer else {
          throw DomainError(
            .failedPrecondition, "order \(order.id) is a linked order: refund its parent \(order.parentOrderID)")
        }
        let status = try OrderRules.transition(from: order.status, .refund)
        order.reason = request.reason
        Self.record(&order, status, actor: caller.subject, reason: request.reason, now: now)
        try OrderStore.save(order, in: db)
        var linked: [Order] = []
        for id in order.linkedOrderIds {
          guard var link = try OrderStore.order(id, in: db) else { continue }
          link.reason = request.reason
          Self.record(&link, .refunded, actor: caller.subject, reason: "parent \(order.id) refunded", now: now)
          try OrderStore.save(link, in: db)
          linked.append(link)
        }
        try Self.queue(.recordRefund, for: order.id, key: "refund:\(order.id)", now: now, in: db)
        try Self.queue(.releaseInstance, for: order.id, key: "release:\(order.id)", now: now, in: db)
        return .with {
          $0.order = order
          $0.linkedOrders = linked
        }
      }
    }
    self.dispatcher?.signal()
    return response
  }

  // MARK: Reading

  /// Each order's delivery summary, read now (it is not stored with the order).
  func withDelivery(_ orders: [Order]) async throws -> [Order] {
    try await self.store.database.read { db in
      try orders.map { order in
        var order = order
        order.delivery = try OrderStore.summary(ofOrder: order.id, in: db)
        return order
      }
    }
  }

  public func getOrder(request: Nest_Order_V1_GetOrderRequest, context: ServerContext) async throws
    -> Nest_Order_V1_GetOrderResponse
  {
    let caller = try Caller.require()
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    let response: Nest_Order_V1_GetOrderResponse = try await self.store.database.read { db in
      let order = try Self.visibleOrder(request.orderID, to: caller, in: db)
      // The wholesale side is the distributor's and the platform's business, not the customer's.
      let linked = try order.linkedOrderIds.compactMap { try OrderStore.order($0, in: db) }.filter {
        Caller.isPlatform(caller) || $0.buyer?.accountID == caller.subject
      }
      return .with {
        $0.order = order
        $0.linkedOrders = linked
      }
    }
    var fresh = response
    fresh.order = try await self.withDelivery(response.order.map { [$0] } ?? []).first
    fresh.linkedOrders = try await self.withDelivery(response.linkedOrders)
    return fresh
  }

  public func listOrders(request: Nest_Order_V1_ListOrdersRequest, context: ServerContext) async throws
    -> Nest_Order_V1_ListOrdersResponse
  {
    let caller = try Caller.require()
    let page = try PageQuery(request.page)
    if request.createdAfterUnixMs > 0 && request.createdBeforeUnixMs > 0
      && request.createdBeforeUnixMs <= request.createdAfterUnixMs
    {
      throw DomainError.invalid([
        .init(field: "created_before_unix_ms", description: "must be after created_after_unix_ms")
      ])
    }
    var party: String? = nil
    if !Caller.isPlatform(caller) {
      let named = [request.buyerID, request.sellerID].filter { !$0.isEmpty }
      let customerNamesOther = caller.role == .customer && !request.buyerID.isEmpty && request.buyerID != caller.subject
      guard !customerNamesOther, named.isEmpty || named.contains(caller.subject) else {
        throw DomainError(.permissionDenied, "orders of another account")
      }
      party = caller.subject
    }
    var filter = request
    if caller.role == .customer { filter.buyerID = caller.subject }
    let (query, visibleTo) = (filter, party)
    let result = try await self.store.database.read {
      try OrderStore.orders(query, party: visibleTo, page: page, in: $0)
    }
    let orders = try await self.withDelivery(result.items)
    return .with {
      $0.orders = orders
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func listDeliveries(request: Nest_Order_V1_ListDeliveriesRequest, context: ServerContext) async throws
    -> Nest_Order_V1_ListDeliveriesResponse
  {
    _ = try Caller.require(.operator)
    let page = try PageQuery(request.page)
    let result = try await self.store.database.read { try OrderStore.deliveries(request, page: page, in: $0) }
    return .with {
      $0.deliveries = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }
}
