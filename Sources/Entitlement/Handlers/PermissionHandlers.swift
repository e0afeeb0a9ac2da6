// Resource permissions on fully managed instances: the customer asks the resource owner for
// an operation, the owner decides (a time-bound grant), the parties list and check them.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension EntitlementService {
  public func requestResourcePermission(
    request: Nest_Entitlement_V1_RequestResourcePermissionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RequestResourcePermissionResponse {
    let access = try Access.forCall()
    try PermissionRules.check(request)
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let instance = InstanceRules.present(
        try access.authorize(
          try EntitlementStore.instance(request.instanceID, in: db),
          notFound: .notFound("instance", request.instanceID, field: "instance_id")), now: now)
      try PermissionRules.checkRequestable(instance)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "RequestResourcePermission", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let permission = PermissionRules.newRequest(
          request, id: Identifiers.new("perm"), instance: instance, requester: access.caller.subject, now: now)
        try EntitlementStore.save(permission, in: db)
        return .with { $0.request = permission }
      }
    }
  }

  public func decidePermissionRequest(
    request: Nest_Entitlement_V1_DecidePermissionRequestRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_DecidePermissionRequestResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("request_id", request.requestID))
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let permission = try access.authorize(
        try EntitlementStore.permissionRequest(request.requestID, in: db),
        notFound: .notFound("permission request", request.requestID, field: "request_id"))
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "DecidePermissionRequest", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let decided = try PermissionRules.decide(permission, request, decidedBy: access.caller.subject, nowUnixMs: now)
        try EntitlementStore.save(decided, in: db)
        return .with { $0.request = decided }
      }
    }
  }

  public func listPermissionRequests(
    request: Nest_Entitlement_V1_ListPermissionRequestsRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListPermissionRequestsResponse {
    let result = try await self.page(
      request, request.page, scope: EntitlementPolicy.scope, fetch: EntitlementStore.permissionRequests,
      present: PermissionRules.present)
    return .with {
      $0.requests = result.items
      $0.page = result.page
    }
  }

  public func checkResourcePermission(
    request: Nest_Entitlement_V1_CheckResourcePermissionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CheckResourcePermissionResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(
      ("instance_id", request.instanceID), ("requester_id", request.requesterID), ("operation", request.operation))
    let now = self.clock.nowUnixMs()
    return try await self.store.database.read { db in
      let instance = try access.authorize(
        try EntitlementStore.instance(request.instanceID, in: db),
        notFound: .notFound("instance", request.instanceID, field: "instance_id"))
      if instance.resourceOwner?.accountID == request.requesterID {
        return .with { $0.allowed = true }
      }
      guard
        let grant = try EntitlementStore.activeGrant(
          instanceID: instance.id, requesterID: request.requesterID, operation: request.operation, nowUnixMs: now,
          in: db)
      else { return .with { $0.allowed = false } }
      return .with {
        $0.allowed = true
        $0.grantExpiresAtUnixMs = grant.grantExpiresAtUnixMs
        $0.requestID = grant.id
      }
    }
  }
}
