// The life of a distribution authorization (DESIGN section 8): applied for by a
// distributor or granted by the ISV, approved or rejected, revoked, expired. Pure.
import GRPCCore
public import NestProto
public import NestServiceKit
import NestTransport

public enum AuthorizationAction: String, CaseIterable, Sendable {
  case apply, approve, reject, grant, revoke, expire
}

public enum AuthorizationRules {
  public typealias Status = Nest_Entitlement_V1_DistributionAuthorizationStatus

  /// The status after `action`, from `status` (nil: no authorization for the pair yet).
  public static func transition(from status: Status?, _ action: AuthorizationAction) throws(DomainError) -> Status {
    switch (action, status) {
    case (.apply, nil), (.apply, .rejected?), (.apply, .revoked?), (.apply, .expired?):
      return .pending
    case (.apply, .pending?):
      throw DomainError(.alreadyExists, "an application for this service is already pending")
    case (.grant, nil), (.grant, .pending?), (.grant, .rejected?), (.grant, .revoked?), (.grant, .expired?):
      return .active
    case (.approve, .pending?):
      return .active
    case (.reject, .pending?):
      return .rejected
    case (.revoke, .active?):
      return .revoked
    case (.expire, .active?):
      return .expired
    default:
      let current = status.map { "\($0)" } ?? "absent"
      throw DomainError(.failedPrecondition, "cannot \(action.rawValue) an authorization that is \(current)")
    }
  }

  /// ACTIVE whose valid_until has passed is EXPIRED, whatever is stored.
  public static func effectiveStatus(_ status: Status, validUntilUnixMs: Int64, nowUnixMs: Int64) -> Status {
    if status == .active, validUntilUnixMs > 0, nowUnixMs >= validUntilUnixMs { return .expired }
    return status
  }

  /// CheckDistribution's rule: the authorization must be ACTIVE and unexpired.
  public static func checkSellable(_ authorization: Nest_Entitlement_V1_DistributionAuthorization?, nowUnixMs: Int64)
    throws(DomainError)
  {
    guard let authorization else {
      throw DomainError(.failedPrecondition, "no distribution authorization for this service and distributor")
    }
    let status = self.effectiveStatus(
      authorization.status, validUntilUnixMs: authorization.terms?.validUntilUnixMs ?? 0, nowUnixMs: nowUnixMs)
    guard status == .active else {
      throw DomainError(.failedPrecondition, "the distribution authorization is \(status), not ACTIVE")
    }
  }

  /// Terms an ISV may approve or grant with.
  public static func checkTerms(_ terms: Nest_Entitlement_V1_DistributionTerms?, nowUnixMs: Int64) throws(DomainError) {
    guard let terms else { throw .invalid([.init(field: "terms", description: "is required")]) }
    var violations = MoneyRules.violations(terms.wholesalePrice, field: "terms.wholesale_price")
    if terms.validUntilUnixMs != 0 && terms.validUntilUnixMs <= nowUnixMs {
      violations.append(
        .init(field: "terms.valid_until_unix_ms", description: "must be in the future, or 0 for no end"))
    }
    if terms.maxInstances < 0 {
      violations.append(.init(field: "terms.max_instances", description: "must not be negative (0: no limit)"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }
}

/// Who owns an instance's resources, who pays for them and what the customer gets: the
/// scenario's answer with the buyer filled in (DESIGN section 1).
public struct InstanceOwnership: Hashable, Sendable {
  public var resourceOwner: Nest_Common_V1_Party
  public var feePayer: Nest_Common_V1_Party
  public var accessMode: Nest_Common_V1_AccessMode

  public init(resolution: Nest_Common_V1_ScenarioResolution, customerID: String) {
    func filled(_ party: Nest_Common_V1_Party?) -> Nest_Common_V1_Party {
      var party = party ?? .init()
      if party.role == .customer { party.accountID = customerID }
      return party
    }
    self.resourceOwner = filled(resolution.resourceOwner)
    self.feePayer = filled(resolution.feePayer)
    self.accessMode = resolution.accessMode
  }
}
