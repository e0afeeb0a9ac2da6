import Entitlement
import GRPCCore
import NestAuth
import NestDomain
import NestProto
import NestServiceKit
import NestTransport
import Testing

typealias DeploymentStatus = Nest_Entitlement_V1_DeploymentStatus

@Suite("Instance and permission rules")
struct InstanceRulesTests {
  /// The allowed transitions, written out; every other (state, action) pair must be refused.
  static let allowed: [String: DeploymentStatus] = [
    "created/startDeploying": .deploying, "deploying/finishDeploying": .deployed,
    "deploying/failDeploying": .deployFailed, "deployed/suspend": .suspended, "suspended/resume": .deployed,
    "deployed/renew": .deployed, "expired/renew": .deployed, "suspended/renew": .suspended,
    "created/renew": .created, "deploying/renew": .deploying, "deployed/expire": .expired, "suspended/expire": .expired,
    "created/release": .released, "deploying/release": .released, "deployed/release": .released,
    "deployFailed/release": .released, "suspended/release": .released, "expired/release": .released,
    "released/release": .released,
  ]

  @Test("every action from every deployment state: allowed exactly where the table says")
  func transitions() {
    let states: [DeploymentStatus] = [.created, .deploying, .deployed, .deployFailed, .suspended, .expired, .released]
    var checked = 0
    for state in states {
      for action in InstanceAction.allCases {
        let key = "\(state)/\(action.rawValue)"
        do {
          let next = try InstanceRules.transition(from: state, action)
          #expect(Self.allowed[key] == next, "\(key) gave \(next)")
        } catch {
          #expect(Self.allowed[key] == nil, "\(key) was refused: \(error)")
          #expect(error.code == .failedPrecondition, "\(key)")
        }
        checked += 1
      }
    }
    #expect(checked == 56)
  }

  @Test("a term counts whole periods from now; ONE_TIME never expires; bad terms name the field")
  func expiry() throws {
    let day: Int64 = 86_400_000
    func request(_ period: Nest_Common_V1_BillingPeriod, _ periods: Int32)
      -> Nest_Entitlement_V1_CreateServiceInstanceRequest
    {
      .with {
        $0.expiry = .term(
          .with {
            $0.billingPeriod = period
            $0.periods = periods
          })
      }
    }
    #expect(try InstanceRules.expiry(of: request(.month, 2), nowUnixMs: 1_000).expiresAtUnixMs == 1_000 + 60 * day)
    #expect(try InstanceRules.expiry(of: request(.year, 1), nowUnixMs: 0).expiresAtUnixMs == 365 * day)
    #expect(try InstanceRules.expiry(of: request(.oneTime, 1), nowUnixMs: 5).expiresAtUnixMs == 0)
    for (bad, field) in [
      (request(.month, 0), "term.periods"), (request(.oneTime, 2), "term.periods"),
      (request(.unspecified, 1), "term.billing_period"),
      (Nest_Entitlement_V1_CreateServiceInstanceRequest(), "expiry"),
      (.with { $0.expiry = .expiresAtUnixMs(10) }, "expires_at_unix_ms"),
    ] {
      #expect(throws: DomainError.self) {
        do {
          _ = try InstanceRules.expiry(of: bad, nowUnixMs: 100)
        } catch let error as DomainError {
          #expect(error.violations.map(\.field) == [field])
          throw error
        }
      }
    }
  }

  @Test("renewal extends from the later of the expiry and now")
  func renewal() throws {
    let day: Int64 = 86_400_000
    let instance = Nest_Entitlement_V1_ServiceInstance.with {
      $0.billingPeriod = .month
      $0.expiresAtUnixMs = 10 * day
    }
    #expect(try InstanceRules.renewedExpiry(instance, .periods(1), nowUnixMs: day) == 40 * day)
    #expect(try InstanceRules.renewedExpiry(instance, .periods(1), nowUnixMs: 20 * day) == 50 * day)
    #expect(try InstanceRules.renewedExpiry(instance, .newExpiresAtUnixMs(11 * day), nowUnixMs: day) == 11 * day)
    #expect(throws: DomainError.self) {
      try InstanceRules.renewedExpiry(instance, .newExpiresAtUnixMs(9 * day), nowUnixMs: day)
    }
    #expect(throws: DomainError.self) { try InstanceRules.renewedExpiry(instance, .periods(0), nowUnixMs: day) }
    #expect(throws: DomainError.self) { try InstanceRules.renewedExpiry(instance, nil, nowUnixMs: day) }
    var oneTime = instance
    oneTime.expiresAtUnixMs = 0
    #expect(throws: DomainError.self) { try InstanceRules.renewedExpiry(oneTime, .periods(1), nowUnixMs: day) }
    #expect(InstanceRules.effectiveStatus(.deployed, expiresAtUnixMs: 10, nowUnixMs: 10) == .expired)
    #expect(InstanceRules.effectiveStatus(.suspended, expiresAtUnixMs: 10, nowUnixMs: 10) == .suspended)
    #expect(InstanceRules.effectiveStatus(.deployed, expiresAtUnixMs: 0, nowUnixMs: .max) == .deployed)
  }

  @Test("who sees and who operates an instance: its parties see it, its resource owner operates it, the platform both")
  func parties() throws {
    let instance = Nest_Entitlement_V1_ServiceInstance.with {
      $0.customerID = "c"
      $0.distributorID = "d"
      $0.isvID = "i"
      $0.resourceOwner = .with {
        $0.role = .distributor
        $0.accountID = "d"
      }
    }
    let roles: [(Nest_Common_V1_Role, String, Bool, Bool)] = [
      (.customer, "c", true, false), (.customer, "x", false, false), (.distributor, "d", true, true),
      (.distributor, "x", false, false), (.isv, "i", true, false), (.isv, "d", false, false),
      (.operator, "o", true, true), (.service, "s", true, true),
    ]
    for (role, subject, sees, operates) in roles {
      let caller = Principal(subject: subject, role: role)
      func allowed(_ relation: Relation) -> Bool {
        let access = Access(caller: caller, declaration: .with { $0.relation = relation })
        return (try? access.authorize(instance, notFound: .notFound("instance", "i", field: "instance_id"))) != nil
      }
      #expect(allowed(.party) == sees, "\(role) \(subject)")
      #expect(allowed(.resourceOwner) == operates, "\(role) \(subject)")
    }
  }

  @Test("permission requests: validation, approval within the asked duration, denial with a reason, expiry")
  func permissions() throws {
    #expect(throws: DomainError.self) {
      do {
        try PermissionRules.check(.with { $0.requestedDurationSeconds = 2_592_001 })
      } catch let error as DomainError {
        #expect(
          Set(error.violations.map(\.field)) == [
            "instance_id", "operation", "reason", "requested_duration_seconds",
          ])
        throw error
      }
    }
    let pending = Nest_Entitlement_V1_PermissionRequest.with {
      $0.status = .pending
      $0.requestedDurationSeconds = 3_600
      $0.createdAtUnixMs = 0
    }
    let approved = try PermissionRules.decide(
      pending, .with { $0.decision = .approve }, decidedBy: "owner", nowUnixMs: 1_000)
    #expect(approved.status == .approved)
    #expect(approved.grantedDurationSeconds == 3_600)
    #expect(approved.grantExpiresAtUnixMs == 1_000 + 3_600_000)
    #expect(PermissionRules.effectiveStatus(approved, nowUnixMs: 1_000 + 3_600_000) == .expired)
    let shorter = try PermissionRules.decide(
      pending,
      .with {
        $0.decision = .approve
        $0.grantedDurationSeconds = 60
      }, decidedBy: "owner", nowUnixMs: 0)
    #expect(shorter.grantExpiresAtUnixMs == 60_000)
    for bad: Nest_Entitlement_V1_DecidePermissionRequestRequest in [
      .with {
        $0.decision = .approve
        $0.grantedDurationSeconds = 3_601
      },
      .with { $0.decision = .deny },
      Nest_Entitlement_V1_DecidePermissionRequestRequest(),
    ] {
      #expect(throws: DomainError.self) { try PermissionRules.decide(pending, bad, decidedBy: "o", nowUnixMs: 0) }
    }
    let denied = try PermissionRules.decide(
      pending,
      .with {
        $0.decision = .deny
        $0.reason = "not during the freeze"
      }, decidedBy: "owner", nowUnixMs: 0)
    #expect(denied.status == .denied)
    // Decided once; and a pending request past its window can no longer be decided.
    #expect(throws: DomainError.self) {
      try PermissionRules.decide(denied, .with { $0.decision = .approve }, decidedBy: "o", nowUnixMs: 0)
    }
    #expect(throws: DomainError.self) {
      try PermissionRules.decide(
        pending, .with { $0.decision = .approve }, decidedBy: "o", nowUnixMs: PermissionRules.decisionWindowMs)
    }
  }
}
