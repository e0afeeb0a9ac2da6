// The EntitlementService RPCs (DESIGN section 8): authorize the caller (section 4), validate,
// apply the pure rules, and write through the store, mutating RPCs once per client token.
// Statuses that time changes (an authorization or instance past its end, a permission
// request past its window) are computed when read.
import Foundation
import GRDB
public import GRPCCore
import NIOConcurrencyHelpers
import NestAuth
public import NestProto
public import NestServiceKit
import NestTransport

public struct EntitlementService: Nest_Entitlement_V1_EntitlementService.SimpleServiceProtocol {
  typealias Authorization = Nest_Entitlement_V1_DistributionAuthorization
  typealias Instance = Nest_Entitlement_V1_ServiceInstance

  let store: EntitlementStore
  let catalog: any CatalogFacts
  let signer: LicenseSigner
  let deployments: DeploymentDriver?
  let logonURLBase: String
  let now: @Sendable () -> Int64
  /// Published versions already asked of the catalog (they are immutable).
  private let publishedVersions = NIOLockedValueBox<[String: Nest_Catalog_V1_ServiceVersion]>([:])

  /// - `deployments`: woken after an instance is created (nil: deployment is driven elsewhere).
  /// - `logonURLBase`: fully managed instances get `<base>/<instance id>`.
  public init(
    store: EntitlementStore, catalog: any CatalogFacts, signer: LicenseSigner, deployments: DeploymentDriver?,
    logonURLBase: String = "https://console.nest.local/instances",
    now: @escaping @Sendable () -> Int64 = Clock.nowUnixMs
  ) {
    self.store = store
    self.catalog = catalog
    self.signer = signer
    self.deployments = deployments
    self.logonURLBase = logonURLBase
    self.now = now
  }

  static func record(
    _ instance: inout Instance, _ status: InstanceRules.Status, actor: String, reason: String, now: Int64
  ) {
    instance.status = status
    instance.updatedAtUnixMs = now
    instance.history.append(.entry(status, actor: actor, reason: reason, at: now))
  }

  static func record(
    _ authorization: inout Authorization, _ status: AuthorizationRules.Status, actor: String, reason: String, now: Int64
  ) {
    authorization.status = status
    authorization.updatedAtUnixMs = now
    authorization.history.append(.entry(status, actor: actor, reason: reason, at: now))
  }

  // MARK: Presenting what time changed

  /// The authorization as of `now`: EXPIRED (with its history entry) once past valid_until.
  static func present(_ authorization: Authorization, now: Int64) -> Authorization {
    let validUntil = authorization.terms?.validUntilUnixMs ?? 0
    guard
      AuthorizationRules.effectiveStatus(authorization.status, validUntilUnixMs: validUntil, nowUnixMs: now)
        != authorization.status
    else { return authorization }
    var expired = authorization
    record(&expired, .expired, actor: "entitlement", reason: "terms ended", now: validUntil)
    return expired
  }

  /// The instance as of `now`: EXPIRED (with its history entry) once past its expiry.
  static func present(_ instance: Instance, now: Int64) -> Instance {
    guard
      InstanceRules.effectiveStatus(instance.status, expiresAtUnixMs: instance.expiresAtUnixMs, nowUnixMs: now)
        != instance.status
    else { return instance }
    var expired = instance
    record(&expired, .expired, actor: "entitlement", reason: "term ended", now: instance.expiresAtUnixMs)
    return expired
  }

  static func present(_ request: Nest_Entitlement_V1_PermissionRequest, now: Int64)
    -> Nest_Entitlement_V1_PermissionRequest
  {
    var request = request
    request.status = PermissionRules.effectiveStatus(request, nowUnixMs: now)
    return request
  }

  // MARK: Distribution authorizations

  /// A base service as catalog knows it, for the caller: NOT_FOUND when it does not exist or
  /// the caller may not see it (another's draft), FAILED_PRECONDITION when it is derived.
  func baseService(_ id: String, for caller: Principal) async throws -> Nest_Catalog_V1_Service {
    let response: Nest_Catalog_V1_GetServiceResponse
    do {
      response = try await self.catalog.service(id)
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound("service", id, field: "base_service_id")
    }
    guard let service = response.service, service.ownerID == caller.subject || service.status != .draft else {
      throw DomainError.notFound("service", id, field: "base_service_id")
    }
    guard service.baseServiceID.isEmpty else {
      throw DomainError(
        .failedPrecondition, "service \(id) is itself derived; only base services are distributed",
        violations: [.init(field: "base_service_id", description: "is a derived service")])
    }
    return service
  }

  public func applyForDistribution(
    request: Nest_Entitlement_V1_ApplyForDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ApplyForDistributionResponse {
    let caller = try Caller.require(.distributor)
    try DomainError.requireNonEmpty(("base_service_id", request.baseServiceID))
    guard request.message.count <= 2000 else {
      throw DomainError.invalid([.init(field: "message", description: "must be at most 2000 characters")])
    }
    let base = try await self.baseService(request.baseServiceID, for: caller)
    guard base.distributable else {
      throw DomainError(
        .failedPrecondition, "service \(base.id) is not open for distribution",
        violations: [.init(field: "base_service_id", description: "is not distributable")])
    }
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "ApplyForDistribution", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let current = try EntitlementStore.latestAuthorization(
          baseServiceID: base.id, distributorID: caller.subject, in: db
        ).map { Self.present($0, now: now) }
        let status = try AuthorizationRules.transition(from: current?.status, .apply)
        var authorization = Authorization.with {
          $0.id = Caller.newID("auth")
          $0.baseServiceID = base.id
          $0.isvID = base.ownerID
          $0.distributorID = caller.subject
          $0.applicationMessage = request.message
          $0.createdAtUnixMs = now
        }
        Self.record(&authorization, status, actor: caller.subject, reason: "", now: now)
        try EntitlementStore.save(authorization, in: db)
        return .with { $0.authorization = authorization }
      }
    }
  }

  /// Loads an authorization the caller may see: NOT_FOUND otherwise.
  static func visibleAuthorization(_ id: String, to caller: Principal, in db: Database) throws -> Authorization {
    guard let authorization = try EntitlementStore.authorization(id, in: db),
      Caller.isPlatform(caller) || authorization.isvID == caller.subject
        || authorization.distributorID == caller.subject
    else { throw DomainError.notFound("authorization", id, field: "authorization_id") }
    return authorization
  }

  /// An ISV's decision on one of its authorizations, once per client token.
  private func decide<Request: NestMessage, Response: NestMessage>(
    _ id: String, method: String, token: String, request: Request, action: AuthorizationAction,
    terms: Nest_Entitlement_V1_DistributionTerms? = nil, reason: String = "",
    response: @escaping @Sendable (Authorization) -> Response
  ) async throws -> Response {
    let caller = try Caller.require(.isv)
    try DomainError.requireNonEmpty(("authorization_id", id))
    if action == .reject || action == .revoke { try DomainError.requireNonEmpty(("reason", reason)) }
    let now = self.now()
    if action == .approve { try AuthorizationRules.checkTerms(terms, nowUnixMs: now) }
    return try await self.store.database.write { db in
      var authorization = Self.present(try Self.visibleAuthorization(id, to: caller, in: db), now: now)
      guard authorization.isvID == caller.subject else {
        throw DomainError(.permissionDenied, "only the ISV that owns the base service decides on authorization \(id)")
      }
      return try ClientTokens.once(
        db, caller: caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        let status = try AuthorizationRules.transition(from: authorization.status, action)
        if let terms { authorization.terms = terms }
        authorization.statusReason = reason
        Self.record(&authorization, status, actor: caller.subject, reason: reason, now: now)
        try EntitlementStore.save(authorization, in: db)
        return response(authorization)
      }
    }
  }

  public func approveDistribution(
    request: Nest_Entitlement_V1_ApproveDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ApproveDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "ApproveDistribution", token: request.clientToken, request: request,
      action: .approve, terms: request.terms ?? nil
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func rejectDistribution(
    request: Nest_Entitlement_V1_RejectDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RejectDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "RejectDistribution", token: request.clientToken, request: request,
      action: .reject, reason: request.reason
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func revokeDistribution(
    request: Nest_Entitlement_V1_RevokeDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RevokeDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "RevokeDistribution", token: request.clientToken, request: request,
      action: .revoke, reason: request.reason
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func grantDistribution(
    request: Nest_Entitlement_V1_GrantDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GrantDistributionResponse {
    let caller = try Caller.require(.isv)
    try DomainError.requireNonEmpty(
      ("base_service_id", request.baseServiceID), ("distributor_id", request.distributorID))
    let now = self.now()
    try AuthorizationRules.checkTerms(request.terms, nowUnixMs: now)
    let base = try await self.baseService(request.baseServiceID, for: caller)
    guard base.ownerID == caller.subject else {
      throw DomainError(.permissionDenied, "service \(base.id) belongs to another ISV")
    }
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "GrantDistribution", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let current = try EntitlementStore.latestAuthorization(
          baseServiceID: base.id, distributorID: request.distributorID, in: db
        ).map { Self.present($0, now: now) }
        let status = try AuthorizationRules.transition(from: current?.status, .grant)
        // A pending application is approved with these terms rather than left beside a grant.
        var authorization =
          current.flatMap { $0.status == .pending ? $0 : nil }
          ?? .with {
            $0.id = Caller.newID("auth")
            $0.baseServiceID = base.id
            $0.isvID = base.ownerID
            $0.distributorID = request.distributorID
            $0.createdAtUnixMs = now
          }
        authorization.terms = request.terms
        authorization.statusReason = ""
        Self.record(&authorization, status, actor: caller.subject, reason: "", now: now)
        try EntitlementStore.save(authorization, in: db)
        return .with { $0.authorization = authorization }
      }
    }
  }

  public func getDistributionAuthorization(
    request: Nest_Entitlement_V1_GetDistributionAuthorizationRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GetDistributionAuthorizationResponse {
    let caller = try Caller.require()
    try DomainError.requireNonEmpty(("authorization_id", request.authorizationID))
    let now = self.now()
    return try await self.store.database.read { db in
      let authorization = try Self.visibleAuthorization(request.authorizationID, to: caller, in: db)
      return .with { $0.authorization = Self.present(authorization, now: now) }
    }
  }

  public func listDistributionAuthorizations(
    request: Nest_Entitlement_V1_ListDistributionAuthorizationsRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListDistributionAuthorizationsResponse {
    let caller = try Caller.require(.isv, .distributor, .operator, .service)
    let page = try PageQuery(request.page)
    var filter = request
    if caller.role == .isv { filter.isvID = caller.subject }
    if caller.role == .distributor { filter.distributorID = caller.subject }
    let now = self.now()
    let query = filter
    let result = try await self.store.database.read {
      try EntitlementStore.authorizations(query, page: page, nowUnixMs: now, in: $0)
    }
    return .with {
      $0.authorizations = result.items.map { Self.present($0, now: now) }
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func checkDistribution(
    request: Nest_Entitlement_V1_CheckDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CheckDistributionResponse {
    let caller = try Caller.require(.isv, .distributor, .operator, .service)
    try DomainError.requireNonEmpty(
      ("base_service_id", request.baseServiceID), ("distributor_id", request.distributorID))
    if caller.role == .distributor && caller.subject != request.distributorID {
      throw DomainError(.permissionDenied, "a distributor may check only its own authorizations")
    }
    let now = self.now()
    return try await self.store.database.read { db in
      let authorization = try EntitlementStore.latestAuthorization(
        baseServiceID: request.baseServiceID, distributorID: request.distributorID, in: db)
      if caller.role == .isv, let authorization, authorization.isvID != caller.subject {
        throw DomainError(.permissionDenied, "an ISV may check only authorizations of its own services")
      }
      try AuthorizationRules.checkSellable(authorization, nowUnixMs: now)
      return .with {
        $0.authorization = authorization
        $0.instanceCount = (try? EntitlementStore.liveInstanceCount(authorizationID: authorization!.id, in: db)) ?? 0
      }
    }
  }

  // MARK: Instances

  public func createServiceInstance(
    request: Nest_Entitlement_V1_CreateServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CreateServiceInstanceResponse {
    let caller = try Caller.require(.service)
    let now = self.now()
    try Self.checkCreate(request)
    let (expiresAt, period) = try InstanceRules.expiry(of: request, nowUnixMs: now)
    if let existing = try await self.store.database.read({ try Self.existingInstance(for: request, in: $0) }) {
      return .with { $0.instance = Self.present(existing, now: now) }
    }
    let version = try await self.version(of: request.serviceID, id: request.versionID)
    let parameters = try Self.parameters(named: request.parameterSetName, in: version)
    let resolution = request.resolution!
    let ownership = InstanceOwnership(resolution: resolution, customerID: request.customerID)
    let signer = self.signer
    let logonURLBase = self.logonURLBase
    let response: Nest_Entitlement_V1_CreateServiceInstanceResponse = try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "CreateServiceInstance", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        if let existing = try Self.existingInstance(for: request, in: db) { return .with { $0.instance = existing } }
        if !request.authorizationID.isEmpty, try EntitlementStore.authorization(request.authorizationID, in: db) == nil
        {
          throw DomainError.notFound("authorization", request.authorizationID, field: "authorization_id")
        }
        var instance = Instance.with {
          $0.id = Caller.newID("inst")
          $0.orderID = request.orderID
          $0.serviceID = request.serviceID
          $0.versionID = version.id
          $0.baseServiceID = resolution.baseServiceID.isEmpty ? request.serviceID : resolution.baseServiceID
          $0.customerID = request.customerID
          $0.distributorID = resolution.distributorID
          $0.isvID = resolution.isvID
          $0.authorizationID = request.authorizationID
          $0.scenario = resolution.scenario
          $0.resourceOwner = ownership.resourceOwner
          $0.feePayer = ownership.feePayer
          $0.accessMode = ownership.accessMode
          $0.parameterSetName = request.parameterSetName
          $0.parameters = parameters
          $0.quantity = request.quantity
          $0.billingPeriod = period
          $0.expiresAtUnixMs = expiresAt
          $0.createdAtUnixMs = now
        }
        switch ownership.accessMode {
        case .logonURL:
          instance.access = .logonURL("\(logonURLBase)/\(instance.id)")
        default:
          instance.access = .license(try Self.license(for: instance, id: Caller.newID("lic"), signer: signer, now: now))
        }
        Self.record(&instance, .created, actor: caller.subject, reason: "order \(request.orderID)", now: now)
        try EntitlementStore.insert(instance, request: request, in: db)
        return .with { $0.instance = instance }
      }
    }
    self.deployments?.signal()
    return response
  }

  /// The values of the parameter set the customer chose; none when no set is named.
  static func parameters(named name: String, in version: Nest_Catalog_V1_ServiceVersion) throws(DomainError)
    -> [String: String]
  {
    guard !name.isEmpty else { return [:] }
    guard let set = version.parameterSets.first(where: { $0.name == name }) else {
      throw .invalid([
        .init(field: "parameter_set_name", description: "is not a parameter set of version \(version.id)")
      ])
    }
    return set.parameters
  }

  /// The version sold, as the catalog has it: a published version never changes, so it is
  /// asked once and kept; the default version (no id given) is asked every time.
  func version(of serviceID: String, id versionID: String) async throws -> Nest_Catalog_V1_ServiceVersion {
    if !versionID.isEmpty, let known = self.publishedVersions.withLockedValue({ $0[versionID] }),
      known.serviceID == serviceID
    {
      return known
    }
    let service: Nest_Catalog_V1_GetServiceResponse
    do {
      service = try await self.catalog.service(serviceID)
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound("service", serviceID, field: "service_id")
    }
    let wanted = versionID.isEmpty ? (service.service?.defaultVersionID ?? "") : versionID
    guard let version = service.versions.first(where: { $0.id == wanted }) else {
      throw DomainError.notFound("version", wanted, field: "version_id")
    }
    if version.status == .published {
      self.publishedVersions.withLockedValue { $0[version.id] = version }
    }
    return version
  }

  static func checkCreate(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) throws(DomainError) {
    var violations: [FieldViolation] = []
    for (field, value) in [
      ("order_id", request.orderID), ("service_id", request.serviceID), ("customer_id", request.customerID),
    ] where value.isEmpty {
      violations.append(.init(field: field, description: "is required"))
    }
    if request.quantity < 1 { violations.append(.init(field: "quantity", description: "must be at least 1")) }
    if let resolution = request.resolution {
      if resolution.serviceID != request.serviceID {
        violations.append(.init(field: "resolution.service_id", description: "must equal service_id"))
      }
      switch resolution.scenario {
      case .scenario1, .scenario2, .scenario3, .scenario4, .direct: break
      default: violations.append(.init(field: "resolution.scenario", description: "must be 1-4 or DIRECT"))
      }
      if resolution.accessMode != .logonURL && resolution.accessMode != .resources {
        violations.append(.init(field: "resolution.access_mode", description: "must be RESOURCES or LOGON_URL"))
      }
    } else {
      violations.append(.init(field: "resolution", description: "is required"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// The instance already made for this order: the same request gets it back, a different
  /// one is ALREADY_EXISTS.
  static func existingInstance(for request: Nest_Entitlement_V1_CreateServiceInstanceRequest, in db: Database) throws
    -> Instance?
  {
    guard let (instance, stored) = try EntitlementStore.instance(orderID: request.orderID, in: db) else { return nil }
    var comparable = request
    comparable.clientToken = ""
    var original = try Nest_Entitlement_V1_CreateServiceInstanceRequest(serializedBytes: stored)
    original.clientToken = ""
    guard comparable == original else {
      throw DomainError(
        .alreadyExists, "order \(request.orderID) already has instance \(instance.id), made from a different request",
        violations: [.init(field: "order_id", description: "already has an instance")])
    }
    return instance
  }

  static func license(for instance: Instance, id: String, signer: LicenseSigner, now: Int64) throws
    -> Nest_Entitlement_V1_License
  {
    let payload = Nest_Entitlement_V1_LicensePayload.with {
      $0.licenseID = id
      $0.instanceID = instance.id
      $0.customerID = instance.customerID
      $0.serviceID = instance.serviceID
      $0.baseServiceID = instance.baseServiceID
      $0.quantity = instance.quantity
      $0.issuedAtUnixMs = now
      $0.expiresAtUnixMs = instance.expiresAtUnixMs
    }
    let signed = try signer.sign(payload)
    return .with {
      $0.licenseID = id
      $0.instanceID = instance.id
      $0.customerID = instance.customerID
      $0.serviceID = instance.serviceID
      $0.issuedAtUnixMs = now
      $0.expiresAtUnixMs = instance.expiresAtUnixMs
      $0.payload = signed.payload
      $0.signature = signed.signature
      $0.keyID = signed.keyID
      $0.algorithm = LicenseSigner.algorithm
    }
  }

  static func visibleInstance(_ id: String, to caller: Principal, in db: Database) throws -> Instance {
    guard let instance = try EntitlementStore.instance(id, in: db),
      InstanceRules.isParty(instance, role: caller.role, subject: caller.subject)
    else { throw DomainError.notFound("instance", id, field: "instance_id") }
    return instance
  }

  public func getServiceInstance(
    request: Nest_Entitlement_V1_GetServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GetServiceInstanceResponse {
    let caller = try Caller.require()
    let now = self.now()
    return try await self.store.database.read { db in
      let instance: Instance
      switch request.key {
      case .instanceID(let id)?:
        try DomainError.requireNonEmpty(("instance_id", id))
        instance = try Self.visibleInstance(id, to: caller, in: db)
      case .orderID(let id)?:
        try DomainError.requireNonEmpty(("order_id", id))
        guard let found = try EntitlementStore.instance(orderID: id, in: db)?.instance,
          InstanceRules.isParty(found, role: caller.role, subject: caller.subject)
        else { throw DomainError.notFound("instance for order", id, field: "order_id") }
        instance = found
      case nil:
        throw DomainError.invalid([.init(field: "key", description: "set instance_id or order_id")])
      }
      return .with { $0.instance = Self.present(instance, now: now) }
    }
  }

  public func listServiceInstances(
    request: Nest_Entitlement_V1_ListServiceInstancesRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListServiceInstancesResponse {
    let caller = try Caller.require(.customer, .distributor, .isv, .operator, .service)
    let page = try PageQuery(request.page)
    var filter = request
    switch caller.role {
    case .customer: filter.customerID = caller.subject
    case .distributor: filter.distributorID = caller.subject
    case .isv: filter.isvID = caller.subject
    default: break
    }
    let now = self.now()
    let query = filter
    let result = try await self.store.database.read {
      try EntitlementStore.instances(query, page: page, nowUnixMs: now, in: $0)
    }
    return .with {
      $0.instances = result.items.map { Self.present($0, now: now) }
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  /// A lifecycle change by a service, an operator or the resource owner, once per client token.
  private func operate<Request: NestMessage>(
    _ id: String, method: String, token: String, request: Request,
    _ change: @escaping @Sendable (inout Instance, Principal, Int64) throws -> Void
  ) async throws -> Instance {
    let caller = try Caller.require()
    try DomainError.requireNonEmpty(("instance_id", id))
    let now = self.now()
    let response: Nest_Entitlement_V1_GetServiceInstanceResponse = try await self.store.database.write { db in
      var instance = Self.present(try Self.visibleInstance(id, to: caller, in: db), now: now)
      guard InstanceRules.mayOperate(instance, role: caller.role, subject: caller.subject) else {
        throw DomainError(.permissionDenied, "only the resource owner, an operator or a service may \(method) \(id)")
      }
      return try ClientTokens.once(
        db, caller: caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        try change(&instance, caller, now)
        try EntitlementStore.update(instance, in: db)
        return .with { $0.instance = instance }
      }
    }
    return response.instance!
  }

  /// A lifecycle step with its history entry. Releasing a released instance changes nothing.
  static func step(_ action: InstanceAction, reason: String)
    -> @Sendable (inout Instance, Principal, Int64) throws
    -> Void
  {
    { instance, caller, now in
      if action == .release && instance.status == .released { return }
      Self.record(
        &instance, try InstanceRules.transition(from: instance.status, action), actor: caller.subject, reason: reason,
        now: now)
    }
  }

  public func renewServiceInstance(
    request: Nest_Entitlement_V1_RenewServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RenewServiceInstanceResponse {
    let signer = self.signer
    let instance = try await self.operate(
      request.instanceID, method: "RenewServiceInstance", token: request.clientToken, request: request
    ) { instance, caller, now in
      let status = try InstanceRules.transition(from: instance.status, .renew)
      instance.expiresAtUnixMs = try InstanceRules.renewedExpiry(instance, request.renewal, nowUnixMs: now)
      if case .license(let license)? = instance.access {
        instance.access = .license(try Self.license(for: instance, id: license.licenseID, signer: signer, now: now))
      }
      Self.record(&instance, status, actor: caller.subject, reason: "renewed", now: now)
    }
    return .with { $0.instance = instance }
  }

  public func suspendServiceInstance(
    request: Nest_Entitlement_V1_SuspendServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_SuspendServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "SuspendServiceInstance", token: request.clientToken, request: request,
      Self.step(.suspend, reason: request.reason))
    return .with { $0.instance = instance }
  }

  public func resumeServiceInstance(
    request: Nest_Entitlement_V1_ResumeServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ResumeServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "ResumeServiceInstance", token: request.clientToken, request: request,
      Self.step(.resume, reason: request.reason))
    return .with { $0.instance = instance }
  }

  public func releaseServiceInstance(
    request: Nest_Entitlement_V1_ReleaseServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ReleaseServiceInstanceResponse {
    let instance = try await self.operate(
      request.instanceID, method: "ReleaseServiceInstance", token: request.clientToken, request: request,
      Self.step(.release, reason: request.reason))
    return .with { $0.instance = instance }
  }

  // MARK: Licenses

  public func checkLicense(request: Nest_Entitlement_V1_CheckLicenseRequest, context: ServerContext) async throws
    -> Nest_Entitlement_V1_CheckLicenseResponse
  {
    _ = try Caller.require()
    let now = self.now()
    let key = self.signer.publicKey
    let licenseID: String
    switch request.license {
    case .licenseID(let id)?:
      try DomainError.requireNonEmpty(("license_id", id))
      licenseID = id
    case .signedLicense(let signed)?:
      guard signed.keyID == key.keyID else {
        return Self.verdict(.badSignature, "the license is signed with an unknown key \(signed.keyID)", license: nil)
      }
      let (status, payload) = LicenseVerifier.check(signed, with: key, nowUnixMs: now)
      guard status != .badSignature, let payload else {
        return Self.verdict(.badSignature, "the signature does not verify", license: nil, key: key)
      }
      licenseID = payload.licenseID
    case nil:
      throw DomainError.invalid([.init(field: "license", description: "set license_id or signed_license")])
    }
    let found = try await self.store.database.read { try EntitlementStore.instance(licenseID: licenseID, in: $0) }
    guard let instance = found.map({ Self.present($0, now: now) }), case .license(let license)? = instance.access else {
      return Self.verdict(.unknownLicense, "no license \(licenseID) was issued", license: nil)
    }
    switch instance.status {
    case .released: return Self.verdict(.released, "the instance was released", license: license, key: key)
    case .suspended: return Self.verdict(.suspended, "the instance is suspended", license: license, key: key)
    case .expired: return Self.verdict(.expired, "the license expired", license: license, key: key)
    default: return Self.verdict(.valid, "", license: license, key: key)
    }
  }

  static func verdict(
    _ status: Nest_Entitlement_V1_LicenseStatus, _ reason: String, license: Nest_Entitlement_V1_License?,
    key: Nest_Entitlement_V1_LicenseSigningKey? = nil
  ) -> Nest_Entitlement_V1_CheckLicenseResponse {
    .with {
      $0.valid = status == .valid
      $0.status = status
      $0.reason = reason
      $0.expiresAtUnixMs = license?.expiresAtUnixMs ?? 0
      $0.license = license
      $0.signingKey = key
    }
  }

  // MARK: Resource permissions

  public func requestResourcePermission(
    request: Nest_Entitlement_V1_RequestResourcePermissionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RequestResourcePermissionResponse {
    let caller = try Caller.require(.customer)
    try PermissionRules.check(request)
    let now = self.now()
    return try await self.store.database.write { db in
      let instance = Self.present(try Self.visibleInstance(request.instanceID, to: caller, in: db), now: now)
      guard instance.accessMode == .logonURL else {
        throw DomainError(
          .failedPrecondition, "instance \(instance.id) is private: its resources are the customer's own",
          violations: [.init(field: "instance_id", description: "is not a fully managed instance")])
      }
      guard instance.status != .released else {
        throw DomainError(.failedPrecondition, "instance \(instance.id) is released")
      }
      return try ClientTokens.once(
        db, caller: caller.subject, method: "RequestResourcePermission", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let permission = Nest_Entitlement_V1_PermissionRequest.with {
          $0.id = Caller.newID("perm")
          $0.instanceID = instance.id
          $0.requesterID = caller.subject
          $0.owner = instance.resourceOwner
          $0.operation = request.operation
          $0.reason = request.reason
          $0.requestedDurationSeconds = request.requestedDurationSeconds
          $0.status = .pending
          $0.createdAtUnixMs = now
          $0.updatedAtUnixMs = now
        }
        try EntitlementStore.save(permission, in: db)
        return .with { $0.request = permission }
      }
    }
  }

  public func decidePermissionRequest(
    request: Nest_Entitlement_V1_DecidePermissionRequestRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_DecidePermissionRequestResponse {
    let caller = try Caller.require()
    try DomainError.requireNonEmpty(("request_id", request.requestID))
    let now = self.now()
    return try await self.store.database.write { db in
      guard let permission = try EntitlementStore.permissionRequest(request.requestID, in: db) else {
        throw DomainError.notFound("permission request", request.requestID, field: "request_id")
      }
      let isOwner = permission.owner?.role == caller.role && permission.owner?.accountID == caller.subject
      guard isOwner else {
        if permission.requesterID == caller.subject || Caller.isPlatform(caller) {
          throw DomainError(.permissionDenied, "only the resource owner decides permission request \(permission.id)")
        }
        throw DomainError.notFound("permission request", request.requestID, field: "request_id")
      }
      return try ClientTokens.once(
        db, caller: caller.subject, method: "DecidePermissionRequest", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let decided = try PermissionRules.decide(permission, request, decidedBy: caller.subject, nowUnixMs: now)
        try EntitlementStore.save(decided, in: db)
        return .with { $0.request = decided }
      }
    }
  }

  public func listPermissionRequests(
    request: Nest_Entitlement_V1_ListPermissionRequestsRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListPermissionRequestsResponse {
    let caller = try Caller.require()
    let page = try PageQuery(request.page)
    var filter = request
    switch caller.role {
    case .customer: filter.requesterID = caller.subject
    case .isv, .distributor: filter.ownerID = caller.subject
    default: break
    }
    let now = self.now()
    let query = filter
    let result = try await self.store.database.read {
      try EntitlementStore.permissionRequests(query, page: page, nowUnixMs: now, in: $0)
    }
    return .with {
      $0.requests = result.items.map { Self.present($0, now: now) }
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func checkResourcePermission(
    request: Nest_Entitlement_V1_CheckResourcePermissionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CheckResourcePermissionResponse {
    let caller = try Caller.require()
    try DomainError.requireNonEmpty(
      ("instance_id", request.instanceID), ("requester_id", request.requesterID), ("operation", request.operation))
    let now = self.now()
    return try await self.store.database.read { db in
      let instance = try Self.visibleInstance(request.instanceID, to: caller, in: db)
      if instance.resourceOwner?.accountID == request.requesterID {
        return .with { $0.allowed = true }
      }
      guard
        let grant = try EntitlementStore.activeGrant(
          instanceID: instance.id, requesterID: request.requesterID, operation: request.operation, nowUnixMs: now,
          in: db)
      else { return .with { $0.allowed = false } }
      return .with {
        $0.allowed = true
        $0.grantExpiresAtUnixMs = grant.grantExpiresAtUnixMs
        $0.requestID = grant.id
      }
    }
  }
}
