// Building blocks for entitlement's tests over the platform in-process (NestTestKit): the
// catalog entries an ISV and a distributor publish, and what marketplace-order asks for a
// paid order, each call made as its party through the real interceptors.
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit
import Testing

extension NestTestPlatform {
  static let package = Nest_Catalog_V1_DeploymentPackage.with {
    $0.artifactRef = "oci://registry.example/isv/app:1.0"
    $0.checksumSha256 = String(repeating: "ab", count: 32)
  }

  static func plan(_ amount: Int64) -> Nest_Catalog_V1_Plan {
    .with {
      $0.planID = "monthly"
      $0.billingPeriod = .month
      $0.unitPrice = MoneyMath.money("USD", amount)
    }
  }

  static func terms(wholesale: Int64) -> Nest_Entitlement_V1_DistributionTerms {
    .with { $0.wholesalePrice = MoneyMath.money("USD", wholesale) }
  }

  /// An ISV's base service: published, open for distribution, listed unless told otherwise.
  func publishedBase(isv: String, type: Nest_Common_V1_ServiceType, listed: Bool = true) async throws
    -> Nest_Catalog_V1_Service
  {
    try await self.catalog(as: .isv, isv) { catalog in
      let created = try await catalog.createService(
        .with {
          $0.name = "Base"
          $0.type = type
          $0.deploymentPackage = Self.package
          $0.parameterSets = [
            .with {
              $0.name = "small"
              $0.parameters = ["cpu": "2"]
            }
          ]
        })
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      _ = try await catalog.enableDistribution(.with { $0.serviceID = created.service!.id })
      if listed {
        _ = try await catalog.listOnMarketplace(
          .with {
            $0.serviceID = created.service!.id
            $0.plans = [Self.plan(3_000)]
          })
      }
      return try await catalog.getService(.with { $0.serviceID = created.service!.id }).service!
    }
  }

  /// A distributor's derived service on `base`, published and listed at `price`.
  func publishedDerived(distributor: String, base: String, type: Nest_Common_V1_ServiceType, price: Int64) async throws
    -> Nest_Catalog_V1_Service
  {
    try await self.catalog(as: .distributor, distributor) { catalog in
      let created = try await catalog.createDerivedService(
        .with {
          $0.baseServiceID = base
          $0.name = "Derived"
          $0.type = type
          $0.parameterSets = [
            .with {
              $0.name = "standard"
              $0.parameters = ["tier": "gold"]
            }
          ]
        })
      _ = try await catalog.publishService(
        .with {
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      _ = try await catalog.listOnMarketplace(
        .with {
          $0.serviceID = created.service!.id
          $0.plans = [Self.plan(price)]
        })
      return try await catalog.getService(.with { $0.serviceID = created.service!.id }).service!
    }
  }

  /// What marketplace-order asks for a paid order of `service`.
  func instanceRequest(order: String, service: String, customer: String, parameterSet: String) async throws
    -> Nest_Entitlement_V1_CreateServiceInstanceRequest
  {
    let resolution = try await self.catalog(as: .service, "marketplace-order") {
      try await $0.resolveScenario(.with { $0.serviceID = service }).resolution!
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

  /// CreateServiceInstance as marketplace-order calls it.
  func createInstance(_ request: Nest_Entitlement_V1_CreateServiceInstanceRequest) async throws
    -> Nest_Entitlement_V1_ServiceInstance
  {
    try await self.entitlement(as: .service, "marketplace-order") {
      try await $0.createServiceInstance(request).instance!
    }
  }

  /// The instance once the deployment driver has moved it past DEPLOYING.
  func deployedInstance(_ id: String) async throws -> Nest_Entitlement_V1_ServiceInstance {
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
      let instance = try await self.entitlement(as: .operator, "op") {
        try await $0.getServiceInstance(.with { $0.key = .instanceID(id) }).instance!
      }
      if instance.status != .created && instance.status != .deploying || ContinuousClock.now > deadline {
        return instance
      }
      try await Task.sleep(for: .milliseconds(10))
    }
  }
}
