// What entitlement asks the catalog: a service's owner, type, base and versions, at the
// moment it needs them. Published versions never change, so those are kept once asked.
import GRPCCore
import NIOConcurrencyHelpers
import NestDomain
public import NestProto

public protocol CatalogFacts: Sendable {
  /// The service and all its versions; NOT_FOUND from catalog when it does not exist.
  func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse
}

/// GetService over RPC, as the entitlement service.
public struct CatalogClientFacts: CatalogFacts {
  private let client: any Nest_Catalog_V1_CatalogService.ClientProtocol

  public init(client: any Nest_Catalog_V1_CatalogService.ClientProtocol) {
    self.client = client
  }

  public func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse {
    try await self.client.getService(.with { $0.serviceID = id })
  }
}

/// The versions sold, as the catalog has them: a published version is asked once and kept.
final class VersionCache: Sendable {
  private let catalog: any CatalogFacts
  private let published = NIOLockedValueBox<[String: Nest_Catalog_V1_ServiceVersion]>([:])

  init(catalog: any CatalogFacts) {
    self.catalog = catalog
  }

  /// The version `versionID` of `serviceID` (its default version when empty).
  func version(of serviceID: String, id versionID: String) async throws -> Nest_Catalog_V1_ServiceVersion {
    if !versionID.isEmpty, let known = self.published.withLockedValue({ $0[versionID] }), known.serviceID == serviceID {
      return known
    }
    let service: Nest_Catalog_V1_GetServiceResponse
    do {
      service = try await self.catalog.service(serviceID)
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound("service", serviceID, field: "service_id")
    }
    let wanted = versionID.isEmpty ? (service.service?.defaultVersionID ?? "") : versionID
    guard let version = service.versions.first(where: { $0.id == wanted }) else {
      throw DomainError.notFound("version", wanted, field: "version_id")
    }
    if version.status == .published {
      self.published.withLockedValue { $0[version.id] = version }
    }
    return version
  }
}
