// What entitlement asks the catalog (DESIGN section 2): a service's owner, type, base and
// versions, at the moment it needs them; what it keeps of the answer it snapshots.
public import GRPCCore
public import NestProto

public protocol CatalogFacts: Sendable {
  /// The service and all its versions; NOT_FOUND from catalog when it does not exist.
  func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse
}

/// GetService over RPC, with entitlement's own service token.
public struct CatalogClientFacts<Transport: ClientTransport>: CatalogFacts {
  private let client: Nest_Catalog_V1_CatalogService.Client<Transport>

  public init(client: GRPCClient<Transport>) {
    self.client = Nest_Catalog_V1_CatalogService.Client(wrapping: client)
  }

  public func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse {
    try await self.client.getService(.with { $0.serviceID = id })
  }
}
