// The entitlement handlers as the parties use them, with the real catalog handlers beside them.
import Catalog
import Entitlement
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import NestTransport
import Testing

@Suite("Entitlement service")
struct EntitlementServiceTests {
  /// One platform per test: each test starts and stops its own.
  func withPlatform(_ body: (NestTestPlatform) async throws -> Void) async throws {
    let platform = try await NestTestPlatform.start()
    do {
      try await body(platform)
    } catch {
      await platform.stop()
      throw error
    }
    await platform.stop()
  }

  @Test("scenario 2: apply, approve, derive, price above wholesale, instance deployed with a logon URL, permissions")
  func scenarioTwo() async throws {
    try await self.withPlatform { platform in
      let a = try await platform.publishedBase(isv: "isv-1", type: .private, listed: false)
      let applied = try await platform.entitlement(as: .distributor, "dist-1") { client in
        try await client.applyForDistribution(
          .with {
            $0.baseServiceID = a.id
            $0.message = "we resell in APAC"
          }
        ).authorization!
      }
      #expect(applied.status == .pending)
      #expect(applied.isvID == "isv-1")
      // Without ACTIVE authorization the distributor cannot build B.
      let early = await code {
        _ = try await platform.publishedDerived(distributor: "dist-1", base: a.id, type: .fullyManaged, price: 2_000)
      }
      #expect(early == .failedPrecondition)
      let approved = try await platform.entitlement(as: .isv, "isv-1") { client in
        try await client.approveDistribution(
          .with {
            $0.authorizationID = applied.id
            $0.terms = NestTestPlatform.terms(wholesale: 1_000)
          }
        ).authorization!
      }
      #expect(approved.status == .active)
      #expect(approved.history.map(\.status) == ["PENDING", "ACTIVE"])
      // A plan below the wholesale price is refused; at 2,000 it is listed.
      let cheap = await code {
        _ = try await platform.publishedDerived(distributor: "dist-1", base: a.id, type: .fullyManaged, price: 999)
      }
      #expect(cheap == .failedPrecondition)
      let b = try await platform.publishedDerived(
        distributor: "dist-1", base: a.id, type: .fullyManaged, price: 2_000)
      let request = try await platform.instanceRequest(
        order: "order-1", service: b.id, customer: "cust-1", parameterSet: "standard")
      #expect(request.resolution?.scenario == .scenario2)
      let instance = try await platform.createInstance(request)
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
      #expect(try await platform.createInstance(request).id == instance.id)
      var different = request
      different.quantity = 2
      #expect(await code { _ = try await platform.createInstance(different) } == .alreadyExists)

      _ = try await platform.deployedInstance(instance.id)
      let deployed = try await platform.entitlement(as: .customer, "cust-1") { client in
        try await client.getServiceInstance(.with { $0.key = .orderID("order-1") })
          .instance!
      }
      #expect(deployed.status == .deployed)
      #expect(deployed.history.map(\.status) == ["CREATED", "DEPLOYING", "DEPLOYED"])

      // The customer asks the distributor (the resource owner) for an operation.
      let asked = try await platform.entitlement(as: .customer, "cust-1") { client in
        try await client.requestResourcePermission(
          .with {
            $0.instanceID = instance.id
            $0.operation = "ecs:RebootInstance"
            $0.reason = "hung after the upgrade"
            $0.requestedDurationSeconds = 3_600
          }
        ).request!
      }
      #expect(asked.status == .pending)
      #expect(asked.owner?.accountID == "dist-1")
      let check = {
        try await platform.entitlement(as: .operator, "op") { client in
          try await client.checkResourcePermission(
            .with {
              $0.instanceID = instance.id
              $0.requesterID = "cust-1"
              $0.operation = "ecs:RebootInstance"
            })
        }
      }
      #expect(try await check().allowed == false)
      let decided = try await platform.entitlement(as: .distributor, "dist-1") { client in
        try await client.decidePermissionRequest(
          .with {
            $0.requestID = asked.id
            $0.decision = .approve
            $0.grantedDurationSeconds = 600
          }
        ).request!
      }
      #expect(decided.status == .approved)
      let granted = try await check()
      #expect(granted.allowed)
      #expect(granted.requestID == asked.id)
      #expect(granted.grantExpiresAtUnixMs == decided.decidedAtUnixMs + 600_000)

      // Revoked: CheckDistribution refuses; the instance keeps running.
      _ = try await platform.entitlement(as: .isv, "isv-1") { client in
        try await client.revokeDistribution(
          .with {
            $0.authorizationID = applied.id
            $0.reason = "contract ended"
          })
      }
      let refused = await code {
        _ = try await platform.entitlement(as: .service, "catalog") { client in
          try await client.checkDistribution(
            .with {
              $0.baseServiceID = a.id
              $0.distributorID = "dist-1"
            })
        }
      }
      #expect(refused == .failedPrecondition)
    }
  }

  @Test("a direct sale of a private A: a license that verifies offline and follows the instance's life")
  func licenses() async throws {
    try await self.withPlatform { platform in
      let a = try await platform.publishedBase(isv: "isv-1", type: .private)
      let request = try await platform.instanceRequest(
        order: "order-9", service: a.id, customer: "cust-1", parameterSet: "small")
      #expect(request.resolution?.scenario == .direct)
      let instance = try await platform.createInstance(request)
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
      _ = try await platform.deployedInstance(instance.id)
      let signed = Nest_Entitlement_V1_SignedLicense.with {
        $0.payload = license.payload
        $0.signature = license.signature
        $0.keyID = license.keyID
      }
      func check(_ license: Nest_Entitlement_V1_CheckLicenseRequest.OneOf_License) async throws
        -> Nest_Entitlement_V1_CheckLicenseResponse
      {
        try await platform.entitlement(as: .customer, "cust-1") { client in
          try await client.checkLicense(.with { $0.license = license })
        }
      }
      let valid = try await check(.signedLicense(signed))
      #expect(valid.valid)
      #expect(valid.expiresAtUnixMs == instance.expiresAtUnixMs)
      // Offline, with only the published key.
      let (offline, payload) = LicenseVerifier.check(
        signed, with: valid.signingKey!, nowUnixMs: NestClock.system.nowUnixMs())
      #expect(offline == .valid)
      #expect(payload?.instanceID == instance.id)
      var tampered = signed
      tampered.payload[tampered.payload.count - 1] ^= 1
      #expect(try await check(.signedLicense(tampered)).status == .badSignature)
      #expect(try await check(.licenseID("lic_nope")).status == .unknownLicense)

      // The customer owns the resources, so it may suspend, resume, renew and release.
      let suspended = try await platform.entitlement(as: .customer, "cust-1") { client in
        try await client.suspendServiceInstance(
          .with {
            $0.instanceID = instance.id; $0.reason = "holiday"
          }
        ).instance!
      }
      #expect(suspended.status == .suspended)
      #expect(try await check(.licenseID(license.licenseID)).status == .suspended)
      _ = try await platform.entitlement(as: .customer, "cust-1") { client in
        try await client.resumeServiceInstance(.with { $0.instanceID = instance.id })
      }
      // Renewal is the platform's (a paid order's): the resource owner cannot extend its own term.
      let unpaid = await code {
        _ = try await platform.entitlement(as: .customer, "cust-1") {
          try await $0.renewServiceInstance(
            .with {
              $0.instanceID = instance.id
              $0.renewal = .periods(1)
            })
        }
      }
      #expect(unpaid == .permissionDenied)
      let renewed = try await platform.entitlement(as: .service, "marketplace-order") { client in
        try await client.renewServiceInstance(
          .with {
            $0.instanceID = instance.id
            $0.renewal = .periods(1)
          }
        ).instance!
      }
      #expect(renewed.expiresAtUnixMs == instance.expiresAtUnixMs + 30 * 86_400_000)
      guard case .license(let reissued)? = renewed.access else { return }
      #expect(reissued.licenseID == license.licenseID)
      #expect(reissued.expiresAtUnixMs == renewed.expiresAtUnixMs)
      // The old copy is judged by the current license.
      #expect(try await check(.signedLicense(signed)).expiresAtUnixMs == renewed.expiresAtUnixMs)
      _ = try await platform.entitlement(as: .service, "marketplace-order") { client in
        try await client.releaseServiceInstance(
          .with {
            $0.instanceID = instance.id; $0.reason = "refund"
          })
      }
      #expect(try await check(.licenseID(license.licenseID)).status == .released)
    }
  }

  @Test("client tokens: a retry gets the first answer, another request with the token is ALREADY_EXISTS")
  func clientTokens() async throws {
    try await self.withPlatform { platform in
      let a = try await platform.publishedBase(isv: "isv-1", type: .fullyManaged)
      func apply(_ message: String) async throws -> Nest_Entitlement_V1_DistributionAuthorization {
        try await platform.entitlement(as: .distributor, "dist-1") { client in
          try await client.applyForDistribution(
            .with {
              $0.clientToken = "apply-1"
              $0.baseServiceID = a.id
              $0.message = message
            }
          ).authorization!
        }
      }
      let first = try await apply("hello")
      #expect(try await apply("hello") == first)
      #expect(await code { _ = try await apply("changed") } == .alreadyExists)
      // Without a token the second application is refused by the rules: one pending per pair.
      let again = await code {
        _ = try await platform.entitlement(as: .distributor, "dist-1") { client in
          try await client.applyForDistribution(.with { $0.baseServiceID = a.id })
        }
      }
      #expect(again == .alreadyExists)
    }
  }

  @Test("bad input names each field")
  func validation() async throws {
    try await self.withPlatform { platform in
      let a = try await platform.publishedBase(isv: "isv-1", type: .fullyManaged)
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
        _ = try await platform.entitlement(as: .isv, "isv-1") { client in
          try await client.grantDistribution(
            .with {
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
            })
        }
      }
      #expect(
        terms == [
          "terms.max_instances", "terms.valid_until_unix_ms", "terms.wholesale_price.amount_minor",
          "terms.wholesale_price.currency",
        ])
      let page = await violations {
        _ = try await platform.entitlement(as: .operator, "op") { client in
          try await client.listServiceInstances(.with { $0.page = .with { $0.pageSize = 501 } })
        }
      }
      #expect(page == ["page.page_size"])
      let instance = await violations {
        _ = try await platform.createInstance(.with { $0.expiry = .expiresAtUnixMs(0) })
      }
      #expect(instance == ["customer_id", "order_id", "quantity", "resolution", "service_id"])
      let unknown = await code {
        _ = try await platform.entitlement(as: .distributor, "dist-1") { client in
          try await client.applyForDistribution(.with { $0.baseServiceID = "svc_missing" })
        }
      }
      #expect(unknown == .notFound)
    }
  }
}
