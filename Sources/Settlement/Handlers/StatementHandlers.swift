// Offline settlement: the pair's obligations, statements issued from them, read back, and
// confirmed settled by the ISV or disputed by the distributor.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension SettlementService {
  public func listObligations(request: Nest_Settlement_V1_ListObligationsRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_ListObligationsResponse
  {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    try DomainError.checkRange(request.accruedAfterUnixMs, request.accruedBeforeUnixMs, field: "accrued")
    let party = try SettlementPolicy.party(isvID: request.isvID, distributorID: request.distributorID, for: access)
    let result = try await self.store.database.read {
      try SettlementStore.obligations(request, party: party, page: page, in: $0)
    }
    return .with {
      $0.obligations = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func issueStatement(request: Nest_Settlement_V1_IssueStatementRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_IssueStatementResponse
  {
    let access = try Access.forCall()
    let caller = access.caller
    let isvID = request.isvID.isEmpty && caller.role == .isv ? caller.subject : request.isvID
    let distributorID =
      request.distributorID.isEmpty && caller.role == .distributor ? caller.subject : request.distributorID
    let now = self.clock.nowUnixMs()
    try StatementRules.check(request, isvID: isvID, distributorID: distributorID, now: now)
    _ = try access.authorize(
      StatementPair(isvID: isvID, distributorID: distributorID),
      notFound: DomainError(.permissionDenied, "a statement of a pair the caller is not party to"))
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "IssueStatement", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let (statement, obligations) = try StatementRules.issue(
          try SettlementStore.openObligations(
            isvID: isvID, distributorID: distributorID, start: request.periodStartUnixMs,
            end: request.periodEndUnixMs, in: db),
          id: Identifiers.new("stmt"), isvID: isvID, distributorID: distributorID, start: request.periodStartUnixMs,
          end: request.periodEndUnixMs, issuedBy: caller.subject, now: now)
        try SettlementStore.save(statement, in: db)
        for obligation in obligations { try SettlementStore.save(obligation, in: db) }
        return .with {
          $0.statement = statement
          $0.obligations = obligations
        }
      }
    }
  }

  /// The statement for this call, as its declaration's relation allows.
  static func statement(_ id: String, _ access: Access, in db: Database) throws -> Statement {
    try DomainError.requireNonEmpty(("statement_id", id))
    return try access.authorize(
      try SettlementStore.statement(id, in: db), notFound: .notFound("statement", id, field: "statement_id"))
  }

  public func getStatement(request: Nest_Settlement_V1_GetStatementRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_GetStatementResponse
  {
    let access = try Access.forCall()
    return try await self.store.database.read { db in
      let statement = try Self.statement(request.statementID, access, in: db)
      return try .with {
        $0.statement = statement
        $0.obligations = try SettlementStore.obligations(statementID: statement.id, in: db)
      }
    }
  }

  public func listStatements(request: Nest_Settlement_V1_ListStatementsRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_ListStatementsResponse
  {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    try DomainError.checkRange(request.issuedAfterUnixMs, request.issuedBeforeUnixMs, field: "issued")
    let party = try SettlementPolicy.party(isvID: request.isvID, distributorID: request.distributorID, for: access)
    let result = try await self.store.database.read {
      try SettlementStore.statements(request, party: party, page: page, in: $0)
    }
    return .with {
      $0.statements = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func confirmStatementSettled(
    request: Nest_Settlement_V1_ConfirmStatementSettledRequest, context: ServerContext
  ) async throws -> Nest_Settlement_V1_ConfirmStatementSettledResponse {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("external_reference", request.externalReference))
    try DomainError.requireAtMost(256, bytes: request.externalReference, field: "external_reference")
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let statement = try Self.statement(request.statementID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "ConfirmStatementSettled", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let (settled, obligations) = try StatementRules.settle(
          statement, obligations: try SettlementStore.obligations(statementID: statement.id, in: db),
          reference: request.externalReference, actor: access.caller.subject, now: now)
        for obligation in obligations { try SettlementStore.save(obligation, in: db) }
        try SettlementStore.save(settled, in: db)
        return .with { $0.statement = settled }
      }
    }
  }

  public func disputeStatement(request: Nest_Settlement_V1_DisputeStatementRequest, context: ServerContext)
    async throws -> Nest_Settlement_V1_DisputeStatementResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("reason", request.reason))
    try DomainError.requireAtMost(1024, bytes: request.reason, field: "reason")
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      let statement = try Self.statement(request.statementID, access, in: db)
      return try ClientTokens.once(
        db, caller: access.caller.subject, method: "DisputeStatement", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        let disputed = try StatementRules.dispute(
          statement, reason: request.reason, actor: access.caller.subject, now: now)
        try SettlementStore.save(disputed, in: db)
        return .with { $0.statement = disputed }
      }
    }
  }
}
