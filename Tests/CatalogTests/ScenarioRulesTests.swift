import Catalog
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTransport
import Testing

private func facts(_ id: String, _ type: Nest_Common_V1_ServiceType, owner: String, listed: Bool = false)
  -> ServiceFacts
{
  ServiceFacts(id: id, type: type, ownerID: owner, listed: listed, versionID: "\(id)-v1")
}

struct Expected: Sendable, CustomTestStringConvertible {
  let aType: Nest_Common_V1_ServiceType
  let aListed: Bool
  let bType: Nest_Common_V1_ServiceType
  /// nil: refused FAILED_PRECONDITION.
  let scenario: Nest_Common_V1_Scenario?
  let owner: Nest_Common_V1_Role?
  let access: Nest_Common_V1_AccessMode?
  let settlement: Nest_Common_V1_SettlementMode?
  var testDescription: String { "A \(aType)\(aListed ? " listed" : ""), B \(bType)" }
}

/// docs/design.md §1's table, row by row, for every combination of the three inputs.
let table: [Expected] = [
  Expected(
    aType: .private, aListed: false, bType: .private, scenario: .scenario1, owner: .customer, access: .resources,
    settlement: .offline),
  Expected(
    aType: .private, aListed: true, bType: .private, scenario: .scenario1, owner: .customer, access: .resources,
    settlement: .offline),
  Expected(
    aType: .private, aListed: false, bType: .fullyManaged, scenario: .scenario2, owner: .distributor, access: .logonURL,
    settlement: .offline),
  Expected(
    aType: .private, aListed: true, bType: .fullyManaged, scenario: .scenario2, owner: .distributor, access: .logonURL,
    settlement: .offline),
  Expected(
    aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3, owner: .isv, access: .logonURL,
    settlement: .online),
  Expected(
    aType: .fullyManaged, aListed: false, bType: .fullyManaged, scenario: .scenario4, owner: .isv, access: .logonURL,
    settlement: .offline),
  Expected(
    aType: .fullyManaged, aListed: true, bType: .private, scenario: nil, owner: nil, access: nil, settlement: nil),
  Expected(
    aType: .fullyManaged, aListed: false, bType: .private, scenario: nil, owner: nil, access: nil, settlement: nil),
]

@Suite("Scenario resolution")
struct ScenarioRulesTests {
  @Test("every (A type, A listed, B type) resolves as the design's table (docs/design.md §1) says", arguments: table)
  func derived(_ row: Expected) throws {
    let a = facts("svc-a", row.aType, owner: "isv-1", listed: row.aListed)
    let b = facts("svc-b", row.bType, owner: "dist-1")
    guard let scenario = row.scenario else {
      #expect(throws: DomainError.self) { _ = try ScenarioRules.resolve(base: a, derived: b) }
      do {
        _ = try ScenarioRules.resolve(base: a, derived: b)
      } catch {
        #expect(error.code == .failedPrecondition)
        #expect(error.violations.map(\.field) == ["type"])
      }
      return
    }
    let resolution = try ScenarioRules.resolve(base: a, derived: b)
    #expect(resolution.scenario == scenario)
    #expect(resolution.resourceOwner?.role == row.owner)
    #expect(resolution.feePayer == resolution.resourceOwner, "the resource owner pays the resource fees")
    #expect(resolution.accessMode == row.access)
    #expect(resolution.settlementMode == row.settlement)
    #expect(resolution.isvID == "isv-1")
    #expect(resolution.distributorID == "dist-1")
    #expect(resolution.serviceID == "svc-b")
    #expect(resolution.baseServiceID == "svc-a")
    let expectedOwnerID = row.owner == .isv ? "isv-1" : row.owner == .distributor ? "dist-1" : ""
    #expect(resolution.resourceOwner?.accountID == expectedOwnerID)
  }

  @Test("a direct sale of a listed A follows A's type; an unlisted A cannot be bought directly")
  func direct() throws {
    let privateA = try ScenarioRules.resolve(base: facts("a", .private, owner: "isv-1", listed: true), derived: nil)
    #expect(privateA.scenario == .direct)
    #expect(privateA.resourceOwner?.role == .customer)
    #expect(privateA.accessMode == .resources)
    #expect(privateA.settlementMode == .online)
    #expect(privateA.distributorID == "")
    let managedA = try ScenarioRules.resolve(
      base: facts("a", .fullyManaged, owner: "isv-1", listed: true), derived: nil)
    #expect(
      managedA.resourceOwner
        == .with {
          $0.role = .isv; $0.accountID = "isv-1"
        })
    #expect(managedA.accessMode == .logonURL)
    #expect(throws: DomainError.self) {
      _ = try ScenarioRules.resolve(base: facts("a", .private, owner: "isv-1", listed: false), derived: nil)
    }
  }
}

@Suite("Catalog rules")
struct CatalogRulesTests {
  @Test("the service lifecycle: publish from any known state, offline only from ONLINE")
  func lifecycle() throws {
    for status in [Nest_Catalog_V1_ServiceStatus.draft, .online, .offline] {
      #expect(try ServiceLifecycleRules.publish(from: status) == .online)
    }
    #expect(try ServiceLifecycleRules.takeOffline(from: .online) == .offline)
    for status in [Nest_Catalog_V1_ServiceStatus.draft, .offline, .unspecified] {
      #expect(throws: DomainError.self) { _ = try ServiceLifecycleRules.takeOffline(from: status) }
    }
    #expect(throws: DomainError.self) { try ServiceLifecycleRules.checkEditable(.published) }
    try ServiceLifecycleRules.checkEditable(.draft)
  }

  func plan(
    _ id: String, _ currency: String, _ amount: Int64, _ period: Nest_Common_V1_BillingPeriod = .month,
    trialDays: UInt32 = 0
  ) -> Nest_Catalog_V1_Plan {
    .with {
      $0.planID = id
      $0.billingPeriod = period
      $0.unitPrice = .with {
        $0.currency = currency
        $0.amountMinor = amount
      }
      $0.trialDays = trialDays
    }
  }

  /// Wholesale 1000 USD per unit, 10000 for a YEAR.
  let terms = Nest_Entitlement_V1_DistributionTerms.with {
    $0.wholesalePrice = MoneyMath.money("USD", 1_000)
    $0.wholesalePrices = [
      .with {
        $0.billingPeriod = .year
        $0.price = MoneyMath.money("USD", 10_000)
      }
    ]
  }

  @Test(
    "plans at or above the wholesale price of their period pass; below it, or in another currency, FAILED_PRECONDITION")
  func wholesale() throws {
    try PlanRules.check(
      [plan("m", "USD", 1_000), plan("y", "USD", 10_000, .year), plan("once", "USD", 1_000, .oneTime)], terms: terms)
    do {
      try PlanRules.check(
        [plan("m", "USD", 999), plan("e", "EUR", 5_000), plan("y", "USD", 9_999, .year)], terms: terms)
      Issue.record("a plan below wholesale was accepted")
    } catch {
      #expect(error.code == .failedPrecondition)
      #expect(
        error.violations.map(\.field) == [
          "plans[0].unit_price.amount_minor", "plans[1].unit_price.currency", "plans[2].unit_price.amount_minor",
        ])
    }
    // A YEAR plan no longer owes twelve MONTH prices: 10000 a year passes where 12 x 1000 would not.
    var deprecatedBelow = plan("old", "USD", 1, .month)
    deprecatedBelow.deprecated = true
    try PlanRules.check([plan("y", "USD", 10_000, .year), deprecatedBelow], terms: terms)
  }

  @Test("a trial is 1 to 30 days, and not on a ONE_TIME plan")
  func trialDays() throws {
    try PlanRules.check([plan("m", "USD", 1, trialDays: 30)], terms: nil)
    do {
      try PlanRules.check(
        [plan("m", "USD", 1, trialDays: 31), plan("o", "USD", 1, .oneTime, trialDays: 7)], terms: nil)
      Issue.record("bad trials were accepted")
    } catch {
      #expect(error.code == .invalidArgument)
      #expect(error.violations.map(\.field) == ["plans[0].trial_days", "plans[1].trial_days"])
    }
  }

  @Test("a plan left out of a later listing stays, deprecated; listing it again revives it")
  func merge() {
    let first = [plan("basic", "USD", 100), plan("pro", "USD", 300)]
    let second = PlanRules.merge(listed: [plan("pro", "USD", 350)], previous: first)
    #expect(second.map(\.planID) == ["pro", "basic"])
    #expect(second.map(\.deprecated) == [false, true])
    #expect(second[0].unitPrice?.amountMinor == 350)
    let third = PlanRules.merge(listed: [plan("basic", "USD", 120)], previous: second)
    #expect(third.map(\.planID) == ["basic", "pro"])
    #expect(third.map(\.deprecated) == [false, true])
  }

  @Test("malformed plans are INVALID_ARGUMENT, naming each field")
  func malformed() {
    var noPeriod = plan("p", "USD", 1)
    noPeriod.billingPeriod = .unspecified
    do {
      try PlanRules.check([plan("", "usd", -1), plan("a", "USD", 5), plan("a", "USD", 5), noPeriod], terms: nil)
      Issue.record("malformed plans were accepted")
    } catch {
      #expect(error.code == .invalidArgument)
      #expect(
        error.violations.map(\.field) == [
          "plans[0].plan_id", "plans[0].unit_price.currency", "plans[0].unit_price.amount_minor",
          "plans[2].plan_id", "plans[3].billing_period",
        ])
    }
    #expect(throws: DomainError.self) { try PlanRules.check([], terms: nil) }
  }

  @Test("a domain error reaches GRPCCore as an RPCError with its violations")
  func rpcError() {
    let error = DomainError.invalid([.init(field: "name", description: "must not be empty")])
    let rpc = RPCError(error)
    #expect(rpc.code == .invalidArgument)
    #expect(rpc.message == "invalid name: must not be empty")
    #expect(rpc.fieldViolations == [.init(field: "name", description: "must not be empty")])
  }
}
