// Fulfilment through the provider, its pure rules: whose endpoint, which changes are told and
// under which key, the body a provider gets, and what its answer may carry.
import Entitlement
import Foundation
import NestDomain
import NestProto
import Testing

@Suite("Fulfilment rules")
struct FulfilmentRulesTests {
  typealias Instance = Nest_Entitlement_V1_ServiceInstance

  static func instance(owner: Nest_Common_V1_Role, mode: Nest_Common_V1_AccessMode = .logonURL) -> Instance {
    .with {
      $0.id = "inst-1"
      $0.serviceID = "svc-b"
      $0.baseServiceID = "svc-a"
      $0.customerID = "cust-1"
      $0.accessMode = mode
      $0.resourceOwner = .with {
        $0.role = owner
        $0.accountID = owner == .isv ? "isv-1" : "dist-1"
      }
      $0.status = .deployed
      $0.expiresAtUnixMs = 1_000
      $0.authorizationID = "auth-1"
    }
  }

  @Test(
    "the provider is the resources' owner: the distributor's B in scenario 2, the ISV's A otherwise; none for a private instance"
  )
  func provider() {
    #expect(FulfilmentRules.provider(of: Self.instance(owner: .distributor))?.serviceID == "svc-b")
    #expect(FulfilmentRules.provider(of: Self.instance(owner: .isv))?.serviceID == "svc-a")
    #expect(FulfilmentRules.provider(of: Self.instance(owner: .customer, mode: .resources)) == nil)
    var direct = Self.instance(owner: .isv)
    direct.baseServiceID = ""
    #expect(FulfilmentRules.provider(of: direct)?.serviceID == "svc-b")
  }

  @Test("each change is one action under a key that names it: renew by its new end, the others by the history step")
  func calls() {
    let before = Self.instance(owner: .isv)
    func after(_ change: (inout Instance) -> Void) -> [String] {
      var after = before
      change(&after)
      return FulfilmentRules.calls(before: before, after: after).map { "\($0.action.rawValue) \($0.key)" }
    }
    #expect(after { $0.expiresAtUnixMs = 2_000 } == ["renew inst-1/renew/2000"])
    #expect(
      after {
        $0.status = .suspended
        $0.history = [.init(), .init()]
      } == ["suspend inst-1/suspend/2"])
    #expect(after { $0.status = .expired } == ["expire inst-1/expire/0"])
    #expect(after { $0.status = .released } == ["release inst-1/release/0"])
    #expect(after { $0.parameters = ["a": "b"] } == [])
    var suspended = before
    suspended.status = .suspended
    var resumed = suspended
    resumed.status = .deployed
    #expect(FulfilmentRules.calls(before: suspended, after: resumed).map(\.action) == [.resume])
    // A renewal that also ends it (released at once) tells the release only.
    #expect(
      after {
        $0.expiresAtUnixMs = 2_000
        $0.status = .released
      } == ["release inst-1/release/0"])
  }

  @Test(
    "another plan or quantity in effect is a change, keyed by the order that made it; a change waiting for renewal is not"
  )
  func change() {
    func subscription(plan: String, orders: [String], pending: Bool = false) -> Nest_Entitlement_V1_Subscription {
      .with {
        $0.plan = .with {
          $0.productID = "prod-b"
          $0.planID = plan
        }
        $0.orderIds = orders
        if pending { $0.pendingChange = .with { $0.quantity = 1 } }
      }
    }
    var before = Self.instance(owner: .isv)
    before.quantity = 1
    before.subscription = subscription(plan: "monthly", orders: ["ord-1"])
    func calls(_ change: (inout Instance) -> Void) -> [String] {
      var after = before
      change(&after)
      return FulfilmentRules.calls(before: before, after: after).map { "\($0.action.rawValue) \($0.key)" }
    }
    #expect(
      calls {
        $0.quantity = 3
        $0.subscription = subscription(plan: "monthly", orders: ["ord-1", "ord-2"])
      } == ["change inst-1/change/ord-2"])
    #expect(
      calls { $0.subscription = subscription(plan: "pro", orders: ["ord-1", "ord-2"]) } == [
        "change inst-1/change/ord-2"
      ])
    // A downgrade waits for the renewal: nothing in effect changed yet.
    #expect(calls { $0.subscription = subscription(plan: "monthly", orders: ["ord-1", "ord-2"], pending: true) } == [])
    // The renewal that applies it: renewed, then changed, under the renewal's order.
    #expect(
      calls {
        $0.expiresAtUnixMs = 2_000
        $0.subscription = subscription(plan: "basic", orders: ["ord-1", "ord-2", "ord-3"])
      } == ["renew inst-1/renew/2000", "change inst-1/change/ord-3"])
    #expect(
      calls {
        $0.quantity = 3
        $0.status = .released
      } == ["release inst-1/release/0"])
  }

  @Test("the body is the action and the instance as proto3 JSON, as the provider may read it")
  func body() throws {
    let body = try FulfilmentRules.body(.create, instance: Self.instance(owner: .isv), provider: .isv)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    #expect(object["action"] as? String == "create")
    let instance = try #require(object["instance"] as? [String: Any])
    #expect(instance["id"] as? String == "inst-1")
    #expect(instance["expiresAtUnixMs"] as? String == "1000")
  }

  @Test("an answer may carry a logon URL and facts; anything else is refused with why")
  func answer() throws {
    func parse(_ text: String) throws(DomainError) -> (logonURL: String?, facts: [String: String]) {
      try FulfilmentRules.answer(Array(text.utf8))
    }
    let full = try parse(#"{"logon_url": "https://p.example/i", "facts": {"admin": "root"}}"#)
    #expect(full.logonURL == "https://p.example/i" && full.facts == ["admin": "root"])
    let empty = try parse("  ")
    #expect(empty.logonURL == nil && empty.facts.isEmpty)
    #expect(try parse("{}").logonURL == nil)
    for bad in [
      "[1]", "not json", #"{"logon_url": "ftp://p.example/i"}"#, #"{"logon_url": 7}"#, #"{"facts": {"a": 1}}"#,
      #"{"facts": []}"#,
    ] {
      #expect(throws: DomainError.self, "\(bad)") { try parse(bad) }
    }
    let many = "{\"facts\": {" + (0...32).map { "\"k\($0)\": \"v\"" }.joined(separator: ",") + "}}"
    #expect(throws: DomainError.self) { try parse(many) }
  }
}
