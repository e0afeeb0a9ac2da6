// The entitlement handlers as the parties use them, with the real catalog handlers beside them.
import Catalog
import Entitlement
import Foundation
import GRPCCore
import NestProto
import NestServiceKit
import NestTestKit
import NestTransport
import Testing

@Suite("Entitlement service")
struct EntitlementServiceTests {
  let platform: InProcessPlatform

  init() throws { self.platform = try InProcessPlatform() }

  var entitlement: EntitlementService { self.platform.entitlement }

  @Test("scenario 2: apply, approve, derive, price above wholesale, instance deployed with a logon URL, permissions")
  func scenarioTwo() async throws {
    let a = try await self.platform.publishedBase(isv: "isv-1", type: .private, listed: false)
    let applied = try await acting(.distributor, "dist-1") {
      try await self.entitlement.applyForDistribution(
        request: .with {
          $0.baseServiceID = a.id
          $0.message = "we resell in APAC"
        }, context: handlerContext
      ).authorization!
    }
    #expect(applied.status == .pending)
    #expect(applied.isvID == "isv-1")
    // Without ACTIVE authorization the distributor cannot build B.
    let early = await code {
      _ = try await self.platform.publishedDerived(distributor: "dist-1", base: a.id, type: .fullyManaged, price: 2_000)
    }
    #expect(early == .failedPrecondition)
    let approved = try await acting(.isv, "isv-1") {
      try await self.entitlement.approveDistribution(
        request: .with {
          $0.authorizationID = applied.id
          $0.terms = InProcessPlatform.terms(wholesale: 1_000)
        }, context: handlerContext
      ).authorization!
    }
    #expect(approved.status == .active)
    #expect(approved.history.map(\.status) == ["PENDING", "ACTIVE"])
    // A plan below the wholesale price is refused; at 2,000 it is listed.
    let cheap = await code {
      _ = try await self.platform.publishedDerived(distributor: "dist-1", base: a.id, type: .fullyManaged, price: 999)
    }
    #expect(cheap == .failedPrecondition)
    let b = try await self.platform.publishedDerived(
      distributor: "dist-1", base: a.id, type: .fullyManaged, price: 2_000)
    let request = try await self.platform.instanceRequest(
      order: "order-1", service: b.id, customer: "cust-1", parameterSet: "standard")
    #expect(request.resolution?.scenario == .scenario2)
    let instance = try await self.platform.createInstance(request)
    #expect(instance.status == .created)
    #expect(
      instance.resourceOwner
        == .with {
          $0.role = .distributor; $0.accountID = "dist-1"
        })
    #expect(instance.feePayer == instance.resourceOwner)
    #expect(instance.accessMode == .logonURL)
    guard case .logonURL(let url)? = instance.access else {
      Issue.record("no logon URL")
      return
    }
    #expect(url.hasSuffix(instance.id))
    #expect(instance.parameters == ["tier": "gold"])
    // Redelivery of the same order returns the same instance; a different request is refused.
    #expect(try await self.platform.createInstance(request).id == instance.id)
    var different = request
    different.quantity = 2
    #expect(await code { _ = try await self.platform.createInstance(different) } == .alreadyExists)

    await self.platform.deployments.deployPending()
    let deployed = try await acting(.customer, "cust-1") {
      try await self.entitlement.getServiceInstance(
        request: .with { $0.key = .orderID("order-1") }, context: handlerContext
      )
      .instance!
    }
    #expect(deployed.status == .deployed)
    #expect(deployed.history.map(\.status) == ["CREATED", "DEPLOYING", "DEPLOYED"])

    // The customer asks the distributor (the resource owner) for an operation.
    let asked = try await acting(.customer, "cust-1") {
      try await self.entitlement.requestResourcePermission(
        request: .with {
          $0.instanceID = instance.id
          $0.operation = "ecs:RebootInstance"
          $0.reason = "hung after the upgrade"
          $0.requestedDurationSeconds = 3_600
        }, context: handlerContext
      ).request!
    }
    #expect(asked.status == .pending)
    #expect(asked.owner?.accountID == "dist-1")
    let check = {
      try await acting(.service, "order") {
        try await self.entitlement.checkResourcePermission(
          request: .with {
            $0.instanceID = instance.id
            $0.requesterID = "cust-1"
            $0.operation = "ecs:RebootInstance"
          }, context: handlerContext)
      }
    }
    #expect(try await check().allowed == false)
    let decided = try await acting(.distributor, "dist-1") {
      try await self.entitlement.decidePermissionRequest(
        request: .with {
          $0.requestID = asked.id
          $0.decision = .approve
          $0.grantedDurationSeconds = 600
        }, context: handlerContext
      ).request!
    }
    #expect(decided.status == .approved)
    let granted = try await check()
    #expect(granted.allowed)
    #expect(granted.requestID == asked.id)
    #expect(granted.grantExpiresAtUnixMs == decided.decidedAtUnixMs + 600_000)

    // Revoked: CheckDistribution refuses; the instance keeps running.
    _ = try await acting(.isv, "isv-1") {
      try await self.entitlement.revokeDistribution(
        request: .with {
          $0.authorizationID = applied.id
          $0.reason = "contract ended"
        }, context: handlerContext)
    }
    let refused = await code {
      _ = try await acting(.service, "catalog") {
        try await self.entitlement.checkDistribution(
          request: .with {
            $0.baseServiceID = a.id
            $0.distributorID = "dist-1"
          }, context: handlerContext)
      }
    }
    #expect(refused == .failedPrecondition)
  }

  @Test("a direct sale of a private A: a license that verifies offline and follows the instance's life")
  func licenses() async throws {
    let a = try await self.platform.publishedBase(isv: "isv-1", type: .private)
    let request = try await self.platform.instanceRequest(
      order: "order-9", service: a.id, customer: "cust-1", parameterSet: "small")
    #expect(request.resolution?.scenario == .direct)
    let instance = try await self.platform.createInstance(request)
    #expect(
      instance.resourceOwner
        == .with {
          $0.role = .customer; $0.accountID = "cust-1"
        })
    #expect(instance.accessMode == .resources)
    guard case .license(let license)? = instance.access else {
      Issue.record("no license")
      return
    }
    await self.platform.deployments.deployPending()
    let signed = Nest_Entitlement_V1_SignedLicense.with {
      $0.payload = license.payload
      $0.signature = license.signature
      $0.keyID = license.keyID
    }
    func check(_ license: Nest_Entitlement_V1_CheckLicenseRequest.OneOf_License) async throws
      -> Nest_Entitlement_V1_CheckLicenseResponse
    {
      try await acting(.customer, "cust-1") {
        try await self.entitlement.checkLicense(request: .with { $0.license = license }, context: handlerContext)
      }
    }
    let valid = try await check(.signedLicense(signed))
    #expect(valid.valid)
    #expect(valid.expiresAtUnixMs == instance.expiresAtUnixMs)
    // Offline, with only the published key.
    let (offline, payload) = LicenseVerifier.check(signed, with: valid.signingKey!, nowUnixMs: Clock.nowUnixMs())
    #expect(offline == .valid)
    #expect(payload?.instanceID == instance.id)
    var tampered = signed
    tampered.payload[tampered.payload.count - 1] ^= 1
    #expect(try await check(.signedLicense(tampered)).status == .badSignature)
    #expect(try await check(.licenseID("lic_nope")).status == .unknownLicense)

    // The customer owns the resources, so it may suspend, resume, renew and release.
    let suspended = try await acting(.customer, "cust-1") {
      try await self.entitlement.suspendServiceInstance(
        request: .with {
          $0.instanceID = instance.id; $0.reason = "holiday"
        }, context: handlerContext
      ).instance!
    }
    #expect(suspended.status == .suspended)
    #expect(try await check(.licenseID(license.licenseID)).status == .suspended)
    _ = try await acting(.customer, "cust-1") {
      try await self.entitlement.resumeServiceInstance(
        request: .with { $0.instanceID = instance.id }, context: handlerContext)
    }
    let renewed = try await acting(.customer, "cust-1") {
      try await self.entitlement.renewServiceInstance(
        request: .with {
          $0.instanceID = instance.id
          $0.renewal = .periods(1)
        }, context: handlerContext
      ).instance!
    }
    #expect(renewed.expiresAtUnixMs == instance.expiresAtUnixMs + 30 * 86_400_000)
    guard case .license(let reissued)? = renewed.access else { return }
    #expect(reissued.licenseID == license.licenseID)
    #expect(reissued.expiresAtUnixMs == renewed.expiresAtUnixMs)
    // The old copy is judged by the current license.
    #expect(try await check(.signedLicense(signed)).expiresAtUnixMs == renewed.expiresAtUnixMs)
    _ = try await acting(.service, "order") {
      try await self.entitlement.releaseServiceInstance(
        request: .with {
          $0.instanceID = instance.id; $0.reason = "refund"
        }, context: handlerContext)
    }
    #expect(try await check(.licenseID(license.licenseID)).status == .released)
  }

  @Test("client tokens: a retry gets the first answer, another request with the token is ALREADY_EXISTS")
  func clientTokens() async throws {
    let a = try await self.platform.publishedBase(isv: "isv-1", type: .fullyManaged)
    func apply(_ message: String) async throws -> Nest_Entitlement_V1_DistributionAuthorization {
      try await acting(.distributor, "dist-1") {
        try await self.entitlement.applyForDistribution(
          request: .with {
            $0.clientToken = "apply-1"
            $0.baseServiceID = a.id
            $0.message = message
          }, context: handlerContext
        ).authorization!
      }
    }
    let first = try await apply("hello")
    #expect(try await apply("hello") == first)
    #expect(await code { _ = try await apply("changed") } == .alreadyExists)
    // Without a token the second application is refused by the rules: one pending per pair.
    let again = await code {
      _ = try await acting(.distributor, "dist-1") {
        try await self.entitlement.applyForDistribution(
          request: .with { $0.baseServiceID = a.id }, context: handlerContext)
      }
    }
    #expect(again == .alreadyExists)
  }

  @Test("bad input names each field")
  func validation() async throws {
    let a = try await self.platform.publishedBase(isv: "isv-1", type: .fullyManaged)
    func violations(_ body: () async throws -> Void) async -> [String] {
      do {
        try await body()
        return []
      } catch let error as DomainError {
        return error.violations.map(\.field).sorted()
      } catch let error as RPCError {
        return error.fieldViolations.map(\.field).sorted()
      } catch {
        return ["?"]
      }
    }
    let terms = await violations {
      _ = try await acting(.isv, "isv-1") {
        try await self.entitlement.grantDistribution(
          request: .with {
            $0.baseServiceID = a.id
            $0.distributorID = "dist-1"
            $0.terms = .with {
              $0.wholesalePrice = .with {
                $0.currency = "usd"
                $0.amountMinor = -1
              }
              $0.validUntilUnixMs = 1
              $0.maxInstances = -1
            }
          }, context: handlerContext)
      }
    }
    #expect(
      terms == [
        "terms.max_instances", "terms.valid_until_unix_ms", "terms.wholesale_price.amount_minor",
        "terms.wholesale_price.currency",
      ])
    let page = await violations {
      _ = try await acting(.operator, "op") {
        try await self.entitlement.listServiceInstances(
          request: .with { $0.page = .with { $0.pageSize = 501 } }, context: handlerContext)
      }
    }
    #expect(page == ["page.page_size"])
    let instance = await violations {
      _ = try await self.platform.createInstance(.with { $0.expiry = .expiresAtUnixMs(0) })
    }
    #expect(instance == ["customer_id", "order_id", "quantity", "resolution", "service_id"])
    let unknown = await code {
      _ = try await acting(.distributor, "dist-1") {
        try await self.entitlement.applyForDistribution(
          request: .with { $0.baseServiceID = "svc_missing" }, context: handlerContext)
      }
    }
    #expect(unknown == .notFound)
  }
}
