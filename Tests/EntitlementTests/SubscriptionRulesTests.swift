// The subscription state machine, every (status, event) pair; what a renewal and a change do
// to a subscription; when the term driver acts.
import Entitlement
import NestDomain
import NestProto
import Testing

@Suite("Subscription rules")
struct SubscriptionRulesTests {
  /// The allowed transitions, written out; every other (status, event) pair must be refused.
  static let allowed: [String: SubscriptionStatus] = [
    "trial/renewalPlaced": .renewing, "active/renewalPlaced": .renewing, "renewFailed/renewalPlaced": .renewing,
    "renewing/renewalPlaced": .renewing,
    "renewing/renewalFailed": .renewFailed, "trial/renewalFailed": .renewFailed, "active/renewalFailed": .renewFailed,
    "renewFailed/renewalFailed": .renewFailed,
    "trial/renewed": .active, "active/renewed": .active, "renewing/renewed": .active, "renewFailed/renewed": .active,
    "expired/renewed": .active,
    "trial/expire": .expired, "active/expire": .expired, "renewing/expire": .expired, "renewFailed/expire": .expired,
    "trial/release": .ended, "active/release": .ended, "renewing/release": .ended, "renewFailed/release": .ended,
    "expired/release": .ended, "ended/release": .ended,
  ]

  @Test("every event from every subscription status: allowed exactly where the table says")
  func transitions() {
    let statuses: [SubscriptionStatus] = [.trial, .active, .renewing, .renewFailed, .expired, .ended]
    var checked = 0
    for status in statuses {
      for event in SubscriptionEvent.allCases {
        let key = "\(status)/\(event.rawValue)"
        do {
          let next = try SubscriptionRules.transition(from: status, event)
          #expect(Self.allowed[key] == next, "\(key) gave \(next)")
        } catch {
          #expect(Self.allowed[key] == nil, "\(key) was refused: \(error)")
          #expect(error.code == .failedPrecondition, "\(key)")
        }
        checked += 1
      }
    }
    #expect(checked == 30)
  }

  static let day: Int64 = 24 * 3600 * 1000

  func instance(
    status: Nest_Entitlement_V1_DeploymentStatus = .deployed, subscription: SubscriptionStatus = .active,
    autoRenew: Bool = true, end: Int64 = 30 * day
  ) -> Nest_Entitlement_V1_ServiceInstance {
    .with {
      $0.id = "i"
      $0.status = status
      $0.quantity = 1
      $0.expiresAtUnixMs = end
      $0.subscription = .with {
        $0.plan = .with {
          $0.planID = "monthly"
          $0.billingPeriod = .month
        }
        $0.status = subscription
        $0.autoRenew = autoRenew
        $0.orderIds = ["o1"]
      }
    }
  }

  @Test("the driver: renewal from the lead time until the end, expiry at the end, release after the grace period")
  func due() {
    let lead = 3 * Self.day
    let grace = 7 * Self.day
    let end = 30 * Self.day
    func due(_ instance: Nest_Entitlement_V1_ServiceInstance, _ now: Int64) -> SubscriptionRules.Due? {
      SubscriptionRules.due(instance, now: now, lead: lead, grace: grace)
    }
    #expect(due(instance(), end - lead - 1) == nil)
    #expect(due(instance(), end - lead) == .placeRenewal)
    #expect(due(instance(subscription: .renewing), end - 1) == .placeRenewal)
    #expect(due(instance(subscription: .renewFailed), end - 1) == .placeRenewal)
    #expect(due(instance(autoRenew: false), end - 1) == nil)
    #expect(due(instance(), end) == .expire)
    #expect(due(instance(status: .suspended), end) == .expire)
    #expect(due(instance(status: .expired, subscription: .expired), end + grace - 1) == nil)
    #expect(due(instance(status: .expired, subscription: .expired), end + grace) == .release)
    #expect(due(instance(status: .released, subscription: .ended), end + grace) == nil)
    #expect(due(instance(end: 0), 100 * Self.day) == nil)  // ONE_TIME: no term
  }

  @Test("a renewal: a new term on the pending plan, the trial over, applied once per order")
  func renew() throws {
    var subscription = instance(subscription: .trial).subscription ?? .init()
    subscription.trial = true
    subscription.pendingChange = .with {
      $0.plan = .with { $0.planID = "basic" }
      $0.quantity = 3
    }
    let quantity = try SubscriptionRules.renew(
      &subscription, orderID: "o2", plan: .with { $0.planID = "basic" }, quantity: 3, currentQuantity: 1,
      termStart: 30 * Self.day)
    #expect(quantity == 3)
    #expect(subscription.status == .active)
    #expect(subscription.plan?.planID == "basic")
    #expect(subscription.pendingChange == nil)
    #expect(subscription.trial == false)
    #expect(subscription.termStartedAtUnixMs == 30 * Self.day)
    #expect(SubscriptionRules.applied("o2", to: subscription))
    #expect(!SubscriptionRules.applied("o3", to: subscription))
  }

  @Test("a change applies to the instance it was priced against, else ABORTED; a downgrade waits")
  func change() throws {
    let current = instance()
    var request = Nest_Entitlement_V1_ChangeServiceInstanceRequest.with {
      $0.instanceID = "i"
      $0.orderID = "o9"
      $0.plan = .with { $0.planID = "pro" }
      $0.quantity = 2
      $0.immediate = true
      $0.expectedPlanID = "monthly"
      $0.expectedQuantity = 1
      $0.expectedExpiresAtUnixMs = 30 * Self.day
    }
    let now = try SubscriptionRules.change(current, request, now: 1)
    #expect(now.quantity == 2)
    #expect(now.subscription.plan?.planID == "pro")
    request.immediate = false
    let later = try SubscriptionRules.change(current, request, now: 1)
    #expect(later.quantity == nil)
    #expect(later.subscription.plan?.planID == "monthly")
    #expect(later.subscription.pendingChange?.plan?.planID == "pro")
    request.expectedExpiresAtUnixMs = 60 * Self.day  // a renewal came first
    #expect(throws: DomainError.self) { try SubscriptionRules.change(current, request, now: 1) }
    do {
      _ = try SubscriptionRules.change(current, request, now: 1)
    } catch {
      #expect(error.code == .aborted)
    }
    request.expectedExpiresAtUnixMs = 30 * Self.day
    do {
      _ = try SubscriptionRules.change(instance(status: .released, subscription: .ended), request, now: 1)
      Issue.record("a released instance changed plan")
    } catch {
      #expect(error.code == .failedPrecondition)
    }
  }
}
