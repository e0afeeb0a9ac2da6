// The life of a service instance (docs/design.md §8): deployment CREATED -> DEPLOYING ->
// DEPLOYED (or DEPLOY_FAILED), then SUSPENDED / EXPIRED / RELEASED; how long it runs; who may
// operate it. Pure.
public import NestDomain
public import NestProto

public enum InstanceAction: String, CaseIterable, Sendable {
  case startDeploying, finishDeploying, failDeploying, suspend, resume, renew, release, expire
}

public enum InstanceRules {
  public typealias Status = Nest_Entitlement_V1_DeploymentStatus

  static let dayMs: Int64 = 24 * 3600 * 1000

  /// The status after `action`. Releasing a RELEASED instance keeps it RELEASED, so that a
  /// refund delivered twice does not fail.
  public static func transition(from status: Status, _ action: InstanceAction) throws(DomainError) -> Status {
    switch (action, status) {
    case (.startDeploying, .created): return .deploying
    case (.finishDeploying, .deploying): return .deployed
    case (.failDeploying, .deploying): return .deployFailed
    case (.suspend, .deployed): return .suspended
    case (.resume, .suspended): return .deployed
    case (.renew, .deployed), (.renew, .expired): return .deployed
    case (.renew, .suspended), (.renew, .created), (.renew, .deploying): return status
    case (.expire, .deployed), (.expire, .suspended): return .expired
    case (.release, _) where status != .unspecified: return .released
    default:
      throw DomainError(.failedPrecondition, "cannot \(action.rawValue) an instance that is \(status)")
    }
  }

  /// Whether `action` may happen from `status`.
  public static func allows(_ status: Status, _ action: InstanceAction) -> Bool {
    do {
      _ = try transition(from: status, action)
      return true
    } catch {
      return false
    }
  }

  /// A DEPLOYED instance past its expiry is EXPIRED, whatever is stored.
  public static func effectiveStatus(_ status: Status, expiresAtUnixMs: Int64, nowUnixMs: Int64) -> Status {
    if status == .deployed, expiresAtUnixMs > 0, nowUnixMs >= expiresAtUnixMs { return .expired }
    return status
  }

  /// The length of `periods` billing periods: a MONTH is 30 days and a YEAR 365 days.
  public static func duration(of period: Nest_Common_V1_BillingPeriod, periods: Int32) throws(DomainError) -> Int64 {
    guard let length = BillingPeriods.milliseconds(period) else {
      throw .invalid([.init(field: "billing_period", description: "must be MONTH or YEAR to count periods")])
    }
    return Int64(periods) * length
  }

  /// When a new instance expires (0: never), and the period it renews by.
  public typealias Expiry = (expiresAtUnixMs: Int64, period: Nest_Common_V1_BillingPeriod)

  /// The expiry of a new instance: from its term counted from `now`, or as given.
  public static func expiry(
    of request: Nest_Entitlement_V1_CreateServiceInstanceRequest, nowUnixMs: Int64
  ) throws(DomainError) -> Expiry {
    switch request.expiry {
    case .term(let term)?:
      if term.billingPeriod == .oneTime {
        guard term.periods == 1 else {
          throw .invalid([.init(field: "term.periods", description: "must be 1 for a ONE_TIME plan")])
        }
        return (0, .oneTime)
      }
      guard term.periods >= 1 else {
        throw .invalid([.init(field: "term.periods", description: "must be at least 1")])
      }
      guard term.billingPeriod == .month || term.billingPeriod == .year else {
        throw .invalid([.init(field: "term.billing_period", description: "must be MONTH, YEAR or ONE_TIME")])
      }
      return (nowUnixMs + (try duration(of: term.billingPeriod, periods: term.periods)), term.billingPeriod)
    case .expiresAtUnixMs(let expiry)?:
      // A trial's end is fixed by its order: delivered late, the trial has simply ended.
      guard expiry == 0 || expiry > nowUnixMs || (request.trial && expiry > 0) else {
        throw .invalid([.init(field: "expires_at_unix_ms", description: "must be in the future, or 0 for no end")])
      }
      return (expiry, expiry == 0 ? .oneTime : request.plan?.billingPeriod ?? .unspecified)
    case nil:
      throw .invalid([.init(field: "expiry", description: "set term or expires_at_unix_ms")])
    }
  }

  /// The expiry after a renewal: whole periods from the later of the current expiry and now,
  /// or a new expiry later than both.
  public static func renewedExpiry(
    _ instance: Nest_Entitlement_V1_ServiceInstance,
    _ renewal: Nest_Entitlement_V1_RenewServiceInstanceRequest.OneOf_Renewal?,
    nowUnixMs: Int64
  ) throws(DomainError) -> Int64 {
    let from = max(instance.expiresAtUnixMs, nowUnixMs)
    switch renewal {
    case .periods(let periods)?:
      guard periods >= 1 else { throw .invalid([.init(field: "periods", description: "must be at least 1")]) }
      guard instance.expiresAtUnixMs != 0 else {
        throw DomainError(.failedPrecondition, "the instance does not expire; there is nothing to renew")
      }
      guard instance.billingPeriod == .month || instance.billingPeriod == .year else {
        throw DomainError(
          .failedPrecondition, "the instance has no billing period to count; renew with new_expires_at_unix_ms")
      }
      return from + (try duration(of: instance.billingPeriod, periods: periods))
    case .newExpiresAtUnixMs(let expiry)?:
      guard expiry > from else {
        throw .invalid([
          .init(field: "new_expires_at_unix_ms", description: "must be later than the current expiry and now")
        ])
      }
      return expiry
    case nil:
      throw .invalid([.init(field: "renewal", description: "set periods or new_expires_at_unix_ms")])
    }
  }

  /// An instance's new status, with its history entry.
  public static func record(
    _ instance: inout Nest_Entitlement_V1_ServiceInstance, _ status: Status, actor: String, reason: String, now: Int64
  ) {
    instance.status = status
    instance.updatedAtUnixMs = now
    instance.history.append(.entry(status, actor: actor, reason: reason, at: now))
  }

  /// The instance as of `now`: EXPIRED (with its history entry) once past its expiry.
  public static func present(_ instance: Nest_Entitlement_V1_ServiceInstance, now: Int64)
    -> Nest_Entitlement_V1_ServiceInstance
  {
    guard effectiveStatus(instance.status, expiresAtUnixMs: instance.expiresAtUnixMs, nowUnixMs: now) != instance.status
    else { return instance }
    var expired = instance
    record(&expired, .expired, actor: "entitlement", reason: "term ended", now: instance.expiresAtUnixMs)
    if var subscription = expired.subscription, SubscriptionRules.allows(subscription.status, .expire) {
      subscription.status = .expired
      subscription.statusReason = "term ended"
      expired.subscription = subscription
    }
    return expired
  }

  /// A lifecycle step (suspend, resume, release) with its history entry. Releasing a
  /// released instance changes nothing.
  public static func step(
    _ instance: inout Nest_Entitlement_V1_ServiceInstance, _ action: InstanceAction, actor: String, reason: String,
    now: Int64
  ) throws(DomainError) {
    if action == .release && instance.status == .released { return }
    record(&instance, try transition(from: instance.status, action), actor: actor, reason: reason, now: now)
  }

  /// Checks what CreateServiceInstance can check without reading anything.
  public static func checkCreate(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
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

  /// The values of the parameter set the customer chose; none when no set is named.
  public static func parameters(named name: String, in version: Nest_Catalog_V1_ServiceVersion) throws(DomainError)
    -> [String: String]
  {
    guard !name.isEmpty else { return [:] }
    guard let set = version.parameterSets.first(where: { $0.name == name }) else {
      throw .invalid("parameter_set_name", "is not a parameter set of version \(version.id)")
    }
    return set.parameters
  }

  /// A new instance for a paid order: owner, fee payer and access from the scenario, CREATED.
  /// `access` gives it its logon URL or license.
  public static func newInstance(
    _ request: Nest_Entitlement_V1_CreateServiceInstanceRequest, id: String, version: Nest_Catalog_V1_ServiceVersion,
    parameters: [String: String], expiresAt: Int64, period: Nest_Common_V1_BillingPeriod, actor: String, now: Int64
  ) -> Nest_Entitlement_V1_ServiceInstance {
    let resolution = request.resolution ?? .init()
    let ownership = InstanceOwnership(resolution: resolution, customerID: request.customerID)
    var instance = Nest_Entitlement_V1_ServiceInstance.with {
      $0.id = id
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
      if let plan = request.plan {
        $0.subscription = SubscriptionRules.new(
          plan: plan, trial: request.trial, autoRenew: request.autoRenew, orderID: request.orderID, now: now)
      }
    }
    record(&instance, .created, actor: actor, reason: "order \(request.orderID)", now: now)
    return instance
  }

  /// The same order's request again: the same instance; a different request is ALREADY_EXISTS.
  public static func checkRedelivery(
    _ request: Nest_Entitlement_V1_CreateServiceInstanceRequest,
    original: Nest_Entitlement_V1_CreateServiceInstanceRequest, instanceID: String
  ) throws(DomainError) {
    var comparable = request
    comparable.clientToken = ""
    var first = original
    first.clientToken = ""
    guard comparable == first else {
      throw DomainError(
        .alreadyExists, "order \(request.orderID) already has instance \(instanceID), made from a different request",
        violations: [.init(field: "order_id", description: "already has an instance")])
    }
  }
}

/// Resource permission requests of fully managed instances. Pure.
public enum PermissionRules {
  public typealias Status = Nest_Entitlement_V1_PermissionRequestStatus
  /// The longest a customer may ask for: 30 days.
  public static let maxDurationSeconds: Int64 = 2_592_000
  /// How long a request waits for the owner before it expires: 7 days.
  public static let decisionWindowMs: Int64 = 7 * 24 * 3600 * 1000

  public static func check(_ request: Nest_Entitlement_V1_RequestResourcePermissionRequest) throws(DomainError) {
    var violations: [DomainError.Violation] = []
    if request.instanceID.isEmpty { violations.append(.init(field: "instance_id", description: "is required")) }
    if request.operation.isEmpty || request.operation.count > 200 {
      violations.append(.init(field: "operation", description: "must be 1 to 200 characters"))
    }
    if request.reason.isEmpty { violations.append(.init(field: "reason", description: "is required")) }
    if request.requestedDurationSeconds <= 0 || request.requestedDurationSeconds > maxDurationSeconds {
      violations.append(
        .init(
          field: "requested_duration_seconds", description: "must be between 1 and \(maxDurationSeconds) (30 days)"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// Only a fully managed instance that is not released has resources to ask about.
  public static func checkRequestable(_ instance: Nest_Entitlement_V1_ServiceInstance) throws(DomainError) {
    guard instance.accessMode == .logonURL else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) is private: its resources are the customer's own",
        violations: [.init(field: "instance_id", description: "is not a fully managed instance")])
    }
    guard instance.status != .released else {
      throw DomainError(.failedPrecondition, "instance \(instance.id) is released")
    }
  }

  /// A PENDING request of `requester` to the instance's resource owner.
  public static func newRequest(
    _ request: Nest_Entitlement_V1_RequestResourcePermissionRequest, id: String,
    instance: Nest_Entitlement_V1_ServiceInstance, requester: String, now: Int64
  ) -> Nest_Entitlement_V1_PermissionRequest {
    .with {
      $0.id = id
      $0.instanceID = instance.id
      $0.requesterID = requester
      $0.owner = instance.resourceOwner
      $0.operation = request.operation
      $0.reason = request.reason
      $0.requestedDurationSeconds = request.requestedDurationSeconds
      $0.status = .pending
      $0.createdAtUnixMs = now
      $0.updatedAtUnixMs = now
    }
  }

  /// The request as of `now` (PENDING or APPROVED may have become EXPIRED).
  public static func present(_ request: Nest_Entitlement_V1_PermissionRequest, now: Int64)
    -> Nest_Entitlement_V1_PermissionRequest
  {
    var request = request
    request.status = effectiveStatus(request, nowUnixMs: now)
    return request
  }

  /// The request after the owner's decision at `now`.
  public static func decide(
    _ request: Nest_Entitlement_V1_PermissionRequest, _ decision: Nest_Entitlement_V1_DecidePermissionRequestRequest,
    decidedBy: String, nowUnixMs: Int64
  ) throws(DomainError) -> Nest_Entitlement_V1_PermissionRequest {
    var violations: [DomainError.Violation] = []
    switch decision.decision {
    case .approve:
      if decision.grantedDurationSeconds < 0 || decision.grantedDurationSeconds > request.requestedDurationSeconds {
        violations.append(
          .init(
            field: "granted_duration_seconds",
            description: "must be between 0 (as requested) and the requested \(request.requestedDurationSeconds)"))
      }
    case .deny:
      if decision.reason.isEmpty { violations.append(.init(field: "reason", description: "is required to deny")) }
      if decision.grantedDurationSeconds != 0 {
        violations.append(.init(field: "granted_duration_seconds", description: "must be 0 to deny"))
      }
    default:
      violations.append(.init(field: "decision", description: "must be APPROVE or DENY"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
    let status = effectiveStatus(request, nowUnixMs: nowUnixMs)
    guard status == .pending else {
      throw DomainError(.failedPrecondition, "the request is \(status), not PENDING")
    }
    var decided = request
    decided.decidedBy = decidedBy
    decided.decisionReason = decision.reason
    decided.decidedAtUnixMs = nowUnixMs
    decided.updatedAtUnixMs = nowUnixMs
    if decision.decision == .approve {
      let seconds =
        decision.grantedDurationSeconds == 0 ? request.requestedDurationSeconds : decision.grantedDurationSeconds
      decided.status = .approved
      decided.grantedDurationSeconds = seconds
      decided.grantExpiresAtUnixMs = nowUnixMs + seconds * 1000
    } else {
      decided.status = .denied
    }
    return decided
  }

  /// PENDING past its decision window, or APPROVED past its grant, is EXPIRED.
  public static func effectiveStatus(_ request: Nest_Entitlement_V1_PermissionRequest, nowUnixMs: Int64) -> Status {
    switch request.status {
    case .pending where nowUnixMs >= request.createdAtUnixMs + decisionWindowMs: return .expired
    case .approved where nowUnixMs >= request.grantExpiresAtUnixMs: return .expired
    default: return request.status
    }
  }
}
