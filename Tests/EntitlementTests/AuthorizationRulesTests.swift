import Entitlement
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTransport
import Testing

typealias Status = Nest_Entitlement_V1_DistributionAuthorizationStatus

/// The allowed transitions, written out; every other (state, action) pair must be refused.
let allowed: [String: Status] = [
  "absent/apply": .pending, "rejected/apply": .pending, "revoked/apply": .pending, "expired/apply": .pending,
  "absent/grant": .active, "pending/grant": .active, "rejected/grant": .active, "revoked/grant": .active,
  "expired/grant": .active,
  "pending/approve": .active, "pending/reject": .rejected, "active/revoke": .revoked, "active/expire": .expired,
]

@Suite("Authorization rules")
struct AuthorizationRulesTests {
  @Test("every action from every state: allowed exactly where the table says")
  func transitions() {
    let states: [Status?] = [nil, .pending, .active, .rejected, .revoked, .expired]
    var checked = 0
    for state in states {
      for action in AuthorizationAction.allCases {
        let key = "\(state.map { "\($0)" } ?? "absent")/\(action.rawValue)"
        do {
          let next = try AuthorizationRules.transition(from: state, action)
          #expect(allowed[key] == next, "\(key) gave \(next)")
        } catch {
          #expect(allowed[key] == nil, "\(key) was refused: \(error)")
          let expectedCode: DomainError.Code = key == "pending/apply" ? .alreadyExists : .failedPrecondition
          #expect(error.code == expectedCode, "\(key)")
        }
        checked += 1
      }
    }
    #expect(checked == 36)
  }

  @Test("an ACTIVE authorization past valid_until is EXPIRED and no longer sellable")
  func expiry() throws {
    #expect(AuthorizationRules.effectiveStatus(.active, validUntilUnixMs: 1_000, nowUnixMs: 999) == .active)
    #expect(AuthorizationRules.effectiveStatus(.active, validUntilUnixMs: 1_000, nowUnixMs: 1_000) == .expired)
    #expect(AuthorizationRules.effectiveStatus(.active, validUntilUnixMs: 0, nowUnixMs: .max) == .active)
    let authorization = Nest_Entitlement_V1_DistributionAuthorization.with {
      $0.status = .active
      $0.terms = .with { $0.validUntilUnixMs = 1_000 }
    }
    try AuthorizationRules.checkSellable(authorization, nowUnixMs: 500)
    #expect(throws: DomainError.self) { try AuthorizationRules.checkSellable(authorization, nowUnixMs: 2_000) }
    #expect(throws: DomainError.self) { try AuthorizationRules.checkSellable(nil, nowUnixMs: 0) }
    var revoked = authorization
    revoked.status = .revoked
    #expect(throws: DomainError.self) { try AuthorizationRules.checkSellable(revoked, nowUnixMs: 500) }
  }

  @Test("terms: a valid wholesale price, a future end, no negative instance limit")
  func terms() throws {
    let good = Nest_Entitlement_V1_DistributionTerms.with {
      $0.wholesalePrice = .with {
        $0.currency = "USD"
        $0.amountMinor = 1_000
      }
      $0.validUntilUnixMs = 10_000
      $0.maxInstances = 5
    }
    try AuthorizationRules.checkTerms(good, nowUnixMs: 1)
    var bad = good
    bad.wholesalePrice?.amountMinor = -1
    bad.validUntilUnixMs = 1
    bad.maxInstances = -3
    do {
      try AuthorizationRules.checkTerms(bad, nowUnixMs: 5)
      Issue.record("bad terms accepted")
    } catch {
      #expect(
        error.violations.map(\.field) == [
          "terms.wholesale_price.amount_minor", "terms.valid_until_unix_ms", "terms.max_instances",
        ])
    }
  }
}

@Suite("Instance ownership")
struct InstanceOwnershipTests {
  @Test(
    "per scenario: the customer's own resources, or the distributor's, or the ISV's",
    arguments: [
      (Nest_Common_V1_Scenario.scenario1, Nest_Common_V1_Role.customer, "cust-9"),
      (.scenario2, .distributor, "dist-1"),
      (.scenario3, .isv, "isv-1"),
      (.scenario4, .isv, "isv-1"),
    ])
  func ownership(_ scenario: Nest_Common_V1_Scenario, _ role: Nest_Common_V1_Role, _ account: String) {
    let party = Nest_Common_V1_Party.with {
      $0.role = role
      $0.accountID = role == .customer ? "" : account
    }
    let resolution = Nest_Common_V1_ScenarioResolution.with {
      $0.scenario = scenario
      $0.resourceOwner = party
      $0.feePayer = party
      $0.accessMode = role == .customer ? .resources : .logonURL
    }
    let ownership = InstanceOwnership(resolution: resolution, customerID: "cust-9")
    #expect(
      ownership.resourceOwner
        == .with {
          $0.role = role; $0.accountID = account
        })
    #expect(ownership.feePayer == ownership.resourceOwner)
    #expect(ownership.accessMode == (role == .customer ? .resources : .logonURL))
  }
}

@Suite("Licenses")
struct LicenseTests {
  let payload = Nest_Entitlement_V1_LicensePayload.with {
    $0.licenseID = "lic-1"
    $0.instanceID = "inst-1"
    $0.customerID = "cust-1"
    $0.serviceID = "svc-b"
    $0.quantity = 3
    $0.issuedAtUnixMs = 1_000
    $0.expiresAtUnixMs = 100_000
  }

  @Test("a signed license verifies offline with only the published key, until it expires")
  func valid() throws {
    let signer = try LicenseSigner.generate(keyID: "k1")
    let license = try signer.sign(self.payload)
    let published = signer.publicKey
    #expect(published.algorithm == "Ed25519")
    let (status, decoded) = LicenseVerifier.check(license, with: published, nowUnixMs: 50_000)
    #expect(status == .valid)
    #expect(decoded == self.payload)
    #expect(LicenseVerifier.check(license, with: published, nowUnixMs: 100_000).0 == .expired)
  }

  @Test("a tampered payload, a forged signature or another key is BAD_SIGNATURE")
  func tampered() throws {
    let signer = try LicenseSigner.generate(keyID: "k1")
    let license = try signer.sign(self.payload)
    var morePayload = license
    var richer = self.payload
    richer.quantity = 300
    morePayload.payload = try richer.serializedBytes()
    #expect(LicenseVerifier.check(morePayload, with: signer.publicKey, nowUnixMs: 0).0 == .badSignature)
    var forged = license
    forged.signature[0] ^= 0xff
    #expect(LicenseVerifier.check(forged, with: signer.publicKey, nowUnixMs: 0).0 == .badSignature)
    let other = try LicenseSigner.generate(keyID: "k1")
    #expect(LicenseVerifier.check(license, with: other.publicKey, nowUnixMs: 0).0 == .badSignature)
    // A signer restored from its raw key signs what the first one verifies.
    let restored = try LicenseSigner(rawPrivateKey: signer.rawPrivateKey, keyID: "k1")
    #expect(LicenseVerifier.check(try restored.sign(self.payload), with: signer.publicKey, nowUnixMs: 0).0 == .valid)
  }
}
