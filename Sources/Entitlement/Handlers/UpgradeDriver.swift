// Versions that move, in the background: every interval, for each service with live
// instances, the catalog's versions are read once and each instance is marked with the
// version it can upgrade to (its parties hear `instance.upgradable`, with the security flag
// when the version is a security release). In the maintenance window, instances whose owner
// opted in are upgraded, one instance of a service at a time (the next once the one before
// is no longer UPGRADING), and a service's automatic upgrades to a version stop at the first
// that fails.
import GRDB
public import Logging
import NestDomain
import NestProto
import NestServiceKit
public import ServiceLifecycle

public final class UpgradeDriver: Service, Sendable {
  let store: EntitlementStore
  let catalog: any CatalogFacts
  let signer: LicenseSigner
  let fulfilment: FulfilmentDriver?
  let interval: Duration
  let window: (start: Int, end: Int)
  let logger: Logger
  let clock: NestClock
  private let wakeups = Wakeups()

  public init(
    store: EntitlementStore, catalog: any CatalogFacts, signer: LicenseSigner, fulfilment: FulfilmentDriver?,
    interval: Duration, window: (start: Int, end: Int), logger: Logger, clock: NestClock
  ) {
    self.store = store
    self.catalog = catalog
    self.signer = signer
    self.fulfilment = fulfilment
    self.interval = interval
    self.window = window
    self.logger = logger
    self.clock = clock
  }

  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    await self.wakeups.run(every: self.interval) { await self.round() }
  }

  /// One look at every service with live instances.
  public func round() async {
    do {
      let services = try await self.store.database.read { try EntitlementStore.servicesWithLiveInstances(in: $0) }
      for serviceID in services where !Task.isCancelled {
        let service: Nest_Catalog_V1_GetServiceResponse
        do {
          service = try await self.catalog.service(serviceID)
        } catch {
          self.logger.warning(
            "cannot read a service's versions", metadata: ["service": "\(serviceID)", "error": "\(error)"])
          continue
        }
        try await self.look(at: service)
      }
    } catch is CancellationError {
      // Shutting down: the next start looks again.
    } catch {
      self.logger.error("upgrade round failed", metadata: ["error": "\(error)"])
    }
  }

  /// Marks the service's instances upgradable, and upgrades the next one that opted in.
  func look(at service: Nest_Catalog_V1_GetServiceResponse) async throws {
    let serviceID = service.service?.id ?? ""
    let now = self.clock.nowUnixMs()
    let automatic = UpgradeRules.inWindow(self.window, nowUnixMs: now)
    // Most rounds change nothing: read first, and take the writer only when they do.
    var snapshot = try await self.store.database.read {
      try EntitlementStore.liveInstances(ofService: serviceID, in: $0)
    }
    guard Self.mark(&snapshot, service, now: now) || (automatic && Self.next(snapshot, service) != nil) else { return }
    let signer = self.signer
    let upgrading = try await self.store.database.write { db -> Bool in
      var instances = try EntitlementStore.liveInstances(ofService: serviceID, in: db)
      let before = instances
      if Self.mark(&instances, service, now: now) {
        for (old, new) in zip(before, instances) where old != new { try EntitlementStore.update(new, in: db) }
      }
      guard automatic, let (found, target) = Self.next(instances, service) else { return false }
      var next = found
      let through = try EntitlementStore.providerRuns(next.id, in: db)
      do {
        let (plan, parameters) = try UpgradeRules.plan(next, to: target, setName: "", throughProvider: through)
        try EntitlementService.start(
          &next, plan, parameters: parameters, kind: .upgrade, requestedBy: UpgradeRules.automatic,
          reason: "automatic upgrade in the maintenance window", throughProvider: through, signer: signer, now: now,
          in: db)
      } catch let error as DomainError {
        // Not upgradable as it is (its parameter set is not in the target): recorded as a
        // failed automatic upgrade, which stops the others to that version.
        UpgradeRules.begin(
          &next,
          .with {
            $0.fromVersionID = next.versionID
            $0.toVersionID = target.id
            $0.securityRelease = target.securityRelease
          }, parameters: [:], kind: .upgrade, id: Identifiers.new("upg"), requestedBy: UpgradeRules.automatic,
          reason: "", now: now)
        _ = UpgradeRules.fail(&next, id: next.upgrades.last?.id ?? "", reason: error.message, now: now)
        try EntitlementStore.update(next, in: db)
      }
      return next.upgradeStatus == .upgrading
    }
    if upgrading { self.fulfilment?.signal() }
  }

  /// Marks each instance with the version it can upgrade to; whether any mark changed.
  static func mark(
    _ instances: inout [Nest_Entitlement_V1_ServiceInstance], _ service: Nest_Catalog_V1_GetServiceResponse,
    now: Int64
  ) -> Bool {
    var changed = false
    for index in instances.indices {
      let target = UpgradeRules.upgradableTarget(from: instances[index].versionID, in: service)
      if UpgradeRules.markUpgradable(&instances[index], target) {
        instances[index].updatedAtUnixMs = now
        changed = true
      }
    }
    return changed
  }

  /// The opted-in instance to upgrade automatically now, and to what: one instance of a
  /// service at a time, none after a failure to the same version.
  static func next(
    _ instances: [Nest_Entitlement_V1_ServiceInstance], _ service: Nest_Catalog_V1_GetServiceResponse
  ) -> (Nest_Entitlement_V1_ServiceInstance, Nest_Catalog_V1_ServiceVersion)? {
    guard !instances.contains(where: { $0.upgradeStatus == .upgrading }),
      let next = instances.first(where: {
        $0.autoUpgrade && $0.status == .deployed && !$0.upgradableToVersionID.isEmpty
      }),
      !UpgradeRules.halted(instances, target: next.upgradableToVersionID),
      let target = service.versions.first(where: { $0.id == next.upgradableToVersionID })
    else { return nil }
    return (next, target)
  }
}
