// The life of a distribution authorization (docs/design.md §8): applied for by a
// distributor or granted by the ISV, approved or rejected, revoked, expired. Pure.
public import NestDomain
public import NestProto

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

  /// An authorization's new status, with its history entry.
  public static func record(
    _ authorization: inout Nest_Entitlement_V1_DistributionAuthorization, _ status: Status, actor: String,
    reason: String, now: Int64
  ) {
    authorization.status = status
    authorization.updatedAtUnixMs = now
    authorization.history.append(.entry(status, actor: actor, reason: reason, at: now))
  }

  /// The authorization as of `now`: EXPIRED (with its history entry) once past valid_until.
  public static func present(_ authorization: Nest_Entitlement_V1_DistributionAuthorization, now: Int64)
    -> Nest_Entitlement_V1_DistributionAuthorization
  {
    let validUntil = authorization.terms?.validUntilUnixMs ?? 0
    guard effectiveStatus(authorization.status, validUntilUnixMs: validUntil, nowUnixMs: now) != authorization.status
    else { return authorization }
    var expired = authorization
    record(&expired, .expired, actor: "entitlement", reason: "terms ended", now: validUntil)
    return expired
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
    var periods: Set<Nest_Common_V1_BillingPeriod> = []
    for (index, entry) in terms.wholesalePrices.enumerated() {
      let field = "terms.wholesale_prices[\(index)]"
      switch entry.billingPeriod {
      case .month, .year, .oneTime:
        if !periods.insert(entry.billingPeriod).inserted {
          violations.append(.init(field: "\(field).billing_period", description: "appears twice"))
        }
      default:
        violations.append(.init(field: "\(field).billing_period", description: "must be MONTH, YEAR or ONE_TIME"))
      }
      violations += MoneyRules.violations(entry.price, field: "\(field).price")
      if let price = entry.price, let base = terms.wholesalePrice, price.currency != base.currency {
        violations.append(.init(field: "\(field).price.currency", description: "must be wholesale_price's currency"))
      }
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }
}

/// Who owns an instance's resources, who pays for them and what the customer gets: the
/// scenario's answer with the buyer filled in (docs/design.md §1).
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

/// The slots of an authorization's max_instances: each live (not RELEASED) instance holds
/// one, and so does each paid order whose instance is not made yet (a HELD slot, until it
/// expires). A new hold is refused once they are all taken, so that the limit holds however
/// many payments race.
public enum SlotRules {
  public typealias Slot = Nest_Entitlement_V1_InstanceSlot

  /// How long a hold lasts when the request does not say: longer than any payment takes.
  public static let defaultHoldMs: Int64 = 15 * 60 * 1000

  /// A hold for `orderID` under an ACTIVE authorization: the order's own slot if it is still
  /// counted (a hold renewed), else a new one if a slot is free. `othersInUse` counts the
  /// authorization's live instances and the unexpired holds of other orders.
  public static func reserve(
    orderID: String, authorization: Nest_Entitlement_V1_DistributionAuthorization, existing: Slot?,
    othersInUse: Int32, holdMs: Int64, now: Int64
  ) throws(DomainError) -> Slot {
    try AuthorizationRules.checkSellable(authorization, nowUnixMs: now)
    let hold = holdMs == 0 ? defaultHoldMs : holdMs
    if var slot = existing, isCounted(slot, now: now) {
      if slot.status == .held { slot.expiresAtUnixMs = max(slot.expiresAtUnixMs, now + hold) }
      return slot
    }
    let limit = authorization.terms?.maxInstances ?? 0
    if limit > 0 && othersInUse >= limit {
      throw DomainError(
        .failedPrecondition,
        "the authorization's maximum of \(limit) instances is reached (\(othersInUse) instances and paid orders)",
        violations: [.init(field: "authorization_id", description: "has no free instance slot")])
    }
    return .with {
      $0.orderID = orderID
      $0.authorizationID = authorization.id
      $0.status = .held
      $0.expiresAtUnixMs = now + hold
      $0.createdAtUnixMs = now
    }
  }

  /// Whether a slot takes one of the authorization's places: a hold not yet expired. (A
  /// slot USED by its order's instance counts as that instance.)
  public static func isCounted(_ slot: Slot, now: Int64) -> Bool {
    slot.status == .used || (slot.status == .held && slot.expiresAtUnixMs > now)
  }

  /// The order's instance exists: the hold becomes that instance's place.
  public static func use(_ slot: Slot) -> Slot {
    var used = slot
    used.status = .used
    return used
  }

  public static func release(_ slot: Slot) -> Slot {
    var released = slot
    released.status = .released
    return released
  }
}
