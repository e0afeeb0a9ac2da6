// The demo's version step (scenario 3): the ISV publishes a security release of A; the
// distributor, told B is behind, rebases B on it; the customer's instance becomes
// upgradable, and the ISV (its resource owner) upgrades it through its fulfilment endpoint;
// the other instance of B (the trial's), opted in to automatic upgrades, follows by itself.
import Foundation
import NestDomain
import NestProto
import NestScenarios

extension Demo {
  /// The security release walked from A to B's instances (`instance` upgraded by the ISV,
  /// `automatic` opted in to automatic upgrades); the number that do not arrive.
  func securityRelease(
    _ setup: ScenarioSetup, instance: Nest_Entitlement_V1_ServiceInstance,
    automatic: Nest_Entitlement_V1_ServiceInstance
  ) async throws -> Int {
    let parties = setup.parties
    guard let b = setup.b else { return 0 }
    let platform = self.marketplace.platform
    _ = try await platform.entitlement(as: .isv, parties.isv) {
      try await $0.setAutoUpgrade(
        .with {
          $0.instanceID = automatic.id
          $0.autoUpgrade = true
        })
    }
    print("  ISV opts the trial's instance \(automatic.id) in to automatic upgrades")
    let a2 = try await self.marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "1.1", upgradableFrom: [setup.a.defaultVersionID],
      security: true)
    print("  ISV publishes A 1.1 (\(a2.id)), a security release")
    let behind = try await platform.catalog(as: .distributor, parties.distributor) {
      try await $0.getService(.with { $0.serviceID = b.id }).service ?? .init()
    }
    print(
      "  B is behind: built on \(behind.baseVersionID), A's latest \(behind.baseLatestVersionID)"
        + (behind.baseSecurityUpdate ? " (a security update)" : ""))
    let current = try await self.marketplace.instance(instance.id)
    let b2 = try await self.marketplace.publishVersion(
      .distributor, parties.distributor, service: b, label: "1.1", upgradableFrom: [current.versionID],
      security: true, baseVersion: a2.id)
    print("  distributor rebases B on it: B 1.1 (\(b2.id)) upgrades instances of \(current.versionID)")
    // The upgrade driver looks every --upgrade-interval-ms (a second under `nestctl up`, a
    // minute by default, as in docker-compose): the demo waits up to 90 s.
    var seen = current
    _ = try await eventually(timeout: .seconds(90)) {
      seen = try await self.marketplace.instance(instance.id)
      return seen.upgradableToVersionID == b2.id
    }
    print(
      "  instance \(instance.id) is upgradable to \(seen.upgradableToVersionID)"
        + (seen.upgradableSecurityRelease ? " (a security release)" : ""))
    let started = try await self.marketplace.upgrade(.isv, parties.isv, instance: instance.id)
    let how = started.plan?.throughProvider == true ? "through its fulfilment endpoint" : "(the platform deploys it)"
    _ = try await eventually(timeout: .seconds(30)) {
      seen = try await self.marketplace.instance(instance.id)
      return seen.upgradeStatus != .upgrading
    }
    let ok = seen.versionID == b2.id && seen.upgradeStatus == .upgraded
    print(
      "  ISV upgrades it \(how): \(statusName(seen.upgradeStatus)), running \(seen.versionID)  \(ok ? "ok" : "EXPECTED \(b2.id)")"
    )
    var trial = automatic
    _ = try await eventually(timeout: .seconds(90)) {
      trial = try await self.marketplace.instance(automatic.id)
      return trial.versionID == b2.id
    }
    let followed = trial.versionID == b2.id && trial.upgrades.last?.requestedBy == "auto-upgrade"
    print(
      "  the trial's instance follows by itself (\(trial.upgrades.last?.requestedBy ?? "not upgraded")): running \(trial.versionID)  \(followed ? "ok" : "EXPECTED \(b2.id)")"
    )
    for (role, account) in [
      (Nest_Common_V1_Role.distributor, parties.distributor), (.customer, parties.customer),
    ] {
      let types = try await platform.feed(as: role, account).map(\.type).filter {
        $0 == "service.base_updated" || $0.hasPrefix("instance.upgrad")
      }
      print("  \(statusName(role).lowercased()) \(account) was told: \(types.joined(separator: ", "))")
    }
    return (ok ? 0 : 1) + (followed ? 0 : 1)
  }
}
