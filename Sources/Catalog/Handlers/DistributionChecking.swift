// What the catalog asks entitlement (CheckDistribution): the ACTIVE, unexpired authorization
// of a distributor for a base service.
import GRPCCore
import NestDomain
public import NestProto

public protocol DistributionChecking: Sendable {
  /// The authorization; FAILED_PRECONDITION (from entitlement) when there is none active.
  func activeAuthorization(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_DistributionAuthorization
}

/// CheckDistribution over RPC, as the catalog service.
public struct EntitlementDistributionChecker: DistributionChecking {
  private let client: any Nest_Entitlement_V1_EntitlementService.ClientProtocol

  public init(client: any Nest_Entitlement_V1_EntitlementService.ClientProtocol) {
    self.client = client
  }

  public func activeAuthorization(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_DistributionAuthorization
  {
    let response = try await self.client.checkDistribution(
      .with {
        $0.baseServiceID = baseServiceID
        $0.distributorID = distributorID
      })
    guard let authorization = response.authorization else {
      throw DomainError(.failedPrecondition, "no active distribution authorization")
    }
    return authorization
  }
}
