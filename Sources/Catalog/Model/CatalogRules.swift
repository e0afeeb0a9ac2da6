// The catalog's other rules: the service lifecycle, money, and plan prices against the
// wholesale price a distributor pays. Pure: no storage, no RPC.
public import NestDomain
public import NestProto

public enum ServiceLifecycleRules {
  /// Publishing a version makes the service ONLINE (from DRAFT, OFFLINE or ONLINE).
  public static func publish(from status: Nest_Catalog_V1_ServiceStatus) throws(DomainError)
    -> Nest_Catalog_V1_ServiceStatus
  {
    switch status {
    case .draft, .online, .offline: .online
    case .unspecified, .unrecognized: throw DomainError(.failedPrecondition, "the service is in no known state")
    }
  }

  /// Only an ONLINE service can be taken offline; its instances keep running.
  public static func takeOffline(from status: Nest_Catalog_V1_ServiceStatus) throws(DomainError)
    -> Nest_Catalog_V1_ServiceStatus
  {
    guard status == .online else {
      throw DomainError(.failedPrecondition, "only an ONLINE service can be taken offline; this one is \(status)")
    }
    return .offline
  }

  /// Whether distributors may apply for a base service; a derived one cannot be distributed.
  public static func setDistributable(_ service: inout Nest_Catalog_V1_Service, _ distributable: Bool)
    throws(DomainError)
  {
    guard service.baseServiceID.isEmpty else {
      throw DomainError(.failedPrecondition, "only a base service can be distributed; \(service.id) is derived")
    }
    service.distributable = distributable
  }

  /// A published version never changes.
  public static func checkEditable(_ version: Nest_Catalog_V1_ServiceVersionStatus) throws(DomainError) {
    guard version == .draft else {
      throw DomainError(.failedPrecondition, "published versions are immutable; create a new version")
    }
  }
}

public enum PlanRules {
  /// Checks a product's plans; with `terms` (a derived service's authorization terms), every
  /// plan must be in the wholesale currency and at least the wholesale price of its billing
  /// period (docs/design.md §5).
  public static func check(_ plans: [Nest_Catalog_V1_Plan], terms: Nest_Entitlement_V1_DistributionTerms?)
    throws(DomainError)
  {
    var violations: [DomainError.Violation] = []
    if plans.isEmpty { violations.append(.init(field: "plans", description: "at least one plan is required")) }
    var seen: Set<String> = []
    for (index, plan) in plans.enumerated() {
      let field = "plans[\(index)]"
      if plan.planID.isEmpty {
        violations.append(.init(field: "\(field).plan_id", description: "must not be empty"))
      } else if !seen.insert(plan.planID).inserted {
        violations.append(.init(field: "\(field).plan_id", description: "\"\(plan.planID)\" is used twice"))
      }
      if plan.billingPeriod == .unspecified
        || Nest_Common_V1_BillingPeriod.allCases.firstIndex(of: plan.billingPeriod) == nil
      {
        violations.append(.init(field: "\(field).billing_period", description: "must be MONTH, YEAR or ONE_TIME"))
      }
      violations += MoneyRules.violations(plan.unitPrice, field: "\(field).unit_price")
      if plan.trialDays > 30 {
        violations.append(.init(field: "\(field).trial_days", description: "must be 0 (no trial) to 30"))
      } else if plan.trialDays > 0 && plan.billingPeriod == .oneTime {
        violations.append(.init(field: "\(field).trial_days", description: "a ONE_TIME plan has no trial"))
      }
    }
    guard violations.isEmpty else { throw .invalid(violations) }
    guard let terms else { return }
    var belowWholesale: [DomainError.Violation] = []
    for (index, plan) in plans.enumerated() where !plan.deprecated {
      guard let price = plan.unitPrice, let wholesale = terms.wholesaleUnitPrice(for: plan.billingPeriod) else {
        continue
      }
      if price.currency != wholesale.currency {
        belowWholesale.append(
          .init(
            field: "plans[\(index)].unit_price.currency",
            description: "must be \(wholesale.currency), the currency of the wholesale price"))
      } else if price.amountMinor < wholesale.amountMinor {
        belowWholesale.append(
          .init(
            field: "plans[\(index)].unit_price.amount_minor",
            description:
              "\(price.amountMinor) is below the \(statusName(plan.billingPeriod)) wholesale price \(wholesale.amountMinor)"
          ))
      }
    }
    guard belowWholesale.isEmpty else {
      throw DomainError(
        .failedPrecondition, "a plan is priced below, or in another currency than, the wholesale price",
        violations: belowWholesale)
    }
  }

  /// A listing's plans: those listed, in their order, then every plan of the previous
  /// listing left out, deprecated (plans are never removed, so that instances renew).
  public static func merge(listed: [Nest_Catalog_V1_Plan], previous: [Nest_Catalog_V1_Plan]) -> [Nest_Catalog_V1_Plan] {
    let ids = Set(listed.map(\.planID))
    return listed
      + previous.filter { !ids.contains($0.planID) }.map {
        var plan = $0
        plan.deprecated = true
        return plan
      }
  }
}

/// Versions that move: which earlier versions a version may name as upgradable from, which
/// version of A a derived service's new version builds on, and whether B is behind A. Pure.
public enum VersionRules {
  /// Each id an existing version of the service, named once.
  public static func checkUpgradePaths(_ ids: [String], among versions: [Nest_Catalog_V1_ServiceVersion])
    throws(DomainError)
  {
    let known = Set(versions.map(\.id))
    var violations: [DomainError.Violation] = []
    var seen: Set<String> = []
    for (index, id) in ids.enumerated() {
      if !known.contains(id) {
        violations.append(
          .init(
            field: "upgradable_from_version_ids[\(index)]", description: "\"\(id)\" is not a version of this service"))
      } else if !seen.insert(id).inserted {
        violations.append(.init(field: "upgradable_from_version_ids[\(index)]", description: "is named twice"))
      }
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// The version of A a new version of B builds on when it names none: the one its latest
  /// version builds on, else the service's.
  public static func baseVersion(of service: Nest_Catalog_V1_Service, latest: Nest_Catalog_V1_ServiceVersion?)
    -> String
  {
    if let latest, !latest.baseVersionID.isEmpty { return latest.baseVersionID }
    return service.baseVersionID
  }

  /// B as read: A's default version when B builds on an older one, and whether a version of
  /// A newer than B's base is a security release.
  public static func behind(
    _ derived: Nest_Catalog_V1_Service, base: Nest_Catalog_V1_Service, baseVersions: [Nest_Catalog_V1_ServiceVersion]
  ) -> Nest_Catalog_V1_Service {
    var derived = derived
    derived.baseLatestVersionID = ""
    derived.baseSecurityUpdate = false
    let current = baseVersions.first { $0.id == derived.baseVersionID }?.number ?? 0
    guard let latest = baseVersions.first(where: { $0.id == base.defaultVersionID }), latest.number > current else {
      return derived
    }
    derived.baseLatestVersionID = latest.id
    derived.baseSecurityUpdate = baseVersions.contains {
      $0.status == .published && $0.number > current && $0.number <= latest.number && $0.securityRelease
    }
    return derived
  }
}
