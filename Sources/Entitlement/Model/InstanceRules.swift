// The life of a service instance (DESIGN section 8): deployment CREATED -> DEPLOYING ->
// DEPLOYED (or DEPLOY_FAILED), then SUSPENDED / EXPIRED / RELEASED; how long it runs; who may
// operate it. Pure.
import GRPCCore
public import NestProto
public import NestServiceKit
import NestTransport

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
    case (.expire, .deployed): return .expired
    case (.release, _) where status != .unspecified: return .released
    default:
      throw DomainError(.failedPrecondition, "cannot \(action.rawValue) an instance that is \(status)")
    }
  }

  /// A DEPLOYED instance past its expiry is EXPIRED, whatever is stored.
  public static func effectiveStatus(_ status: Status, expiresAtUnixMs: Int64, nowUnixMs: Int64) -> Status {
    if status == .deployed, expiresAtUnixMs > 0, nowUnixMs >= expiresAtUnixMs { return .expired }
    return status
  }

  /// The length of `periods` billing periods: a MONTH is 30 days and a YEAR 365 days.
  public static func duration(of period: Nest_Common_V1_BillingPeriod, periods: Int32) throws(DomainError) -> Int64 {
    switch period {
    case .month: return Int64(periods) * 30 * dayMs
    case .year: return Int64(periods) * 365 * dayMs
    default: throw .invalid([.init(field: "billing_period", description: "must be MONTH or YEAR to count periods")])
    }
  }

  /// The expiry of a new instance: from its term counted from `now`, or as given.
  public static func expiry(
    of request: Nest_Entitlement_V1_CreateServiceInstanceRequest, nowUnixMs: Int64
  ) throws(DomainError) -> (expiresAtUnixMs: Int64, period: Nest_Common_V1_BillingPeriod) {
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
      guard expiry == 0 || expiry > nowUnixMs else {
        throw .invalid([.init(field: "expires_at_unix_ms", description: "must be in the future, or 0 for no end")])
      }
      return (expiry, expiry == 0 ? .oneTime : .unspecified)
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

  /// Who may renew, suspend, resume or release: services, operators and the resource owner.
  public static func mayOperate(
    _ instance: Nest_Entitlement_V1_ServiceInstance, role: Nest_Common_V1_Role, subject: String
  )
    -> Bool
  {
    if role == .service || role == .operator { return true }
    guard let owner = instance.resourceOwner else { return false }
    return owner.role == role && owner.accountID == subject
  }

  /// Who may see an instance: its customer, distributor, ISV, resource owner, operators and services.
  public static func isParty(
    _ instance: Nest_Entitlement_V1_ServiceInstance, role: Nest_Common_V1_Role, subject: String
  )
    -> Bool
  {
    switch role {
    case .service, .operator: return true
    case .customer: return instance.customerID == subject
    case .distributor: return instance.distributorID == subject
    case .isv: return instance.isvID == subject
    default: return false
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
    var violations: [FieldViolation] = []
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

  /// The request after the owner's decision at `now`.
  public static func decide(
    _ request: Nest_Entitlement_V1_PermissionRequest, _ decision: Nest_Entitlement_V1_DecidePermissionRequestRequest,
    decidedBy: String, nowUnixMs: Int64
  ) throws(DomainError) -> Nest_Entitlement_V1_PermissionRequest {
    var violations: [FieldViolation] = []
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
