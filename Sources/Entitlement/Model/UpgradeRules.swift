// Versions that move (docs/design.md §8): which version an instance can upgrade to, what an
// upgrade or a rollback would change and whether it may happen now, the upgrade's life
// (UPGRADING -> UPGRADED or UPGRADE_FAILED, the instance running its old version until it is
// UPGRADED), and the maintenance window of automatic upgrades. Pure.
public import NestDomain
public import NestProto

public enum UpgradeRules {
  public typealias Instance = Nest_Entitlement_V1_ServiceInstance
  public typealias Version = Nest_Catalog_V1_ServiceVersion
  public typealias Upgrade = Nest_Entitlement_V1_InstanceUpgrade

  /// The operation a customer's permission request names to upgrade a fully managed
  /// instance it does not run.
  public static let permissionOperation = "nest:UpgradeServiceInstance"

  /// The version an instance on `versionID` can upgrade to: the service's default version,
  /// published, when it names `versionID` among those it upgrades from.
  public static func upgradableTarget(from versionID: String, in service: Nest_Catalog_V1_GetServiceResponse)
    -> Version?
  {
    guard let defaultID = service.service?.defaultVersionID, defaultID != versionID,
      let target = service.versions.first(where: { $0.id == defaultID }), target.status == .published,
      target.upgradableFromVersionIds.contains(versionID)
    else { return nil }
    return target
  }

  /// Whether the instance's upgradable marks change to `target`'s (nil: nothing upgradable).
  public static func markUpgradable(_ instance: inout Instance, _ target: Version?) -> Bool {
    let id = target?.id ?? ""
    let security = target?.securityRelease ?? false
    guard instance.upgradableToVersionID != id || instance.upgradableSecurityRelease != security else { return false }
    instance.upgradableToVersionID = id
    instance.upgradableSecurityRelease = security
    return true
  }

  /// Why the instance cannot start an upgrade or a rollback now, if it cannot.
  static func checkRunning(_ instance: Instance) throws(DomainError) {
    guard instance.status == .deployed else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) is \(statusName(instance.status)), not DEPLOYED",
        violations: [.init(field: "instance_id", description: "must be DEPLOYED to upgrade or roll back")])
    }
    guard instance.upgradeStatus != .upgrading else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) is UPGRADING: wait for its provider's answer",
        violations: [.init(field: "instance_id", description: "has an upgrade in progress")])
    }
  }

  /// What upgrading `instance` to `target` would change, checked: the path, the parameter
  /// set (the instance's own, or `setName` among the target's), the license.
  public static func plan(
    _ instance: Instance, to target: Version, setName: String, throughProvider: Bool
  ) throws(DomainError) -> (plan: Nest_Entitlement_V1_UpgradePlan, parameters: [String: String]) {
    try checkRunning(instance)
    guard target.serviceID == instance.serviceID else {
      throw DomainError(
        .failedPrecondition, "version \(target.id) is not a version of service \(instance.serviceID)",
        violations: [.init(field: "target_version_id", description: "is another service's version")])
    }
    guard target.status == .published else {
      throw DomainError(
        .failedPrecondition, "version \(target.id) is \(statusName(target.status)), not PUBLISHED",
        violations: [.init(field: "target_version_id", description: "is not published")])
    }
    guard target.id != instance.versionID else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) already runs version \(target.id)",
        violations: [.init(field: "target_version_id", description: "is the instance's version")])
    }
    guard target.upgradableFromVersionIds.contains(instance.versionID) else {
      throw DomainError(
        .failedPrecondition,
        "version \(target.id) does not upgrade from version \(instance.versionID) (its upgradable_from_version_ids: \(target.upgradableFromVersionIds.joined(separator: ", ")))",
        violations: [.init(field: "target_version_id", description: "does not upgrade from the instance's version")])
    }
    return try Self.planned(instance, to: target, setName: setName, throughProvider: throughProvider)
  }

  /// What rolling the instance's last upgrade back would change: to the version it came
  /// from (`previous`), when `current` (the version it runs) supports rollback.
  public static func rollbackPlan(
    _ instance: Instance, current: Version, previous: Version, throughProvider: Bool
  ) throws(DomainError) -> (plan: Nest_Entitlement_V1_UpgradePlan, parameters: [String: String]) {
    try checkRunning(instance)
    guard let last = Self.lastDone(instance), last.toVersionID == current.id, last.fromVersionID == previous.id
    else {
      throw DomainError(
        .failedPrecondition, "instance \(instance.id) has no upgrade to roll back",
        violations: [.init(field: "instance_id", description: "its last upgrade is not an UPGRADED upgrade")])
    }
    guard current.supportsRollback else {
      throw DomainError(
        .failedPrecondition, "version \(current.id) does not support rollback",
        violations: [.init(field: "instance_id", description: "runs a version without rollback")])
    }
    return try Self.planned(
      instance, to: previous, setName: last.fromParameterSetName, throughProvider: throughProvider)
  }

  /// The last upgrade (not rollback) that is done and not rolled back since.
  public static func lastDone(_ instance: Instance) -> Upgrade? {
    guard let last = instance.upgrades.last(where: { $0.status == .upgraded }), last.kind == .upgrade else {
      return nil
    }
    return last
  }

  private static func planned(
    _ instance: Instance, to target: Version, setName: String, throughProvider: Bool
  ) throws(DomainError) -> (plan: Nest_Entitlement_V1_UpgradePlan, parameters: [String: String]) {
    let names = target.parameterSets.map(\.name)
    let wanted = setName.isEmpty ? instance.parameterSetName : setName
    let parameters: [String: String]
    if wanted.isEmpty {
      parameters = [:]
    } else if let set = target.parameterSets.first(where: { $0.name == wanted }) {
      parameters = set.parameters
    } else {
      let field = setName.isEmpty ? "target_version_id" : "parameter_set_name"
      throw .invalid([
        .init(
          field: field,
          description:
            "version \(target.id) has no parameter set \"\(wanted)\"; name one of \(names.joined(separator: ", ")) in parameter_set_name"
        )
      ])
    }
    var changes: [String: String] = [:]
    for name in Set(parameters.keys).union(instance.parameters.keys)
    where parameters[name] != instance.parameters[name] {
      changes[name] = "\(instance.parameters[name] ?? "") -> \(parameters[name] ?? "")"
    }
    let plan = Nest_Entitlement_V1_UpgradePlan.with {
      $0.fromVersionID = instance.versionID
      $0.toVersionID = target.id
      $0.fromParameterSetName = instance.parameterSetName
      $0.toParameterSetName = wanted
      $0.parameterChanges = changes
      $0.priceUnchanged = true
      $0.licenseReissued = instance.accessMode == .resources
      $0.throughProvider = throughProvider
      $0.securityRelease = target.securityRelease
    }
    return (plan, parameters)
  }

  /// The upgrade started: UPGRADING, with its entry in the history.
  public static func begin(
    _ instance: inout Instance, _ plan: Nest_Entitlement_V1_UpgradePlan, parameters: [String: String],
    kind: Nest_Entitlement_V1_UpgradeKind, id: String, requestedBy: String, reason: String, now: Int64
  ) {
    instance.upgrades.append(
      .with {
        $0.id = id
        $0.kind = kind
        $0.fromVersionID = plan.fromVersionID
        $0.toVersionID = plan.toVersionID
        $0.status = .upgrading
        $0.reason = reason
        $0.requestedBy = requestedBy
        $0.parameterSetName = plan.toParameterSetName
        $0.fromParameterSetName = plan.fromParameterSetName
        $0.securityRelease = plan.securityRelease
        $0.parameters = parameters
        $0.startedAtUnixMs = now
      })
    instance.upgradeStatus = .upgrading
    instance.updatedAtUnixMs = now
  }

  /// The upgrade `id` done: the instance runs its target version and parameters. False
  /// when it is not UPGRADING (already ended).
  public static func finish(_ instance: inout Instance, id: String, now: Int64) -> Bool {
    guard let index = instance.upgrades.firstIndex(where: { $0.id == id }),
      instance.upgrades[index].status == .upgrading
    else { return false }
    instance.upgrades[index].status = .upgraded
    instance.upgrades[index].endedAtUnixMs = now
    let upgrade = instance.upgrades[index]
    instance.versionID = upgrade.toVersionID
    instance.parameterSetName = upgrade.parameterSetName
    instance.parameters = upgrade.parameters
    instance.upgradeStatus = .upgraded
    if instance.upgradableToVersionID == upgrade.toVersionID {
      instance.upgradableToVersionID = ""
      instance.upgradableSecurityRelease = false
    }
    instance.updatedAtUnixMs = now
    return true
  }

  /// The upgrade `id` failed: the instance runs the version it ran. False when it is not
  /// UPGRADING.
  public static func fail(_ instance: inout Instance, id: String, reason: String, now: Int64) -> Bool {
    guard let index = instance.upgrades.firstIndex(where: { $0.id == id }),
      instance.upgrades[index].status == .upgrading
    else { return false }
    instance.upgrades[index].status = .upgradeFailed
    instance.upgrades[index].reason = reason
    instance.upgrades[index].endedAtUnixMs = now
    instance.upgradeStatus = .upgradeFailed
    instance.updatedAtUnixMs = now
    return true
  }

  /// A maintenance window "HH:MM-HH:MM" in UTC as minutes of the day; it may wrap midnight.
  public static func window(_ text: String) throws(DomainError) -> (start: Int, end: Int) {
    func minutes(_ part: Substring) -> Int? {
      let fields = part.split(separator: ":")
      guard fields.count == 2, let hours = Int(fields[0]), let minutes = Int(fields[1]), (0...24).contains(hours),
        (0..<60).contains(minutes), hours * 60 + minutes <= 24 * 60
      else { return nil }
      return hours * 60 + minutes
    }
    let parts = text.split(separator: "-")
    guard parts.count == 2, let start = minutes(parts[0]), let end = minutes(parts[1]), start != end else {
      throw .invalid("upgrade.window", "must be HH:MM-HH:MM (UTC), e.g. 02:00-04:00, not \"\(text)\"")
    }
    return (start, end)
  }

  /// Whether `now` is inside the window.
  public static func inWindow(_ window: (start: Int, end: Int), nowUnixMs: Int64) -> Bool {
    let minute = Int((nowUnixMs / 60_000) % (24 * 60))
    return window.start < window.end
      ? (window.start <= minute && minute < window.end) : (minute >= window.start || minute < window.end)
  }

  /// Whether automatic upgrades of a service's instances to `target` have stopped: one of
  /// them failed.
  public static func halted(_ instances: [Instance], target: String) -> Bool {
    instances.contains { instance in
      instance.upgrades.contains {
        $0.requestedBy == Self.automatic && $0.toVersionID == target && $0.status == .upgradeFailed
      }
    }
  }

  /// The requester of automatic upgrades.
  public static let automatic = "auto-upgrade"
}
