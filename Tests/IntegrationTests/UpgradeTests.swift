// Versions that move, with the five services as processes: A publishes a security release,
// B is rebased on it, and the scenario-2 and scenario-3 customers' instances are upgraded
// (one by the customer with a permission grant) and one rolled back; an upgrade through a
// provider endpoint that fails leaves the instance on its old version, running,
// UPGRADE_FAILED with the reason; automatic upgrades go one instance at a time and stop at
// the first failure.
import Foundation
import NestDomain
import NestProtoTesting
import NestScenarios
import NestTestKit
import Testing

@Suite(
  "Versions that move: upgrades, rollbacks, derived services following their base", .serialized,
  .timeLimit(.minutes(5)))
struct UpgradeTests {
  static let settings: [NestServiceName: [String: String]] = [
    .entitlement: [
      "upgrade.interval.ms": "200", "fulfilment.backoff.initial.ms": "50", "fulfilment.backoff.max.ms": "200",
      "fulfilment.timeout.ms": "1000", "fulfilment.retry.window.ms": "1500",
    ]
  ]

  /// The instance as the operator sees it once `done` holds (the last one read otherwise).
  static func instance(
    _ marketplace: Marketplace, _ id: String,
    until done: @escaping @Sendable (Nest_Entitlement_V1_ServiceInstance) -> Bool
  ) async throws -> Nest_Entitlement_V1_ServiceInstance {
    var instance = try await marketplace.instance(id)
    _ = try await eventually(timeout: .seconds(60)) {
      instance = try await marketplace.instance(id)
      return done(instance)
    }
    return instance
  }

  @Test(
    "A's security release reaches B's distributor; B rebased; the scenario-3 customer upgrades with a grant, the scenario-2 distributor upgrades and rolls back; every party told"
  )
  func securityRelease() async throws {
    let platform = try await NestTestPlatform.start(.processes(), settings: Self.settings)
    let marketplace = platform.marketplace
    for kind in [ScenarioKind.scenario3, .scenario2] {
      let parties = ScenarioParties(kind, run: "upgrade")
      let setup = try await marketplace.setUp(kind, parties: parties)
      let a = setup.a
      let b = try #require(setup.b)
      let order = try await marketplace.buy(parties.customer, product: setup.productID)
      _ = try await marketplace.waitForOrder(order.id)
      let bought = try await Self.instance(marketplace, try await marketplace.instance(of: order).id) {
        $0.status == .deployed
      }
      let v1 = bought.versionID

      // A v2, a security release: B's distributor hears B is behind, and B's entry says so.
      let a2 = try await marketplace.publishVersion(
        .isv, parties.isv, service: a, label: "2.0", upgradableFrom: [a.defaultVersionID], security: true)
      let behind = try await platform.catalog(as: .distributor, parties.distributor) {
        try await $0.getService(.with { $0.serviceID = b.id }).service ?? .init()
      }
      #expect(behind.baseLatestVersionID == a2.id && behind.baseSecurityUpdate, "\(behind)")
      let told = try await eventually {
        try await platform.feed(as: .distributor, parties.distributor).contains {
          $0.type == "service.base_updated" && $0.subject == "service/\(b.id)"
        }
      }
      #expect(told, "\(kind): the distributor got no service.base_updated")
      // B's distributor only: the ISV and the customer are not told of B's base.
      for (role, account) in [(Nest_Common_V1_Role.isv, parties.isv), (.customer, parties.customer)] {
        #expect(!(try await platform.feed(as: role, account).contains { $0.type == "service.base_updated" }))
      }

      // B v2 on A v2, upgradable from B v1 (the only version the customer runs).
      let b2 = try await marketplace.publishVersion(
        .distributor, parties.distributor, service: b, label: "2.0", upgradableFrom: [v1], security: true,
        baseVersion: a2.id, region: "eu-2")
      #expect(b2.baseVersionID == a2.id)
      let rebased = try await platform.catalog(as: .distributor, parties.distributor) {
        try await $0.getService(.with { $0.serviceID = b.id }).service ?? .init()
      }
      #expect(rebased.baseVersionID == a2.id && rebased.baseLatestVersionID.isEmpty, "\(rebased)")

      // The customer's instance becomes upgradable, with the security flag; it is told.
      let upgradable = try await Self.instance(marketplace, bought.id) { $0.upgradableToVersionID == b2.id }
      #expect(upgradable.upgradableSecurityRelease)
      let notice = try await eventually {
        try await platform.feed(as: .customer, parties.customer).contains {
          $0.type == "instance.upgradable" && $0.subject == "instance/\(bought.id)"
        }
      }
      #expect(notice, "\(kind): the customer got no instance.upgradable")

      // What it would change, without changing it.
      let owner: (Nest_Common_V1_Role, String) =
        kind == .scenario2 ? (.distributor, parties.distributor) : (.isv, parties.isv)
      let dry = try await marketplace.upgrade(owner.0, owner.1, instance: bought.id, dryRun: true)
      #expect(dry.plan?.parameterChanges == ["region": "eu-1 -> eu-2"] && dry.plan?.priceUnchanged == true)
      #expect(try await marketplace.instance(bought.id).versionID == v1)

      if kind == .scenario3 {
        // The customer of a fully managed instance may not upgrade it, until the ISV grants it.
        await #expect(throws: (any Error).self) {
          try await marketplace.upgrade(.customer, parties.customer, instance: bought.id)
        }
        let asked = try await platform.entitlement(as: .customer, parties.customer) {
          try await $0.requestResourcePermission(
            .with {
              $0.instanceID = bought.id
              $0.operation = "nest:UpgradeServiceInstance"
              $0.reason = "the security fix"
              $0.requestedDurationSeconds = 600
            }
          ).request ?? .init()
        }
        _ = try await platform.entitlement(as: .isv, parties.isv) {
          try await $0.decidePermissionRequest(
            .with {
              $0.requestID = asked.id
              $0.decision = .approve
            })
        }
        let upgraded = try await marketplace.upgrade(.customer, parties.customer, instance: bought.id)
        #expect(upgraded.instance?.versionID == b2.id && upgraded.instance?.upgradeStatus == .upgraded)
        #expect(upgraded.instance?.parameters == ["region": "eu-2"])
      } else {
        let upgraded = try await marketplace.upgrade(.distributor, parties.distributor, instance: bought.id)
        #expect(upgraded.instance?.versionID == b2.id)
        let rolledBack = try await platform.entitlement(as: .distributor, parties.distributor) {
          try await $0.rollbackServiceInstance(.with { $0.instanceID = bought.id }).instance ?? .init()
        }
        #expect(rolledBack.versionID == v1 && rolledBack.parameters == ["region": "eu-1"])
        #expect(rolledBack.upgrades.map(\.kind) == [.upgrade, .rollback])
      }
      let expected = kind == .scenario2 ? ["instance.upgraded", "instance.rolled_back"] : ["instance.upgraded"]
      for (role, account) in [
        (Nest_Common_V1_Role.customer, parties.customer), (.isv, parties.isv), (.distributor, parties.distributor),
      ] {
        let heard = try await eventually {
          let types = try await platform.feed(as: role, account).filter { $0.subject == "instance/\(bought.id)" }.map(
            \.type)
          return expected.allSatisfy(types.contains)
        }
        #expect(heard, "\(kind): \(role) did not hear \(expected)")
      }
    }
    await platform.stop()
  }

  @Test(
    "an upgrade through a provider endpoint that fails: the instance stays on its version, running, UPGRADE_FAILED with the reason"
  )
  func failingProvider() async throws {
    let sale = try await ProvidedSale.start(run: "upgrade-fail", extra: ["--fail-actions", "upgrade"])
    defer { sale.close() }
    let (platform, marketplace, parties, setup) = (sale.platform, sale.platform.marketplace, sale.parties, sale.setup)
    let bought = try await sale.buy(parties.customer)
    let v2 = try await marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "2.0", upgradableFrom: [bought.versionID])
    let started = try await marketplace.upgrade(.isv, parties.isv, instance: bought.id, to: v2.id)
    #expect(started.instance?.upgradeStatus == .upgrading && started.plan?.throughProvider == true)
    let failed = try await Self.instance(marketplace, bought.id) { $0.upgradeStatus == .upgradeFailed }
    #expect(failed.upgradeStatus == .upgradeFailed)
    #expect(failed.status == .deployed && failed.versionID == bought.versionID)
    let reason = failed.upgrades.last?.reason ?? ""
    #expect(reason.contains("HTTP 503") && reason.contains("upgrade is failing on purpose"), "\(reason)")
    let told = try await eventually {
      try await platform.feed(as: .isv, parties.isv).contains {
        $0.type == "instance.upgrade_failed" && $0.subject == "instance/\(bought.id)"
      }
    }
    #expect(told)
    await platform.stop()
  }

  @Test(
    "an upgrade through the provider racing a suspension, a resumption and a renewal: each applied, the provider told in order"
  )
  func serialized() async throws {
    // The first two calls (the create, then the upgrade) are answered after 0.6 s.
    let sale = try await ProvidedSale.start(
      run: "upgrade-race", mode: "slow-first", extra: ["--count", "2", "--delay", "0.6"])
    defer { sale.close() }
    let (platform, marketplace, parties, setup) = (sale.platform, sale.platform.marketplace, sale.parties, sale.setup)
    let provider = sale.provider
    let bought = try await sale.buy(parties.customer)
    let v2 = try await marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "2.0", upgradableFrom: [bought.versionID])
    let started = try await marketplace.upgrade(.isv, parties.isv, instance: bought.id, to: v2.id)
    #expect(started.instance?.upgradeStatus == .upgrading)
    // While the provider takes its time: suspended, resumed and renewed.
    try await platform.entitlement(as: .isv, parties.isv) { entitlement in
      _ = try await entitlement.suspendServiceInstance(.with { $0.instanceID = bought.id })
      _ = try await entitlement.resumeServiceInstance(.with { $0.instanceID = bought.id })
    }
    let renewal = try await marketplace.renew(parties.customer, instance: bought.id)
    _ = try await marketplace.waitForOrder(renewal.id)
    let done = try await Self.instance(marketplace, bought.id) {
      $0.upgradeStatus == .upgraded && $0.expiresAtUnixMs > bought.expiresAtUnixMs
    }
    #expect(done.versionID == v2.id && done.status == .deployed && done.expiresAtUnixMs > bought.expiresAtUnixMs)
    let calls = try await eventually {
      FulfilmentTests.actions(provider, bought.id).actions.count >= 5
    }
    // In the order the changes were made (a repeat, at least once, keeps its key).
    let actions = FulfilmentTests.actions(provider, bought.id).actions
    #expect(calls, "the provider got \(actions)")
    #expect(actions == ["create", "upgrade", "suspend", "resume", "renew"], "\(actions)")
    await platform.stop()
  }

  @Test(
    "automatic upgrades in the maintenance window: one instance of a service at a time; they stop at the first failure"
  )
  func automatic() async throws {
    // The provider answers upgrades (each one UPGRADING until it does), and fails them once
    // told to.
    let sale = try await ProvidedSale.start(run: "auto-upgrade")
    defer { sale.close() }
    let (platform, marketplace, parties, setup) = (sale.platform, sale.platform.marketplace, sale.parties, sale.setup)
    let (directory, provider) = (sale.directory, sale.provider)
    var instances: [String] = []
    for index in 0..<3 {
      let instance = try await sale.buy("\(parties.customer)-\(index)")
      _ = try await platform.entitlement(as: .isv, parties.isv) {
        try await $0.setAutoUpgrade(
          .with {
            $0.instanceID = instance.id
            $0.autoUpgrade = true
          })
      }
      instances.append(instance.id)
    }
    let v1 = try await marketplace.instance(instances[0]).versionID
    let v2 = try await marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "2.0", upgradableFrom: [v1])
    var upgraded: [Nest_Entitlement_V1_ServiceInstance] = []
    for id in instances {
      upgraded.append(try await Self.instance(marketplace, id) { $0.versionID == v2.id })
    }
    #expect(upgraded.allSatisfy { $0.versionID == v2.id && $0.upgrades.last?.requestedBy == "auto-upgrade" })
    // One at a time: no two upgrades of the service overlap.
    let spans = upgraded.compactMap { $0.upgrades.last }.map { ($0.startedAtUnixMs, $0.endedAtUnixMs) }.sorted {
      $0.0 < $1.0
    }
    for (earlier, later) in zip(spans, spans.dropFirst()) {
      #expect(earlier.1 <= later.0, "upgrades overlap: \(spans)")
    }

    // v3: the provider now fails upgrades. The first automatic upgrade fails; the others
    // are not attempted.
    provider.stop()
    let failing = try await Receiver(
      directory, "provider", port: provider.port, extra: ["--provider", "--fail-actions", "upgrade"])
    defer { failing.stop() }
    let v3 = try await marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "3.0", upgradableFrom: [v2.id])
    let first = try await Self.instance(marketplace, instances[0]) {
      $0.upgrades.last?.toVersionID == v3.id && $0.upgradeStatus == .upgradeFailed
    }
    #expect(first.upgradeStatus == .upgradeFailed && first.versionID == v2.id)
    // A round of the driver after the failure has run once the others are marked upgradable
    // to a newer version: by then nobody else was tried to v3.
    let v4 = try await marketplace.publishVersion(
      .isv, parties.isv, service: setup.a, label: "4.0", upgradableFrom: [v2.id])
    _ = try await Self.instance(marketplace, instances[2]) { $0.upgradableToVersionID == v4.id }
    for id in instances.dropFirst() {
      let other = try await marketplace.instance(id)
      #expect(other.versionID == v2.id && other.upgrades.allSatisfy { $0.toVersionID != v3.id }, "\(other.upgrades)")
      #expect(other.upgradableToVersionID == v4.id)
    }
    await platform.stop()
  }
}

/// A direct sale of a fully managed A whose ISV fulfils its instances through a provider
/// (webhook_receiver.py --provider, in `mode` with `extra` flags), on the five services as
/// processes.
struct ProvidedSale {
  let directory: URL
  let provider: Receiver
  let platform: NestTestPlatform
  let parties: ScenarioParties
  let setup: ScenarioSetup

  static func start(run: String, mode: String = "ok", extra: [String] = []) async throws -> ProvidedSale {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("provider-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let provider = try await Receiver(directory, "provider", mode: mode, extra: extra + ["--provider"])
    let platform = try await NestTestPlatform.start(.processes(), settings: UpgradeTests.settings)
    let parties = ScenarioParties(.direct, run: run)
    let setup = try await platform.marketplace.setUp(.direct, parties: parties)
    let secret = try await platform.marketplace.setFulfilmentEndpoint(
      .isv, parties.isv, service: setup.a.id, url: provider.url("/a"))
    try Receiver.register(secret, at: "/a", in: provider.secrets)
    return ProvidedSale(directory: directory, provider: provider, platform: platform, parties: parties, setup: setup)
  }

  /// `customer`'s instance, bought, paid and DEPLOYED by the provider.
  func buy(_ customer: String) async throws -> Nest_Entitlement_V1_ServiceInstance {
    let marketplace = self.platform.marketplace
    let order = try await marketplace.buy(customer, product: self.setup.productID)
    _ = try await marketplace.waitForOrder(order.id)
    return try await UpgradeTests.instance(marketplace, try await marketplace.instance(of: order).id) {
      $0.status == .deployed
    }
  }

  /// The provider stopped and its files removed (the platform is stopped by the test).
  func close() {
    self.provider.stop()
    try? FileManager.default.removeItem(at: self.directory)
  }
}
