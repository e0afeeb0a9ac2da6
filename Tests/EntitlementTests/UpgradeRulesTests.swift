// Versions that move, their pure rules: which version an instance can upgrade to, what an
// upgrade or a rollback would change and when it may not happen, an upgrade's life and its
// events, the maintenance window, and B against its base.
import Catalog
import Entitlement
import NestDomain
import NestProto
import Testing

@Suite("Upgrade rules")
struct UpgradeRulesTests {
  typealias Version = Nest_Catalog_V1_ServiceVersion
  typealias Instance = Nest_Entitlement_V1_ServiceInstance

  static func version(
    _ id: String, number: Int32, from: [String] = [], status: Nest_Catalog_V1_ServiceVersionStatus = .published,
    region: String = "eu-1", set: String = "standard", rollback: Bool = true, security: Bool = false
  ) -> Version {
    .with {
      $0.id = id
      $0.serviceID = "svc-b"
      $0.number = number
      $0.status = status
      $0.upgradableFromVersionIds = from
      $0.supportsRollback = rollback
      $0.securityRelease = security
      $0.parameterSets = [
        .with {
          $0.name = set
          $0.parameters = ["region": region]
        }
      ]
    }
  }

  static let v1 = version("v1", number: 1)
  static let v2 = version("v2", number: 2, from: ["v1"], region: "eu-2", security: true)

  static func instance(mode: Nest_Common_V1_AccessMode = .resources) -> Instance {
    .with {
      $0.id = "inst-1"
      $0.serviceID = "svc-b"
      $0.versionID = "v1"
      $0.status = .deployed
      $0.accessMode = mode
      $0.parameterSetName = "standard"
      $0.parameters = ["region": "eu-1"]
    }
  }

  static func service(default id: String, _ versions: [Version]) -> Nest_Catalog_V1_GetServiceResponse {
    .with {
      $0.service = .with {
        $0.id = "svc-b"
        $0.defaultVersionID = id
      }
      $0.versions = versions
    }
  }

  @Test("an instance is upgradable to the service's default version when that version names the instance's")
  func upgradable() {
    #expect(UpgradeRules.upgradableTarget(from: "v1", in: Self.service(default: "v2", [Self.v1, Self.v2]))?.id == "v2")
    #expect(UpgradeRules.upgradableTarget(from: "v2", in: Self.service(default: "v2", [Self.v1, Self.v2])) == nil)
    let unrelated = Self.version("v3", number: 3, from: ["v2"])
    #expect(UpgradeRules.upgradableTarget(from: "v1", in: Self.service(default: "v3", [Self.v1, unrelated])) == nil)
    var instance = Self.instance()
    #expect(UpgradeRules.markUpgradable(&instance, Self.v2))
    #expect(instance.upgradableToVersionID == "v2" && instance.upgradableSecurityRelease)
    #expect(!UpgradeRules.markUpgradable(&instance, Self.v2))
  }

  @Test("a plan says what changes; the path, the status and the parameter set are checked")
  func plan() throws {
    let (plan, parameters) = try UpgradeRules.plan(Self.instance(), to: Self.v2, setName: "", throughProvider: false)
    #expect(plan.parameterChanges == ["region": "eu-1 -> eu-2"] && plan.priceUnchanged && plan.licenseReissued)
    #expect(plan.securityRelease && !plan.throughProvider && parameters == ["region": "eu-2"])
    func refusal(_ instance: Instance, _ target: Version, set: String = "") -> DomainError? {
      do {
        _ = try UpgradeRules.plan(instance, to: target, setName: set, throughProvider: false)
        return nil
      } catch { return error }
    }
    var suspended = Self.instance()
    suspended.status = .suspended
    #expect(refusal(suspended, Self.v2)?.code == .failedPrecondition)
    var upgrading = Self.instance()
    upgrading.upgradeStatus = .upgrading
    #expect(refusal(upgrading, Self.v2)?.code == .failedPrecondition)
    #expect(refusal(Self.instance(), Self.version("v3", number: 3, from: ["v2"]))?.code == .failedPrecondition)
    #expect(
      refusal(Self.instance(), Self.version("v3", number: 3, from: ["v1"], status: .draft))?.code == .failedPrecondition
    )
    // A target without the instance's parameter set needs one named.
    let renamed = Self.version("v3", number: 3, from: ["v1"], set: "large")
    #expect(refusal(Self.instance(), renamed)?.violations.first?.field == "target_version_id")
    #expect(refusal(Self.instance(), renamed, set: "small")?.violations.first?.field == "parameter_set_name")
    #expect(refusal(Self.instance(), renamed, set: "large") == nil)
  }

  @Test("an upgrade runs UPGRADING -> UPGRADED (the new version) or UPGRADE_FAILED (the old one); a rollback returns")
  func life() throws {
    var instance = Self.instance()
    let (plan, parameters) = try UpgradeRules.plan(instance, to: Self.v2, setName: "", throughProvider: true)
    UpgradeRules.begin(
      &instance, plan, parameters: parameters, kind: .upgrade, id: "u1", requestedBy: "isv-1", reason: "", now: 10)
    #expect(instance.upgradeStatus == .upgrading && instance.versionID == "v1")
    var failed = instance
    #expect(UpgradeRules.fail(&failed, id: "u1", reason: "HTTP 503", now: 20))
    #expect(
      failed.versionID == "v1" && failed.upgradeStatus == .upgradeFailed && failed.upgrades[0].reason == "HTTP 503")
    #expect(!UpgradeRules.fail(&failed, id: "u1", reason: "again", now: 30))
    instance.upgradableToVersionID = "v2"
    #expect(UpgradeRules.finish(&instance, id: "u1", now: 20))
    #expect(
      instance.versionID == "v2" && instance.parameters == ["region": "eu-2"] && instance.upgradableToVersionID == "")
    // Back to v1 with its parameter set.
    let back = try UpgradeRules.rollbackPlan(instance, current: Self.v2, previous: Self.v1, throughProvider: false)
    #expect(back.plan.toVersionID == "v1" && back.parameters == ["region": "eu-1"])
    var noRollback = Self.v2
    noRollback.supportsRollback = false
    #expect(throws: DomainError.self) {
      try UpgradeRules.rollbackPlan(instance, current: noRollback, previous: Self.v1, throughProvider: false)
    }
    #expect(throws: DomainError.self) {
      try UpgradeRules.rollbackPlan(Self.instance(), current: Self.v2, previous: Self.v1, throughProvider: false)
    }
  }

  @Test("each upgrade step is an event to the instance's parties, and so is a version to upgrade to")
  func events() throws {
    let before = Self.instance()
    var after = before
    let (plan, parameters) = try UpgradeRules.plan(before, to: Self.v2, setName: "", throughProvider: true)
    UpgradeRules.begin(
      &after, plan, parameters: parameters, kind: .upgrade, id: "u1", requestedBy: "c", reason: "", now: 1)
    func types(_ from: Instance, _ to: Instance) -> [String] {
      EntitlementEvents.drafts(to, before: from, entered: [], now: 1).map(\.type)
    }
    #expect(types(before, after) == ["instance.upgrading"])
    var done = after
    _ = UpgradeRules.finish(&done, id: "u1", now: 2)
    #expect(types(after, done) == ["instance.upgraded"])
    var failed = after
    _ = UpgradeRules.fail(&failed, id: "u1", reason: "no", now: 2)
    #expect(types(after, failed) == ["instance.upgrade_failed"])
    var marked = before
    _ = UpgradeRules.markUpgradable(&marked, Self.v2)
    #expect(types(before, marked) == ["instance.upgradable"])
    // The provider of an instance it runs is asked to upgrade it, once per upgrade.
    let calls = FulfilmentRules.calls(before: before, after: after)
    #expect(calls.map(\.action) == [.upgrade] && calls.first?.key == "inst-1/upgrade/u1")
    #expect(FulfilmentRules.calls(before: after, after: done).isEmpty)
  }

  @Test("the maintenance window, in UTC, may wrap midnight; a bad one is refused")
  func window() throws {
    let night = try UpgradeRules.window("22:00-04:00")
    let hour: Int64 = 3_600_000
    #expect(UpgradeRules.inWindow(night, nowUnixMs: 23 * hour))
    #expect(UpgradeRules.inWindow(night, nowUnixMs: 24 * hour + 3 * hour))
    #expect(!UpgradeRules.inWindow(night, nowUnixMs: 12 * hour))
    let day = try UpgradeRules.window("00:00-24:00")
    #expect(UpgradeRules.inWindow(day, nowUnixMs: 12 * hour + 59 * 60_000))
    for bad in ["", "2-4", "25:00-01:00", "01:00-01:00", "01:60-02:00"] {
      #expect(throws: DomainError.self, "\(bad)") { try UpgradeRules.window(bad) }
    }
  }

  @Test("automatic upgrades to a version stop once one of the service's instances failed it")
  func halted() {
    var failed = Self.instance()
    failed.upgrades = [
      .with {
        $0.requestedBy = UpgradeRules.automatic
        $0.toVersionID = "v2"
        $0.status = .upgradeFailed
      }
    ]
    #expect(UpgradeRules.halted([Self.instance(), failed], target: "v2"))
    #expect(!UpgradeRules.halted([Self.instance(), failed], target: "v3"))
    failed.upgrades[0].requestedBy = "isv-1"
    #expect(!UpgradeRules.halted([failed], target: "v2"))
  }

  @Test("B is behind when A's default version is newer than B's base, and says whether a security release came between")
  func behind() throws {
    let a = Nest_Catalog_V1_Service.with {
      $0.id = "svc-a"
      $0.defaultVersionID = "a3"
    }
    let versions = [
      Self.version("a1", number: 1), Self.version("a2", number: 2, security: true), Self.version("a3", number: 3),
    ]
    var b = Nest_Catalog_V1_Service.with {
      $0.id = "svc-b"
      $0.baseServiceID = "svc-a"
      $0.baseVersionID = "a1"
    }
    let behind = VersionRules.behind(b, base: a, baseVersions: versions)
    #expect(behind.baseLatestVersionID == "a3" && behind.baseSecurityUpdate)
    b.baseVersionID = "a2"
    let closer = VersionRules.behind(b, base: a, baseVersions: versions)
    #expect(closer.baseLatestVersionID == "a3" && !closer.baseSecurityUpdate)
    b.baseVersionID = "a3"
    #expect(VersionRules.behind(b, base: a, baseVersions: versions).baseLatestVersionID.isEmpty)
    #expect(throws: DomainError.self) { try VersionRules.checkUpgradePaths(["a9"], among: versions) }
    #expect(throws: DomainError.self) { try VersionRules.checkUpgradePaths(["a1", "a1"], among: versions) }
    try VersionRules.checkUpgradePaths(["a1", "a2"], among: versions)
  }
}
