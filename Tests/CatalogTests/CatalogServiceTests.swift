// The catalog's RPC handlers as the parties use them, with entitlement's answer faked.
import Catalog
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestAuth
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import NestTransport
import Testing

/// Entitlement's CheckDistribution, as a table the test fills.
final class FakeDistribution: DistributionChecking {
  let active = NIOLockedValueBox<[String: Nest_Entitlement_V1_DistributionAuthorization]>([:])

  func grant(base: String, distributor: String, wholesale: Int64) {
    self.active.withLockedValue {
      $0["\(base)/\(distributor)"] = .with {
        $0.status = .active
        $0.terms = .with {
          $0.wholesalePrice = .with {
            $0.currency = "USD"; $0.amountMinor = wholesale
          }
        }
      }
    }
  }

  func activeAuthorization(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_DistributionAuthorization
  {
    guard let authorization = self.active.withLockedValue({ $0["\(baseServiceID)/\(distributorID)"] }) else {
      throw RPCError(code: .failedPrecondition, message: "no active distribution authorization")
    }
    return authorization
  }
}

let package = Nest_Catalog_V1_DeploymentPackage.with {
  $0.artifactRef = "oci://registry.example/isv/app:1.0"
  $0.checksumSha256 = String(repeating: "ab", count: 32)
}

func plan(_ amount: Int64) -> Nest_Catalog_V1_Plan {
  .with {
    $0.planID = "monthly"
    $0.billingPeriod = .month
    $0.unitPrice = .with {
      $0.currency = "USD"; $0.amountMinor = amount
    }
  }
}

@Suite("Catalog service")
struct CatalogServiceTests {
  let distribution = FakeDistribution()
  let catalog: CatalogService

  init() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID()).sqlite").path
    self.catalog = CatalogService(
      store: CatalogStore(database: try ServiceDatabase.open(path: path, migrations: CatalogStore.migrations)),
      distribution: self.distribution)
  }

  /// An ISV's base service, published and listed, as FULLY_MANAGED unless told otherwise.
  func publishedBase(type: Nest_Common_V1_ServiceType = .fullyManaged, listed: Bool = true) async throws
    -> Nest_Catalog_V1_Service
  {
    try await run {
      let created = try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1")
      {
        try await self.catalog.createService(
          request: .with {
            $0.name = "Analytics"
            $0.type = type
            $0.deploymentPackage = package
          }, context: $0)
      }
      _ = try await calling(Nest_Catalog_V1_CatalogService.Method.PublishService.descriptor, as: .isv, "isv-1") {
        try await self.catalog.publishService(
          request: .with {
            $0.serviceID = created.service!.id
            $0.versionID = created.version!.id
          }, context: $0)
      }
      _ = try await calling(Nest_Catalog_V1_CatalogService.Method.EnableDistribution.descriptor, as: .isv, "isv-1") {
        try await self.catalog.enableDistribution(
          request: .with { $0.serviceID = created.service!.id }, context: $0)
      }
      if listed {
        _ = try await calling(Nest_Catalog_V1_CatalogService.Method.ListOnMarketplace.descriptor, as: .isv, "isv-1") {
          try await self.catalog.listOnMarketplace(
            request: .with {
              $0.serviceID = created.service!.id
              $0.plans = [plan(2_000)]
            }, context: $0)
        }
      }
      return try await calling(Nest_Catalog_V1_CatalogService.Method.GetService.descriptor, as: .isv, "isv-1") {
        try await self.catalog.getService(
          request: .with { $0.serviceID = created.service!.id }, context: $0
        )
      }
      .service!
    }
  }

  @Test("an ISV publishes A; a distributor with an authorization builds, publishes and lists B; scenario 3")
  func scenarioWalk() async throws {
    let a = try await self.publishedBase()
    #expect(a.status == .online)
    #expect(a.distributable)
    #expect(a.listedOnMarketplace)
    // Without an authorization: refused.
    #expect(
      await code {
        _ = try await run {
          try await calling(
            Nest_Catalog_V1_CatalogService.Method.CreateDerivedService.descriptor, as: .distributor, "dist-1"
          ) {
            try await self.catalog.createDerivedService(
              request: .with {
                $0.baseServiceID = a.id
                $0.name = "Analytics Plus"
                $0.type = .fullyManaged
              }, context: $0)
          }
        }
      } == .failedPrecondition)
    self.distribution.grant(base: a.id, distributor: "dist-1", wholesale: 1_000)
    // A PRIVATE B on a FULLY_MANAGED A: refused.
    #expect(
      await code {
        _ = try await run {
          try await calling(
            Nest_Catalog_V1_CatalogService.Method.CreateDerivedService.descriptor, as: .distributor, "dist-1"
          ) {
            try await self.catalog.createDerivedService(
              request: .with {
                $0.baseServiceID = a.id
                $0.name = "Analytics Private"
                $0.type = .private
              }, context: $0)
          }
        }
      } == .failedPrecondition)
    let b = try await run {
      let created = try await calling(
        Nest_Catalog_V1_CatalogService.Method.CreateDerivedService.descriptor, as: .distributor, "dist-1"
      ) {
        try await self.catalog.createDerivedService(
          request: .with {
            $0.baseServiceID = a.id
            $0.name = "Analytics Plus"
            $0.type = .fullyManaged
            $0.parameterSets = [
              .with {
                $0.name = "ha"; $0.parameters = ["replicas": "3"]
              }
            ]
          }, context: $0)
      }
      _ = try await calling(Nest_Catalog_V1_CatalogService.Method.PublishService.descriptor, as: .distributor, "dist-1")
      {
        try await self.catalog.publishService(
          request: .with {
            $0.serviceID = created.service!.id
            $0.versionID = created.version!.id
          }, context: $0)
      }
      return created.service!
    }
    #expect(b.baseServiceID == a.id)
    #expect(b.baseVersionID == a.defaultVersionID)
    // Below wholesale: refused; at it: listed.
    #expect(
      await code {
        _ = try await run {
          try await calling(
            Nest_Catalog_V1_CatalogService.Method.ListOnMarketplace.descriptor, as: .distributor, "dist-1"
          ) {
            try await self.catalog.listOnMarketplace(
              request: .with {
                $0.serviceID = b.id; $0.plans = [plan(999)]
              }, context: $0)
          }
        }
      } == .failedPrecondition)
    let product = try await run {
      try await calling(Nest_Catalog_V1_CatalogService.Method.ListOnMarketplace.descriptor, as: .distributor, "dist-1")
      {
        try await self.catalog.listOnMarketplace(
          request: .with {
            $0.serviceID = b.id; $0.plans = [plan(1_000)]
          }, context: $0
        )
      }
      .product!
    }
    #expect(product.status == .listed)
    let resolution = try await run {
      try await calling(Nest_Catalog_V1_CatalogService.Method.ResolveScenario.descriptor, as: .customer, "cust-1") {
        try await self.catalog.resolveScenario(request: .with { $0.serviceID = b.id }, context: $0)
      }
      .resolution!
    }
    #expect(resolution.scenario == .scenario3)
    #expect(resolution.isvID == "isv-1")
    #expect(resolution.distributorID == "dist-1")
    #expect(resolution.settlementMode == .online)
  }

  @Test("an unlisted FULLY_MANAGED A gives scenario 4; a PRIVATE A and B give scenario 1")
  func otherScenarios() async throws {
    let unlisted = try await self.publishedBase(type: .fullyManaged, listed: false)
    let privateA = try await self.publishedBase(type: .private, listed: true)
    self.distribution.grant(base: unlisted.id, distributor: "dist-1", wholesale: 500)
    self.distribution.grant(base: privateA.id, distributor: "dist-1", wholesale: 500)
    for (base, type, expected) in [
      (unlisted, Nest_Common_V1_ServiceType.fullyManaged, Nest_Common_V1_Scenario.scenario4),
      (privateA, .private, .scenario1), (privateA, .fullyManaged, .scenario2),
    ] {
      let scenario = try await run {
        let b = try await calling(
          Nest_Catalog_V1_CatalogService.Method.CreateDerivedService.descriptor, as: .distributor, "dist-1"
        ) {
          try await self.catalog.createDerivedService(
            request: .with {
              $0.baseServiceID = base.id
              $0.name = "B of \(base.id)"
              $0.type = type
            }, context: $0)
        }
        return try await calling(
          Nest_Catalog_V1_CatalogService.Method.ResolveScenario.descriptor, as: .distributor, "dist-1"
        ) {
          try await self.catalog.resolveScenario(
            request: .with { $0.serviceID = b.service!.id }, context: $0
          )
        }
        .resolution!.scenario
      }
      #expect(scenario == expected)
    }
  }

  @Test("roles and ownership: the wrong role or another party's service is refused; drafts stay hidden")
  func access() async throws {
    #expect(
      await code {
        _ = try await run {
          try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .customer, "cust-1") {
            try await self.catalog.createService(
              request: .with {
                $0.name = "x"; $0.type = .private; $0.deploymentPackage = package
              }, context: $0)
          }
        }
      } == .permissionDenied)
    let draft = try await run {
      try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1") {
        try await self.catalog.createService(
          request: .with {
            $0.name = "Draft"; $0.type = .private; $0.deploymentPackage = package
          }, context: $0
        )
      }.service!
    }
    #expect(
      await code {
        _ = try await run {
          try await calling(Nest_Catalog_V1_CatalogService.Method.GetService.descriptor, as: .customer, "cust-1") {
            try await self.catalog.getService(request: .with { $0.serviceID = draft.id }, context: $0)
          }
        }
      } == .notFound)
    #expect(
      await code {
        _ = try await run {
          try await calling(Nest_Catalog_V1_CatalogService.Method.GetService.descriptor, as: .isv, "isv-2") {
            try await self.catalog.getService(request: .with { $0.serviceID = draft.id }, context: $0)
          }
        }
      } == .notFound)
    let online = try await self.publishedBase()
    #expect(
      await code {
        _ = try await run {
          try await calling(Nest_Catalog_V1_CatalogService.Method.TakeServiceOffline.descriptor, as: .isv, "isv-2") {
            try await self.catalog.takeServiceOffline(
              request: .with { $0.serviceID = online.id }, context: $0)
          }
        }
      } == .permissionDenied)
    #expect(
      await code {
        _ = try await run {
          try await calling(
            Nest_Catalog_V1_CatalogService.Method.EnableDistribution.descriptor, as: .distributor, "dist-1"
          ) {
            try await self.catalog.enableDistribution(
              request: .with { $0.serviceID = online.id }, context: $0)
          }
        }
      } == .permissionDenied)
    let listed = try await run {
      try await calling(Nest_Catalog_V1_CatalogService.Method.ListServices.descriptor, as: .customer, "cust-1") {
        try await self.catalog.listServices(request: .init(), context: $0)
      }.services.map(\.id)
    }
    #expect(listed.contains(online.id))
    #expect(!listed.contains(draft.id))
  }

  @Test("a client token makes a retry return the first result; reused for another request, ALREADY_EXISTS")
  func clientTokens() async throws {
    let request = Nest_Catalog_V1_CreateServiceRequest.with {
      $0.clientToken = "create-1"
      $0.name = "Once"
      $0.type = .private
      $0.deploymentPackage = package
    }
    let (first, second) = try await run {
      (
        try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1") {
          try await self.catalog.createService(request: request, context: $0)
        },
        try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1") {
          try await self.catalog.createService(request: request, context: $0)
        }
      )
    }
    #expect(first == second)
    var different = request
    different.name = "Twice"
    #expect(
      await code {
        _ = try await run {
          try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1") {
            try await self.catalog.createService(request: different, context: $0)
          }
        }
      } == .alreadyExists)
    let mine = try await run {
      try await calling(Nest_Catalog_V1_CatalogService.Method.ListServices.descriptor, as: .isv, "isv-1") {
        try await self.catalog.listServices(request: .with { $0.ownerID = "isv-1" }, context: $0)
      }.services
    }
    #expect(mine.filter { $0.name == "Once" }.count == 1)
    #expect(mine.filter { $0.name == "Twice" }.isEmpty)
  }

  @Test("bad requests are INVALID_ARGUMENT naming every bad field")
  func validation() async throws {
    do {
      _ = try await run {
        try await calling(Nest_Catalog_V1_CatalogService.Method.CreateService.descriptor, as: .isv, "isv-1") {
          try await self.catalog.createService(
            request: .with {
              $0.name = " "
              $0.type = .unspecified
              $0.deploymentPackage = .with { $0.checksumSha256 = "XYZ" }
              $0.parameterSets = [.with { $0.name = "a" }, .with { $0.name = "a" }]
            }, context: $0)
        }
      }
      Issue.record("accepted")
    } catch let error as DomainError {
      #expect(error.code == .invalidArgument)
      #expect(
        error.violations.map(\.field) == [
          "name", "type", "deployment_package.artifact_ref", "deployment_package.checksum_sha256",
          "parameter_sets[1].name",
        ])
    }
  }
}

/// Runs `body`: the calls in it say each who makes them.
func run<Result>(_ body: () async throws -> Result) async throws -> Result { try await body() }
