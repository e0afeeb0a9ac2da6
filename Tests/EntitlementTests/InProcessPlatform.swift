// Catalog and entitlement handlers wired to each other in one process, each calling the
// other as role `service`, each over its own temporary database: for tests that need both
// services' rules but not their processes.
import Catalog
import Entitlement
import Foundation
import GRPCCore
import Logging
import NIOConcurrencyHelpers
import NestAuth
import NestProto
import NestServiceKit
import NestTestKit
import Testing

final class InProcessPlatform: Sendable {
  let catalog: CatalogService
  let entitlement: EntitlementService
  let deployments: DeploymentDriver
  let directory: URL

  /// Entitlement's CheckDistribution as the catalog's peer.
  struct EntitlementPeer: DistributionChecking {
    let entitlement: NIOLockedValueBox<EntitlementService?>
    func activeAuthorization(baseServiceID: String, distributorID: String) async throws
      -> Nest_Entitlement_V1_DistributionAuthorization
    {
      let service = self.entitlement.withLockedValue { $0! }
      return try await acting(.service, "catalog") {
        try await service.checkDistribution(
          request: .with {
            $0.baseServiceID = baseServiceID
            $0.distributorID = distributorID
          }, context: handlerContext
        ).authorization!
      }
    }
  }

  /// The catalog's GetService as entitlement's peer.
  struct CatalogPeer: CatalogFacts {
    let catalog: CatalogService
    func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse {
      try await acting(.service, "entitlement") {
        try await self.catalog.getService(request: .with { $0.serviceID = id }, context: handlerContext)
      }
    }
  }

  init() throws {
    self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("platform-\(UUID())")
    try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    let late = NIOLockedValueBox<EntitlementService?>(nil)
    self.catalog = CatalogService(
      store: try CatalogStore(path: self.directory.appendingPathComponent("catalog.sqlite").path),
      distribution: EntitlementPeer(entitlement: late))
    let store = try EntitlementStore(path: self.directory.appendingPathComponent("entitlement.sqlite").path)
    self.deployments = DeploymentDriver(store: store, logger: Logger(label: "test"))
    self.entitlement = EntitlementService(
      store: store, catalog: CatalogPeer(catalog: self.catalog), signer: try store.signer(),
      deployments: self.deployments)
    late.withLockedValue { $0 = self.entitlement }
  }

  deinit { try? FileManager.default.removeItem(at: self.directory) }

  // MARK: Building blocks

  static let package = Nest_Catalog_V1_DeploymentPackage.with {
    $0.artifactRef = "oci://registry.example/isv/app:1.0"
    $0.checksumSha256 = String(repeating: "ab", count: 32)
  }

  static func plan(_ amount: Int64) -> Nest_Catalog_V1_Plan {
    .with {
      $0.planID = "monthly"
      $0.billingPeriod = .month
      $0.unitPrice = .with {
        $0.currency = "USD"
        $0.amountMinor = amount
      }
    }
  }

  static func terms(wholesale: Int64) -> Nest_Entitlement_V1_DistributionTerms {
    .with {
      $0.wholesalePrice = .with {
        $0.currency = "USD"
        $0.amountMinor = wholesale
      }
    }
  }

  /// An ISV's base service: published, open for distribution, listed unless told otherwise.
  func publishedBase(isv: String, type: Nest_Common_V1_ServiceType, listed: Bool = true) async throws
    -> Nest_Catalog_V1_Service
  {
    try await acting(.isv, isv) {
      let created = try await self.catalog.createService(
        request: .with {
          $0.name = "Base"
          $0.type = type
          $0.deploymentPackage = Self.package
          $0.parameterSets = [
            .with {
              $0.name = "small"; $0.parameters = ["cpu": "2"]
            }
          ]
        }, context: handlerContext)
      _ = try await self.catalog.publishService(
        request: .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        }, context: handlerContext)
      _ = try await self.catalog.enableDistribution(
        request: .with { $0.serviceID = created.service!.id }, context: handlerContext)
      if listed {
        _ = try await self.catalog.listOnMarketplace(
          request: .with {
            $0.serviceID = created.service!.id
            $0.plans = [Self.plan(3_000)]
          }, context: handlerContext)
      }
      return try await self.catalog.getService(
        request: .with { $0.serviceID = created.service!.id }, context: handlerContext
      )
      .service!
    }
  }

  /// A distributor's derived service on `base`, published and listed at `price`.
  func publishedDerived(distributor: String, base: String, type: Nest_Common_V1_ServiceType, price: Int64) async throws
    -> Nest_Catalog_V1_Service
  {
    try await acting(.distributor, distributor) {
      let created = try await self.catalog.createDerivedService(
        request: .with {
          $0.baseServiceID = base
          $0.name = "Derived"
          $0.type = type
          $0.parameterSets = [
            .with {
              $0.name = "standard"; $0.parameters = ["tier": "gold"]
            }
          ]
        }, context: handlerContext)
      _ = try await self.catalog.publishService(
        request: .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        }, context: handlerContext)
      _ = try await self.catalog.listOnMarketplace(
        request: .with {
          $0.serviceID = created.service!.id
          $0.plans = [Self.plan(price)]
        }, context: handlerContext)
      return try await self.catalog.getService(
        request: .with { $0.serviceID = created.service!.id }, context: handlerContext
      )
      .service!
    }
  }

  /// What marketplace-order asks for a paid order of `service`.
  func instanceRequest(order: String, service: String, customer: String, parameterSet: String) async throws
    -> Nest_Entitlement_V1_CreateServiceInstanceRequest
  {
    let resolution = try await acting(.service, "order") {
      try await self.catalog.resolveScenario(request: .with { $0.serviceID = service }, context: handlerContext)
        .resolution!
    }
    return .with {
      $0.orderID = order
      $0.serviceID = service
      $0.customerID = customer
      $0.quantity = 1
      $0.expiry = .term(
        .with {
          $0.billingPeriod = .month
          $0.periods = 1
        })
      $0.parameterSetName = parameterSet
      $0.resolution = resolution
    }
  }

  func createInstance(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await acting(.service, "order") {
      try await self.entitlement.createServiceInstance(request: request, context: handlerContext).instance!
    }
  }
}
