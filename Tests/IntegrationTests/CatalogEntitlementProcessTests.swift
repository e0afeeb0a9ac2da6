// catalog-service and entitlement-service as separate processes on loopback, each with its
// own database, calling each other; the parties drive them through the generated clients.
import Foundation
import GRPCCore
import NestAuth
import NestProto
import NestProtoTesting
import NestScenarios
import NestTransport
import Testing

@Suite("catalog-service and entitlement-service processes", .serialized, .timeLimit(.minutes(3)))
struct CatalogEntitlementProcessTests {
  @Test("ISV publishes A, distributor is authorized and sells B, revocation, permissions; all survives a restart")
  func distributionWalk() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement"])
    let isv = catalog(cluster, as: .isv, "isv-1")
    let distributor = catalog(cluster, as: .distributor, "dist-1")

    // The ISV publishes A (fully managed), opens it for distribution and lists it.
    let a = try await isv { catalog in
      let created = try await catalog.createService(
        .with {
          $0.name = "Managed DB"
          $0.type = .fullyManaged
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://registry.example/isv/db:1"
            $0.checksumSha256 = String(repeating: "1f", count: 32)
          }
        })
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      _ = try await catalog.enableDistribution(.with { $0.serviceID = created.service!.id })
      _ = try await catalog.listOnMarketplace(
        .with {
          $0.serviceID = created.service!.id
          $0.plans = [monthly(3_000)]
        })
      return try await catalog.getService(.with { $0.serviceID = created.service!.id }).service!
    }
    let derive = { (type: Nest_Common_V1_ServiceType) in
      try await distributor { catalog in
        try await catalog.createDerivedService(
          .with {
            $0.baseServiceID = a.id
            $0.name = "Managed DB, with backups"
            $0.type = type
          })
      }
    }
    // No authorization yet: catalog asks entitlement, which refuses.
    #expect(await status { _ = try await derive(.fullyManaged) } == .failedPrecondition)

    let application = try await entitlement(cluster, as: .distributor, "dist-1") {
      try await $0.applyForDistribution(
        .with {
          $0.baseServiceID = a.id
          $0.message = "reseller in the EU"
        }
      ).authorization!
    }
    #expect(application.status == .pending)
    #expect(application.isvID == "isv-1")
    let approved = try await entitlement(cluster, as: .isv, "isv-1") {
      try await $0.approveDistribution(
        .with {
          $0.authorizationID = application.id
          $0.terms = .with { $0.wholesalePrice = usd(1_000) }
        }
      ).authorization!
    }
    #expect(approved.status == .active)

    // PRIVATE on a FULLY_MANAGED A is not allowed; FULLY_MANAGED is.
    #expect(await status { _ = try await derive(.private) } == .failedPrecondition)
    let created = try await derive(.fullyManaged)
    let b = try await distributor { catalog in
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      return created.service!
    }
    let list = { (price: Int64) in
      try await distributor { catalog in
        try await catalog.listOnMarketplace(
          .with {
            $0.serviceID = b.id
            $0.plans = [monthly(price)]
          })
      }
    }
    #expect(await status { _ = try await list(999) } == .failedPrecondition)
    let product = try await list(1_500).product!
    #expect(product.status == .listed)

    // What marketplace-order will do for a paid order: resolve, then ask for the instance.
    let platform = entitlement(cluster, as: .service, "marketplace-order")
    let resolution = try await catalog(cluster, as: .service, "marketplace-order") {
      try await $0.resolveScenario(.with { $0.serviceID = b.id }).resolution!
    }
    #expect(resolution.scenario == .scenario3)
    let instance = try await platform {
      try await $0.createServiceInstance(
        .with {
          $0.orderID = "order-1"
          $0.serviceID = b.id
          $0.customerID = "cust-1"
          $0.authorizationID = approved.id
          $0.quantity = 1
          $0.expiry = .term(
            .with {
              $0.billingPeriod = .month; $0.periods = 1
            })
          $0.resolution = resolution
        }
      ).instance!
    }
    #expect(
      instance.resourceOwner
        == .with {
          $0.role = .isv; $0.accountID = "isv-1"
        })
    guard case .logonURL? = instance.access else {
      Issue.record("a fully managed instance without a logon URL")
      return
    }
    let customer = entitlement(cluster, as: .customer, "cust-1")
    let deployed = try await eventually {
      try await customer { try await $0.getServiceInstance(.with { $0.key = .instanceID(instance.id) }) }
        .instance?.status == .deployed
    }
    #expect(deployed)

    // The customer asks the ISV (the resource owner in scenario 3) for an operation.
    let asked = try await customer {
      try await $0.requestResourcePermission(
        .with {
          $0.instanceID = instance.id
          $0.operation = "db:ReadSlowLog"
          $0.reason = "queries got slow"
          $0.requestedDurationSeconds = 3_600
        }
      ).request!
    }
    _ = try await entitlement(cluster, as: .isv, "isv-1") {
      try await $0.decidePermissionRequest(
        .with {
          $0.requestID = asked.id
          $0.decision = .approve
        })
    }
    let checkPermission = {
      try await entitlement(cluster, as: .operator, "op") {
        try await $0.checkResourcePermission(
          .with {
            $0.instanceID = instance.id
            $0.requesterID = "cust-1"
            $0.operation = "db:ReadSlowLog"
          }
        ).allowed
      }
    }
    #expect(try await checkPermission())

    // The ISV revokes: entitlement and, through it, catalog refuse new business.
    _ = try await entitlement(cluster, as: .isv, "isv-1") {
      try await $0.revokeDistribution(
        .with {
          $0.authorizationID = application.id
          $0.reason = "contract ended"
        })
    }
    let check = {
      try await entitlement(cluster, as: .distributor, "dist-1") {
        _ = try await $0.checkDistribution(
          .with {
            $0.baseServiceID = a.id
            $0.distributorID = "dist-1"
          })
      }
    }
    #expect(await status(check) == .failedPrecondition)
    #expect(await status { _ = try await list(2_000) } == .failedPrecondition)
    let before = try await catalog(cluster, as: .operator, "op") {
      try await $0.getService(.with { $0.serviceID = b.id })
    }

    // Both restart; everything is still there.
    #expect(cluster.stop("catalog") == 0)
    #expect(cluster.stop("entitlement") == 0)
    try await cluster.start(["catalog", "entitlement"])
    let after = try await catalog(cluster, as: .operator, "op") {
      try await $0.getService(.with { $0.serviceID = b.id })
    }
    #expect(after == before)
    let authorization = try await entitlement(cluster, as: .operator, "op") {
      try await $0.getDistributionAuthorization(.with { $0.authorizationID = application.id }).authorization!
    }
    #expect(authorization.history.map(\.status) == ["PENDING", "ACTIVE", "REVOKED"])
    #expect(authorization.statusReason == "contract ended")
    let reloaded = try await customer {
      try await $0.getServiceInstance(.with { $0.key = .orderID("order-1") }).instance!
    }
    #expect(reloaded.id == instance.id)
    #expect(reloaded.status == .deployed)
    #expect(try await checkPermission())
    #expect(await status(check) == .failedPrecondition)
    // And catalog still reaches entitlement after both restarted.
    #expect(await status { _ = try await derive(.fullyManaged) } == .failedPrecondition)
  }
}
