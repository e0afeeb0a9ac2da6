// A fully managed service's fulfilment endpoint: registered by the service's owner (the
// provider that runs its instances), read by entitlement, which calls it for each instance
// action (docs/events.md, "Fulfilment through the provider").
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit
import NestWebhooks

extension CatalogService {
  public func setFulfilmentEndpoint(request: Nest_Catalog_V1_SetFulfilmentEndpointRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_SetFulfilmentEndpointResponse
  {
    let access = try Access.forCall()
    if request.serviceID.isEmpty { throw DomainError.invalid("service_id", "is required") }
    if !request.url.isEmpty { _ = try WebhookRules.check(url: request.url) }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let service = try Self.authorized(request.serviceID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "SetFulfilmentEndpoint", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        guard service.type == .fullyManaged else {
          throw DomainError(
            .failedPrecondition, "service \(service.id) is PRIVATE: its resources are the customer's to run",
            violations: [.init(field: "service_id", description: "is not a FULLY_MANAGED service")])
        }
        guard !request.url.isEmpty else {
          try CatalogStore.save(nil, ofService: service.id, in: db)
          return .init()
        }
        let endpoint = Nest_Catalog_V1_FulfilmentEndpoint.with {
          $0.serviceID = service.id
          $0.url = request.url
          $0.secret = WebhookRules.newSecret()
          $0.updatedAtUnixMs = now
        }
        try CatalogStore.save(endpoint, ofService: service.id, in: db)
        return .with {
          $0.endpoint = endpoint
          $0.secret = endpoint.secret
        }
      }
    }
  }

  public func getFulfilmentEndpoint(request: Nest_Catalog_V1_GetFulfilmentEndpointRequest, context: ServerContext)
    async throws -> Nest_Catalog_V1_GetFulfilmentEndpointResponse
  {
    let access = try Access.forCall()
    if request.serviceID.isEmpty { throw DomainError.invalid("service_id", "is required") }
    return try self.store.database.readNow { db in
      let service = try Self.authorized(request.serviceID, access, in: db)
      let endpoint = try CatalogStore.fulfilmentEndpoint(ofService: service.id, in: db)
      return .with { $0.endpoint = endpoint }
    }
  }
}
