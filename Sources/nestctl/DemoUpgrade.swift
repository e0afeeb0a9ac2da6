// The demo's version step (scenario 3): the ISV publishes a security release of A; the
// distributor, told B is behind, rebases B on it; the customer's instance becomes
// upgradable, and the ISV (its resource owner) upgrades it through its fulfilment endpoint.
import Foundation
import NestDomain
import NestProto
import NestScenarios

extension Demo {
  /// The security release walked from A to the customer's instance; 1 when it does not
  /// arrive.
  func securityRelease(_ setup: ScenarioSetup, instance: Nest_Entitlement_V1_ServiceInstance) async throws -> Int {
    let parties = setup.parties
    guard let b = setup.b else { return 0 }
    let platform = self.marketplace.platform
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
    var seen = current
    _ = try await eventually(timeout: .seconds(30)) {
      seen = try await self.marketplace.instance(instance.id)
      return seen.upgradableToVersionID == b2.id
    }
    print(
      "  instance \(instance.id) is upgradable to \(seen.upgradableToVersionID)"
        + (seen.upgradableSecurityRelease ? " (a security release)" : ""))
    _ = try await self.marketplace.upgrade(.isv, parties.isv, instance: instance.id)
    _ = try await eventually(timeout: .seconds(30)) {
      seen = try await self.marketplace.instance(instance.id)
      return seen.upgradeStatus != .upgrading
    }
    let ok = seen.versionID == b2.id && seen.upgradeStatus == .upgraded
    print(
      "  ISV upgrades it through its fulfilment endpoint: \(statusName(seen.upgradeStatus)), running \(seen.versionID)  \(ok ? "ok" : "EXPECTED \(b2.id)")"
    )
    for (role, account) in [
      (Nest_Common_V1_Role.distributor, parties.distributor), (.customer, parties.customer),
    ] {
      let types = try await platform.feed(as: role, account).map(\.type).filter {
        $0 == "service.base_updated" || $0.hasPrefix("instance.upgrad")
      }
      print("  \(statusName(role).lowercased()) \(account) was told: \(types.joined(separator: ", "))")
    }
    return ok ? 0 : 1
  }
}
