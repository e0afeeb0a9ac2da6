// Versions that move: an instance upgraded to a later version of its service (or only told
// what would change), rolled back, or opted in to automatic upgrades. Locally an upgrade is
// done in the request's transaction; an instance its provider created is upgraded through
// the provider's fulfilment endpoint (UPGRADING until it answers).
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension EntitlementService {
  public func upgradeServiceInstance(
    request: Nest_Entitlement_V1_UpgradeServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_UpgradeServiceInstanceResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("instance_id", request.instanceID))
    let now = self.clock.nowUnixMs()
    let current = try await self.store.database.read {
      try Self.upgrader(request.instanceID, access, now: now, in: $0)
    }
    let service = try await self.catalogService(current.serviceID)
    // No target named: the version it is upgradable to (as marked, or as the catalog has it
    // now, should the mark not be made yet).
    let targetID =
      request.targetVersionID.isEmpty
      ? (current.upgradableToVersionID.isEmpty
        ? UpgradeRules.upgradableTarget(from: current.versionID, in: service)?.id ?? ""
        : current.upgradableToVersionID)
      : request.targetVersionID
    guard !targetID.isEmpty else {
      throw DomainError.invalid(
        "target_version_id", "instance \(current.id) has no version to upgrade to; name one in target_version_id")
    }
    guard let target = service.versions.first(where: { $0.id == targetID }) else {
      throw DomainError.notFound("version", targetID, field: "target_version_id")
    }
    return try await self.move(
      request.instanceID, access, method: "UpgradeServiceInstance", token: request.clientToken, request: request,
      kind: .upgrade, reason: request.reason, dryRun: request.dryRun, now: now
    ) { instance, through in
      try UpgradeRules.plan(instance, to: target, setName: request.parameterSetName, throughProvider: through)
    }
  }

  public func rollbackServiceInstance(
    request: Nest_Entitlement_V1_RollbackServiceInstanceRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RollbackServiceInstanceResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("instance_id", request.instanceID))
    let now = self.clock.nowUnixMs()
    let current = try await self.store.database.read {
      try Self.upgrader(request.instanceID, access, now: now, in: $0)
    }
    guard let last = UpgradeRules.lastDone(current) else {
      throw DomainError(
        .failedPrecondition, "instance \(current.id) has no upgrade to roll back",
        violations: [.init(field: "instance_id", description: "its last upgrade is not an UPGRADED upgrade")])
    }
    let service = try await self.catalogService(current.serviceID)
    guard let running = service.versions.first(where: { $0.id == last.toVersionID }),
      let previous = service.versions.first(where: { $0.id == last.fromVersionID })
    else { throw DomainError.notFound("version", last.fromVersionID, field: "instance_id") }
    let moved = try await self.move(
      request.instanceID, access, method: "RollbackServiceInstance", token: request.clientToken, request: request,
      kind: .rollback, reason: request.reason, now: now
    ) { instance, through in
      try UpgradeRules.rollbackPlan(instance, current: running, previous: previous, throughProvider: through)
    }
    return .with {
      $0.instance = moved.instance ?? .init()
      $0.plan = moved.plan ?? .init()
    }
  }

  /// An upgrade or a rollback planned by `plan` for the instance as it is in the transaction
  /// (and whether its provider makes it), started once per client token; only planned for a
  /// dry run.
  private func move<Request: NestMessage>(
    _ id: String, _ access: Access, method: String, token: String, request: Request,
    kind: Nest_Entitlement_V1_UpgradeKind, reason: String, dryRun: Bool = false, now: Int64,
    plan: @escaping @Sendable (Instance, Bool) throws -> (Nest_Entitlement_V1_UpgradePlan, [String: String])
  ) async throws -> Nest_Entitlement_V1_UpgradeServiceInstanceResponse {
    let signer = self.signer
    let response: Nest_Entitlement_V1_UpgradeServiceInstanceResponse = try await self.store.database.write { db in
      var instance = try Self.upgrader(id, access, now: now, in: db)
      let through = try EntitlementStore.providerRuns(instance.id, in: db)
      if dryRun {
        let planned = try plan(instance, through).0
        return .with {
          $0.instance = instance
          $0.plan = planned
        }
      }
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        let (planned, parameters) = try plan(instance, through)
        try Self.start(
          &instance, planned, parameters: parameters, kind: kind, requestedBy: access.caller.subject, reason: reason,
          throughProvider: through, signer: signer, now: now, in: db)
        return .with {
          $0.instance = instance
          $0.plan = planned
        }
      }
    }
    if response.instance?.upgradeStatus == .upgrading { self.deployments?.fulfilment?.signal() }
    return response
  }

  public func setAutoUpgrade(
    request: Nest_Entitlement_V1_SetAutoUpgradeRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_SetAutoUpgradeResponse {
    let instance = try await self.operate(
      request.instanceID, method: "SetAutoUpgrade", token: request.clientToken, request: request
    ) { instance, _, now in
      guard instance.status != .released else {
        throw DomainError(.failedPrecondition, "instance \(instance.id) is released")
      }
      instance.autoUpgrade = request.autoUpgrade
      instance.updatedAtUnixMs = now
    }
    return .with { $0.instance = instance }
  }

  /// The instance, if the caller may upgrade it: its resource owner or the operator (as the
  /// declaration says), or its customer holding an APPROVED permission request to upgrade a
  /// fully managed instance.
  static func upgrader(_ id: String, _ access: Access, now: Int64, in db: Database) throws -> Instance {
    let instance = try EntitlementStore.instance(id, in: db)
    if let instance, access.caller.role == .customer, instance.customerID == access.caller.subject,
      instance.accessMode == .logonURL,
      try EntitlementStore.activeGrant(
        instanceID: instance.id, requesterID: access.caller.subject, operation: UpgradeRules.permissionOperation,
        nowUnixMs: now, in: db) != nil
    {
      return InstanceRules.present(instance, now: now)
    }
    return InstanceRules.present(
      try access.authorize(instance, notFound: .notFound("instance", id, field: "instance_id")), now: now)
  }

  /// The service and all its versions as the catalog has them now.
  func catalogService(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse {
    do {
      return try await self.catalog.service(id)
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound("service", id, field: "instance_id")
    }
  }

  /// Starts an upgrade or rollback planned for `instance` and saves it: through its provider
  /// (UPGRADING; the call is queued with the change), or done here (a private instance's
  /// license re-issued for the version).
  static func start(
    _ instance: inout Instance, _ plan: Nest_Entitlement_V1_UpgradePlan, parameters: [String: String],
    kind: Nest_Entitlement_V1_UpgradeKind, requestedBy: String, reason: String, throughProvider: Bool,
    signer: LicenseSigner, now: Int64, in db: Database
  ) throws {
    let id = Identifiers.new("upg")
    UpgradeRules.begin(
      &instance, plan, parameters: parameters, kind: kind, id: id, requestedBy: requestedBy, reason: reason, now: now)
    if !throughProvider {
      // The local deployer has nothing to wait for: saved UPGRADING and UPGRADED in one
      // commit, so the parties hear of both.
      try EntitlementStore.update(instance, in: db)
      _ = UpgradeRules.finish(&instance, id: id, now: now)
      if case .license(let license)? = instance.access {
        instance.access = .license(try Licenses.issue(for: instance, id: license.licenseID, signer: signer, now: now))
      }
    }
    try EntitlementStore.update(instance, in: db)
  }
}
