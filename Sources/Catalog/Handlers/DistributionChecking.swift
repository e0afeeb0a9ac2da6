// What the catalog asks entitlement (DESIGN section 8, CheckDistribution): the ACTIVE,
// unexpired authorization of a distributor for a base service.
import GRPCCore
public import NestProto

public protocol DistributionChecking: Sendable {
  /// The authorization; FAILED_PRECONDITION (from entitlement) when there is none active.
  func activeAuthorization(baseServiceID: String, distributorID: String) async throws
    -> Nest_Entitlement_V1_DistributionAuthorization
}

/// CheckDistribution over RPC, with the catalog's own service token.
public struct EntitlementDistributionChecker<Transport: ClientTransport>: DistributionChecking {
  private let client: Nest_Entitlement_V1_EntitlementService.Client<Transport>

  public init(client: GRPCClient<Transport>) {
    self.client = Nest_Entitlement_V1_EntitlementService.Client(wrapping: client)
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
      throw RPCError(code: .failedPrecondition, message: "no active distribution authorization")
    }
    return authorization
  }
}
