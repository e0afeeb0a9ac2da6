// Service instances: created for a paid order (idempotent on the order, using the order's
// instance slot), read by their parties, renewed by the platform, suspended, resumed and
// released by their resource owner; the slots of an authorization's max_instances.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension EntitlementService {
  public func createServiceInstance(
    request: Nest_Entitlement_V1_CreateServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CreateServiceInstanceResponse {
    let access = try Access.forCall()
    let now = self.clock.nowUnixMs()
    try InstanceRules.checkCreate(request)
    if let made = try self.store.database.readNow({ try Self.existingInstance(for: request, in: $0) }) {
      return .with { $0.instance = InstanceRules.present(made, now: now) }
    }
    let expiry = try InstanceRules.expiry(of: request, nowUnixMs: now)
    let new = try NewInstance(
      request, expiry: expiry, version: try await self.versions.version(of: request.serviceID, id: request.versionID))
    let response = try await self.store.database.write { db in try self.make(new, access: access, now: now, in: db) }
    self.deployments?.signal()
    return response
  }

  public func createServiceInstances(
    request: Nest_Entitlement_V1_CreateServiceInstancesRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CreateServiceInstancesResponse {
    let access = try Access.forCall()
    try BatchItems.check(request.instances.map(\.orderID), field: "instances", key: "order_id")
    let now = self.clock.nowUnixMs()
    var results = request.instances.map { item in
      Nest_Entitlement_V1_InstanceResult.with { $0.orderID = item.orderID }
    }
    /// Runs `body` for the item at `index`; its own refusal goes in its result.
    func each<T>(_ index: Int, _ body: () throws -> T) throws -> T? {
      do {
        return try body()
      } catch {
        guard let refused = BatchItems.refusal(error) else { throw error }
        results[index].refuse(refused)
        return nil
      }
    }
    // Each item checked and looked up as CreateServiceInstance does, in one read: the
    // instances already made are answered, the others need their version.
    let found = try self.store.database.readNow { db in
      request.instances.map { item in
        Result {
          try InstanceRules.checkCreate(item)
          return try Self.existingInstance(for: item, in: db)
        }
      }
    }
    var pending: [(index: Int, expiry: InstanceRules.Expiry)] = []
    for (index, item) in request.instances.enumerated() {
      guard let made = try each(index, { try found[index].get() }) else { continue }
      if let made {
        results[index].instance = InstanceRules.present(made, now: now)
      } else if let expiry = try each(index, { try InstanceRules.expiry(of: item, nowUnixMs: now) }) {
        pending.append((index, expiry))
      }
    }
    // Each version needed once. A catalog that cannot be reached fails the call (nothing
    // made; the caller retries), not each item after its own timeout.
    let versions = try await self.versions.versions(of: pending.map { request.instances[$0.index] })
    var new: [(index: Int, instance: NewInstance)] = []
    for ((index, expiry), version) in zip(pending, versions) {
      let item = request.instances[index]
      if let instance = try each(index, { try NewInstance(item, expiry: expiry, version: try version.get()) }) {
        new.append((index, instance))
      }
    }
    // The new ones made together, each in its own savepoint.
    let prepared = results
    let made = new
    let response = try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "CreateServiceInstances", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        var results = prepared
        for (index, instance) in made {
          switch try BatchItems.item(in: db, { try self.make(instance, access: access, now: now, in: db) }) {
          case .success(let response): results[index].instance = response.instance
          case .failure(let refused): results[index].refuse(refused)
          }
        }
        return Nest_Entitlement_V1_CreateServiceInstancesResponse.with { $0.results = results }
      }
    }
    if !made.isEmpty { self.deployments?.signal() }
    return response
  }

  /// A checked request with what its instance is made of.
  struct NewInstance: Sendable {
    var request: Nest_Entitlement_V1_CreateServiceInstanceRequest
    var expiry: InstanceRules.Expiry
    var version: Nest_Catalog_V1_ServiceVersion
    var parameters: [String: String]

    /// Refuses a parameter set the version does not have.
    init(
      _ request: Nest_Entitlement_V1_CreateServiceInstanceRequest, expiry: InstanceRules.Expiry,
      version: Nest_Catalog_V1_ServiceVersion
    ) throws(DomainError) {
      self.request = request
      self.expiry = expiry
      self.version = version
      self.parameters = try InstanceRules.parameters(named: request.parameterSetName, in: version)
    }
  }

  /// Makes the instance in the caller's transaction, once per order and client token: its
  /// access (a logon URL, or a signed license), and the order's slot becomes its place.
  func make(_ new: NewInstance, access: Access, now: Int64, in db: Database) throws
    -> Nest_Entitlement_V1_CreateServiceInstanceResponse
  {
    let request = new.request
    return try ClientTokens.once(
      db, caller: access.caller.subject, method: "CreateServiceInstance", token: request.clientToken,
      request: request, nowUnixMs: now
    ) {
      if let existing = try Self.existingInstance(for: request, in: db) { return .with { $0.instance = existing } }
      if !request.authorizationID.isEmpty, try EntitlementStore.authorization(request.authorizationID, in: db) == nil {
        throw DomainError.notFound("authorization", request.authorizationID, field: "authorization_id")
      }
      var instance = InstanceRules.newInstance(
        request, id: Identifiers.new("inst"), version: new.version, parameters: new.parameters,
        expiresAt: new.expiry.expiresAtUnixMs, period: new.expiry.period, actor: access.caller.subject, now: now)
      switch instance.accessMode {
      case .logonURL:
        instance.access = .logonURL("\(self.logonURLBase)/\(instance.id)")
      default:
        instance.access = .license(
          try Licenses.issue(for: instance, id: Identifiers.new("lic"), signer: self.signer, now: now))
      }
      try EntitlementStore.insert(instance, request: request, in: db)
      // The order's hold on a place under the authorization is now this instance's place.
      if let slot = try EntitlementStore.slot(orderID: request.orderID, in: db) {
        try EntitlementStore.save(SlotRules.use(slot), in: db)
      }
      return .with { $0.instance = instance }
    }
  }

  /// The instance already made for this order: the same request gets it back, a different
  /// one is ALREADY_EXISTS.
  static func existingInstance(for request: Nest_Entitlement_V1_CreateServiceInstanceRequest, in db: Database) throws
    -> Instance?
  {
    guard let (instance, original) = try EntitlementStore.instance(orderID: request.orderID, in: db) else {
      return nil
    }
    try InstanceRules.checkRedelivery(request, original: original, instanceID: instance.id)
    return instance
  }

  public func getServiceInstance(
    request: Nest_Entitlement_V1_GetServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GetServiceInstanceResponse {
    let access = try Access.forCall()
    let now = self.clock.nowUnixMs()
    return try self.store.database.readNow { db in
      let instance: Instance
      switch request.key {
      case .instanceID(let id)?:
        try DomainError.requireNonEmpty(("instance_id", id))
        instance = try access.authorize(
          try EntitlementStore.instance(id, in: db), notFound: .notFound("instance", id, field: "instance_id"))
      case .orderID(let id)?:
        try DomainError.requireNonEmpty(("order_id", id))
        instance = try access.authorize(
          try EntitlementStore.instance(orderID: id, in: db)?.instance,
          notFound: .notFound("instance for order", id, field: "order_id"))
      case nil:
        throw DomainError.invalid("key", "set instance_id or order_id")
      }
      return .with { $0.instance = InstanceRules.present(instance, now: now) }
    }
  }

  public func listServiceInstances(
    request: Nest_Entitlement_V1_ListServiceInstancesRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListServiceInstancesResponse {
    let result = try await self.page(
      request, request.page, scope: EntitlementPolicy.scope, fetch: EntitlementStore.instances,
      present: InstanceRules.present)
    return .with {
      $0.instances = result.items
      $0.page = result.page
    }
  }

  /// A lifecycle change, once per client token, by whoever the method's declaration admits.
  func operate<Request: NestMessage>(
    _ id: String, method: String, token: String, request: Request,
    _ change: @escaping @Sendable (inout Instance, Principal, Int64) throws -> Void
  ) async throws -> Instance {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("instance_id", id))
    let now = self.clock.nowUnixMs()
    let response: Nest_Entitlement_V1_GetServiceInstanceResponse = try await self.store.database.write { db in
      var instance = InstanceRules.present(
        try access.authorize(
          try EntitlementStore.instance(id, in: db), notFound: .notFound("instance", id, field: "instance_id")),
        now: now)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        try change(&instance, access.caller, now)
        try EntitlementStore.update(instance, in: db)
        return .with { $0.instance = instance }
      }
    }
    return response.instance ?? .init()
  }

  public func renewServiceInstance(
    request: Nest_Entitlement_V1_RenewServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RenewServiceInstanceResponse {
    let signer = self.signer
    let instance = try await self.operate(
      request.instanceID, method: "RenewServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      // Each renewal order extends the term once, however often it is delivered.
      if !request.orderID.isEmpty, SubscriptionRules.applied(request.orderID, to: instance.subscription) { return }
      guard request.quantity >= 0 else { throw DomainError.invalid("quantity", "must not be negative") }
      let status = try InstanceRules.transition(from: instance.status, .renew)
      let termStart = max(instance.expiresAtUnixMs, now)
      instance.expiresAtUnixMs = try InstanceRules.renewedExpiry(instance, request.renewal, nowUnixMs: now)
      if var subscription = instance.subscription {
        instance.quantity = try SubscriptionRules.renew(
          &subscription, orderID: request.orderID, plan: request.plan, quantity: request.quantity,
          currentQuantity: instance.quantity, termStart: termStart)
        instance.subscription = subscription
      }
      if case .license(let license)? = instance.access {
        instance.access = .license(try Licenses.issue(for: instance, id: license.licenseID, signer: signer, now: now))
      }
      let reason = request.orderID.isEmpty ? "renewed" : "renewed by order \(request.orderID)"
      InstanceRules.record(&instance, status, actor: caller.subject, reason: reason, now: now)
    }
    return .with { $0.instance = instance }
  }

  public func changeServiceInstance(
    request: Nest_Entitlement_V1_ChangeServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ChangeServiceInstanceResponse {
    try SubscriptionRules.checkChange(request)
    let signer = self.signer
    let instance = try await self.operate(
      request.instanceID, method: "ChangeServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      if SubscriptionRules.applied(request.orderID, to: instance.subscription) { return }
      let changed = try SubscriptionRules.change(instance, request, now: now)
      instance.subscription = changed.subscription
      instance.updatedAtUnixMs = now
      if let quantity = changed.quantity {
        instance.quantity = quantity
        if case .license(let license)? = instance.access {
          instance.access = .license(
            try Licenses.issue(for: instance, id: license.licenseID, signer: signer, now: now))
        }
      }
    }
    return .with { $0.instance = instance }
  }

  public func setAutoRenew(
    request: Nest_Entitlement_V1_SetAutoRenewRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_SetAutoRenewResponse {
    let instance = try await self.operate(
      request.instanceID, method: "SetAutoRenew", token: request.clientToken, request: request
    ) { instance, caller, now in
      guard var subscription = instance.subscription, subscription.plan != nil else {
        throw DomainError(
          .failedPrecondition, "instance \(instance.id) was not sold on a plan: there is nothing to renew")
      }
      guard instance.status != .released, subscription.status != .ended else {
        throw DomainError(.failedPrecondition, "instance \(instance.id) is released")
      }
      subscription.autoRenew = request.autoRenew
      instance.subscription = subscription
      instance.updatedAtUnixMs = now
    }
    return .with { $0.instance = instance }
  }

  public func suspendServiceInstance(
    request: Nest_Entitlement_V1_SuspendServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_SuspendServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "SuspendServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      try InstanceRules.step(&instance, .suspend, actor: caller.subject, reason: request.reason, now: now)
    }
    return .with { $0.instance = instance }
  }

  public func resumeServiceInstance(
    request: Nest_Entitlement_V1_ResumeServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ResumeServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "ResumeServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      try InstanceRules.step(&instance, .resume, actor: caller.subject, reason: request.reason, now: now)
    }
    return .with { $0.instance = instance }
  }

  public func releaseServiceInstance(
    request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ReleaseServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "ReleaseServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      try InstanceRules.step(&instance, .release, actor: caller.subject, reason: request.reason, now: now)
    }
    return .with { $0.instance = instance }
  }

  // MARK: Slots

  public func reserveInstanceSlot(
    request: Nest_Entitlement_V1_ReserveInstanceSlotRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ReserveInstanceSlotResponse {
    try DomainError.requireNonEmpty(("order_id", request.orderID), ("authorization_id", request.authorizationID))
    guard request.holdMs >= 0 else { throw DomainError.invalid("hold_ms", "must not be negative") }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      guard let authorization = try EntitlementStore.authorization(request.authorizationID, in: db) else {
        throw DomainError.notFound("authorization", request.authorizationID, field: "authorization_id")
      }
      let existing = try EntitlementStore.slot(orderID: request.orderID, in: db)
      if let existing, existing.authorizationID != authorization.id {
        throw DomainError(
          .alreadyExists, "order \(request.orderID) holds a slot of another authorization",
          violations: [.init(field: "authorization_id", description: "differs from the order's slot")])
      }
      let others = try EntitlementStore.slotsInUse(
        authorizationID: authorization.id, except: request.orderID, now: now, in: db)
      let slot = try SlotRules.reserve(
        orderID: request.orderID, authorization: authorization, existing: existing, othersInUse: others,
        holdMs: request.holdMs, now: now)
      try EntitlementStore.save(slot, in: db)
      return .with {
        $0.slot = slot
        $0.slotsInUse = others + 1
        $0.maxInstances = authorization.terms?.maxInstances ?? 0
      }
    }
  }

  public func releaseInstanceSlot(
    request: Nest_Entitlement_V1_ReleaseInstanceSlotRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ReleaseInstanceSlotResponse {
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    return try await self.store.database.write { db in
      guard let slot = try EntitlementStore.slot(orderID: request.orderID, in: db) else { return .init() }
      // A used slot is its instance's: releasing the instance frees it.
      guard slot.status == .held else { return .with { $0.slot = slot } }
      let released = SlotRules.release(slot)
      try EntitlementStore.save(released, in: db)
      return .with { $0.slot = released }
    }
  }
}
