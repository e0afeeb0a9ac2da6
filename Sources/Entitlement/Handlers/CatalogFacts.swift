// What entitlement asks the catalog: a service's owner, type, base and versions, at the
// moment it needs them. Published versions never change, so those are kept once asked.
import GRPCCore
import NIOConcurrencyHelpers
import NestDomain
public import NestProto
import NestServiceKit

public protocol CatalogFacts: Sendable {
  /// The service and all its versions; NOT_FOUND from catalog when it does not exist.
  func service(_ id: String) async throws -> Nest_Catalog_V1_GetServiceResponse
  /// The service's fulfilment endpoint, with its secret; nil when it has none.
  func fulfilmentEndpoint(ofService id: String) async throws -> Nest_Catalog_V1_FulfilmentEndpoint?
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

  public func fulfilmentEndpoint(ofService id: String) async throws -> Nest_Catalog_V1_FulfilmentEndpoint? {
    try await self.client.getFulfilmentEndpoint(.with { $0.serviceID = id }).endpoint
  }
}

/// Fulfilment endpoints as the catalog had them a moment ago: asked at most once per
/// `lifetime` per service, so that a burst of deployments asks once (a change reaches
/// entitlement within the lifetime).
final class EndpointCache: Sendable {
  private let catalog: any CatalogFacts
  private let lifetime: Int64
  private let clock: NestClock
  private let known = NIOLockedValueBox<[String: (endpoint: Nest_Catalog_V1_FulfilmentEndpoint?, at: Int64)]>([:])

  init(catalog: any CatalogFacts, lifetimeMs: Int64 = 2_000, clock: NestClock) {
    self.catalog = catalog
    self.lifetime = lifetimeMs
    self.clock = clock
  }

  func endpoint(ofService id: String) async throws -> Nest_Catalog_V1_FulfilmentEndpoint? {
    let now = self.clock.nowUnixMs()
    if let entry = self.known.withLockedValue({ $0[id] }), now - entry.at < self.lifetime { return entry.endpoint }
    let endpoint = try await self.catalog.fulfilmentEndpoint(ofService: id)
    self.known.withLockedValue { $0[id] = (endpoint, now) }
    return endpoint
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

  /// The versions `requests` ask for, one per request in their order, each version asked
  /// once: the version, or the request's own reason it cannot be had (NOT_FOUND, say). A
  /// catalog that cannot be reached ends the lookups at once and is thrown: a batch waits for
  /// at most one call's timeout. (Asked one after another: a task group whose children
  /// returned `(key, Result)` tuples crashed Swift 6.3.1's optimized build; docs/benchmarks.md,
  /// issue 19's eighth part.)
  func versions(of requests: [Nest_Entitlement_V1_CreateServiceInstanceRequest]) async throws
    -> [Result<Nest_Catalog_V1_ServiceVersion, any Error>]
  {
    var asked: [[String]: Result<Nest_Catalog_V1_ServiceVersion, any Error>] = [:]
    var versions: [Result<Nest_Catalog_V1_ServiceVersion, any Error>] = []
    for request in requests {
      let key = [request.serviceID, request.versionID]
      if let known = asked[key] {
        versions.append(known)
        continue
      }
      let version: Result<Nest_Catalog_V1_ServiceVersion, any Error>
      do {
        version = .success(try await self.version(of: request.serviceID, id: request.versionID))
      } catch {
        guard BatchItems.refusal(error) != nil else { throw error }
        version = .failure(error)
      }
      asked[key] = version
      versions.append(version)
    }
    return versions
  }
}
