// Distribution authorizations: a distributor applies, the ISV approves, rejects, grants or
// revokes; the parties read them; CheckDistribution answers whether B may be sold.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension EntitlementService {
  /// A base service as catalog knows it: NOT_FOUND when it does not exist or the caller may
  /// not see it, FAILED_PRECONDITION when it is itself derived.
  func baseService(_ id: String, _ access: Access, as relation: Relation = .viewer) async throws
    -> Nest_Catalog_V1_Service
  {
    let response: Nest_Catalog_V1_GetServiceResponse
    do {
      response = try await self.catalog.service(id)
    } catch let error as RPCError where error.code == .notFound {
      throw DomainError.notFound("service", id, field: "base_service_id")
    }
    let service = try access.authorize(
      response.service.map { BaseService(service: $0) }, as: relation,
      notFound: .notFound("service", id, field: "base_service_id")
    ).service
    guard service.baseServiceID.isEmpty else {
      throw DomainError(
        .failedPrecondition, "service \(id) is itself derived; only base services are distributed",
        violations: [.init(field: "base_service_id", description: "is a derived service")])
    }
    return service
  }

  public func applyForDistribution(
    request: Nest_Entitlement_V1_ApplyForDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ApplyForDistributionResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("base_service_id", request.baseServiceID))
    guard request.message.count <= 2000 else { throw DomainError.invalid("message", "must be at most 2000 characters") }
    let base = try await self.baseService(request.baseServiceID, access)
    guard base.distributable else {
      throw DomainError(
        .failedPrecondition, "service \(base.id) is not open for distribution",
        violations: [.init(field: "base_service_id", description: "is not distributable")])
    }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "ApplyForDistribution", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let current = try EntitlementStore.latestAuthorization(
          baseServiceID: base.id, distributorID: access.caller.subject, in: db
        ).map { AuthorizationRules.present($0, now: now) }
        let status = try AuthorizationRules.transition(from: current?.status, .apply)
        var authorization = Authorization.with {
          $0.id = Identifiers.new("auth")
          $0.baseServiceID = base.id
          $0.isvID = base.ownerID
          $0.distributorID = access.caller.subject
          $0.applicationMessage = request.message
          $0.createdAtUnixMs = now
        }
        AuthorizationRules.record(&authorization, status, actor: access.caller.subject, reason: "", now: now)
        try EntitlementStore.save(authorization, in: db)
        return .with { $0.authorization = authorization }
      }
    }
  }

  /// An ISV's decision on one of its authorizations, once per client token.
  private func decide<Request: NestMessage, Response: NestMessage>(
    _ id: String, method: String, token: String, request: Request, action: AuthorizationAction,
    terms: Nest_Entitlement_V1_DistributionTerms? = nil, reason: String = "",
    response: @escaping @Sendable (Authorization) -> Response
  ) async throws -> Response {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("authorization_id", id))
    if action == .reject || action == .revoke { try DomainError.requireNonEmpty(("reason", reason)) }
    let now = self.clock.nowUnixMs()
    if action == .approve { try AuthorizationRules.checkTerms(terms, nowUnixMs: now) }
    return try await self.store.database.write { db in
      var authorization = AuthorizationRules.present(
        try access.authorize(
          try EntitlementStore.authorization(id, in: db),
          notFound: .notFound("authorization", id, field: "authorization_id")), now: now)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: method, token: token, request: request, nowUnixMs: now
      ) {
        let status = try AuthorizationRules.transition(from: authorization.status, action)
        if let terms { authorization.terms = terms }
        authorization.statusReason = reason
        AuthorizationRules.record(&authorization, status, actor: access.caller.subject, reason: reason, now: now)
        try EntitlementStore.save(authorization, in: db)
        return response(authorization)
      }
    }
  }

  public func approveDistribution(
    request: Nest_Entitlement_V1_ApproveDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ApproveDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "ApproveDistribution", token: request.clientToken, request: request,
      action: .approve, terms: request.terms ?? nil
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func rejectDistribution(
    request: Nest_Entitlement_V1_RejectDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RejectDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "RejectDistribution", token: request.clientToken, request: request,
      action: .reject, reason: request.reason
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func revokeDistribution(
    request: Nest_Entitlement_V1_RevokeDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_RevokeDistributionResponse {
    try await self.decide(
      request.authorizationID, method: "RevokeDistribution", token: request.clientToken, request: request,
      action: .revoke, reason: request.reason
    ) { authorization in .with { $0.authorization = authorization } }
  }

  public func grantDistribution(
    request: Nest_Entitlement_V1_GrantDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GrantDistributionResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(
      ("base_service_id", request.baseServiceID), ("distributor_id", request.distributorID))
    let now = self.clock.nowUnixMs()
    try AuthorizationRules.checkTerms(request.terms, nowUnixMs: now)
    let base = try await self.baseService(request.baseServiceID, access, as: .owner)
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "GrantDistribution", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let current = try EntitlementStore.latestAuthorization(
          baseServiceID: base.id, distributorID: request.distributorID, in: db
        ).map { AuthorizationRules.present($0, now: now) }
        let status = try AuthorizationRules.transition(from: current?.status, .grant)
        // A pending application is approved with these terms rather than left beside a grant.
        var authorization =
          current.flatMap { $0.status == .pending ? $0 : nil }
          ?? .with {
            $0.id = Identifiers.new("auth")
            $0.baseServiceID = base.id
            $0.isvID = base.ownerID
            $0.distributorID = request.distributorID
            $0.createdAtUnixMs = now
          }
        authorization.terms = request.terms
        authorization.statusReason = ""
        AuthorizationRules.record(&authorization, status, actor: access.caller.subject, reason: "", now: now)
        try EntitlementStore.save(authorization, in: db)
        return .with { $0.authorization = authorization }
      }
    }
  }

  public func getDistributionAuthorization(
    request: Nest_Entitlement_V1_GetDistributionAuthorizationRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_GetDistributionAuthorizationResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("authorization_id", request.authorizationID))
    let now = self.clock.nowUnixMs()
    return try self.store.database.readNow { db in
      let authorization = try access.authorize(
        try EntitlementStore.authorization(request.authorizationID, in: db),
        notFound: .notFound("authorization", request.authorizationID, field: "authorization_id"))
      return .with { $0.authorization = AuthorizationRules.present(authorization, now: now) }
    }
  }

  public func listDistributionAuthorizations(
    request: Nest_Entitlement_V1_ListDistributionAuthorizationsRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_ListDistributionAuthorizationsResponse {
    let result = try await self.page(
      request, request.page, scope: EntitlementPolicy.scope, fetch: EntitlementStore.authorizations,
      present: AuthorizationRules.present)
    return .with {
      $0.authorizations = result.items
      $0.page = result.page
    }
  }

  public func checkDistribution(
    request: Nest_Entitlement_V1_CheckDistributionRequest, context: ServerContext
  ) async throws -> Nest_Entitlement_V1_CheckDistributionResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(
      ("base_service_id", request.baseServiceID), ("distributor_id", request.distributorID))
    let now = self.clock.nowUnixMs()
    return try self.store.database.readNow { db in
      let authorization = try EntitlementStore.latestAuthorization(
        baseServiceID: request.baseServiceID, distributorID: request.distributorID, in: db)
      _ = try access.authorize(
        DistributionPair(distributorID: request.distributorID, isvID: authorization?.isvID ?? ""),
        notFound: .notFound("authorization", "for this service and distributor", field: "distributor_id"))
      try AuthorizationRules.checkSellable(authorization, nowUnixMs: now)
      guard let authorization else { return .init() }
      return try .with {
        $0.authorization = authorization
        $0.instanceCount = try EntitlementStore.liveInstanceCount(authorizationID: authorization.id, in: db)
      }
    }
  }
}
