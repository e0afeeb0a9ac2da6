// What partners are told of entitlement's resources: an authorization applied for, approved,
// rejected, granted, revoked or expired (to its ISV and distributor); an instance deployed,
// failed, suspended, resumed, expired, released, renewed, changed, failing to renew,
// upgradable, upgrading, upgraded, failing to upgrade or rolled back (to its customer,
// distributor and ISV); a permission request made or decided (to the requester and
// the owner). Pure.
public import NestDomain
public import NestProto

public enum EntitlementEvents {
  public static func drafts(
    _ authorization: Nest_Entitlement_V1_DistributionAuthorization, entered: [Nest_Common_V1_StatusChange]
  ) -> [EventDraft] {
    // ACTIVE from PENDING is an approval; ACTIVE as the first status, a grant.
    let firstEntry = authorization.history.count == entered.count
    return EventDraft.entered(
      entered, subject: "authorization/\(authorization.id)",
      parties: Nest_Common_V1_Party.of(.isv, authorization.isvID)
        + Nest_Common_V1_Party.of(.distributor, authorization.distributorID),
      payload: .authorization(authorization)
    ) { status in
      switch status {
      case "PENDING": "authorization.applied"
      case "ACTIVE":
        firstEntry && entered.first?.status == "ACTIVE" ? "authorization.granted" : "authorization.approved"
      case "REJECTED": "authorization.rejected"
      case "REVOKED": "authorization.revoked"
      case "EXPIRED": "authorization.expired"
      default: nil
      }
    }
  }

  static func parties(_ instance: Nest_Entitlement_V1_ServiceInstance) -> [Nest_Common_V1_Party] {
    Nest_Common_V1_Party.of(.customer, instance.customerID)
      + Nest_Common_V1_Party.of(.distributor, instance.distributorID)
      + Nest_Common_V1_Party.of(.isv, instance.isvID)
  }

  /// The events of an instance saved as `instance`, `before` the change (nil when it is new):
  /// the statuses it entered, a longer term (renewed), another plan or quantity (changed),
  /// a renewal that failed.
  public static func drafts(
    _ instance: Nest_Entitlement_V1_ServiceInstance, before: Nest_Entitlement_V1_ServiceInstance?,
    entered: [Nest_Common_V1_StatusChange], now: Int64
  ) -> [EventDraft] {
    let subject = "instance/\(instance.id)"
    let parties = Self.parties(instance)
    var previous = before?.status
    var drafts: [EventDraft] = []
    for entry in entered {
      let type: String? =
        switch entry.status {
        // DEPLOYED again (a renewal re-records it) is no news: the renewal is its own event.
        case "DEPLOYED" where previous == .deployed: nil
        case "DEPLOYED": previous == .suspended ? "instance.resumed" : "instance.deployed"
        case "DEPLOY_FAILED": "instance.deploy_failed"
        case "SUSPENDED": "instance.suspended"
        case "EXPIRED": "instance.expired"
        case "RELEASED": "instance.released"
        default: nil
        }
      if let type {
        drafts.append(
          EventDraft(type, subject: subject, parties: parties, payload: .instance(instance), at: entry.changedAtUnixMs))
      }
      previous = Nest_Entitlement_V1_DeploymentStatus.allCases.first { statusName($0) == entry.status } ?? previous
    }
    guard let before else { return drafts }
    func draft(_ type: String) -> EventDraft {
      EventDraft(type, subject: subject, parties: parties, payload: .instance(instance), at: now)
    }
    if instance.expiresAtUnixMs > before.expiresAtUnixMs && before.expiresAtUnixMs != 0 {
      drafts.append(draft("instance.renewed"))
    }
    if instance.subscription?.plan?.planID != before.subscription?.plan?.planID || instance.quantity != before.quantity
    {
      drafts.append(draft("instance.changed"))
    }
    if instance.subscription?.status == .renewFailed && before.subscription?.status != .renewFailed {
      drafts.append(draft("instance.renew_failed"))
    }
    // Upgrades: each entry that started or ended, and a version to upgrade to.
    let earlier = Dictionary(before.upgrades.map { ($0.id, $0.status) }, uniquingKeysWith: { $1 })
    for upgrade in instance.upgrades where earlier[upgrade.id] != upgrade.status {
      let type: String? =
        switch upgrade.status {
        case .upgrading: "instance.upgrading"
        case .upgraded: upgrade.kind == .rollback ? "instance.rolled_back" : "instance.upgraded"
        case .upgradeFailed: "instance.upgrade_failed"
        default: nil
        }
      if let type { drafts.append(draft(type)) }
    }
    if !instance.upgradableToVersionID.isEmpty
      && (instance.upgradableToVersionID != before.upgradableToVersionID
        || instance.upgradableSecurityRelease != before.upgradableSecurityRelease)
    {
      drafts.append(draft("instance.upgradable"))
    }
    return drafts
  }

  /// An instance's term, or an authorization's validity, ends soon.
  public static func expiring(_ instance: Nest_Entitlement_V1_ServiceInstance, now: Int64) -> EventDraft {
    EventDraft(
      "instance.expiring", subject: "instance/\(instance.id)", parties: Self.parties(instance),
      payload: .instance(instance), at: now)
  }

  public static func expiring(_ authorization: Nest_Entitlement_V1_DistributionAuthorization, now: Int64)
    -> EventDraft
  {
    EventDraft(
      "authorization.expiring", subject: "authorization/\(authorization.id)",
      parties: Nest_Common_V1_Party.of(.isv, authorization.isvID)
        + Nest_Common_V1_Party.of(.distributor, authorization.distributorID),
      payload: .authorization(authorization), at: now)
  }

  public static func drafts(
    _ request: Nest_Entitlement_V1_PermissionRequest, before: Nest_Entitlement_V1_PermissionRequestStatus?
  ) -> [EventDraft] {
    guard before != request.status else { return [] }
    let type: String? =
      switch request.status {
      case .pending: "permission_request.requested"
      case .approved, .denied: "permission_request.decided"
      default: nil
      }
    return type.map {
      [
        EventDraft(
          $0, subject: "permission_request/\(request.id)",
          parties: Nest_Common_V1_Party.of(.customer, request.requesterID) + [request.owner].compactMap { $0 },
          payload: .permissionRequest(request), at: request.updatedAtUnixMs)
      ]
    } ?? []
  }
}
