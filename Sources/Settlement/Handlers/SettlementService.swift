// The SettlementService RPCs (DESIGN sections 5 and 8): the double-entry ledger, offline
// obligations and statements, usage charged to the fee payer, and the reconciliation that
// proves it all adds up. Recording RPCs are idempotent on what they record (the order id,
// the usage record id) as well as on client tokens.
import Foundation
import GRDB
public import GRPCCore
import NestAuth
public import NestProto
public import NestServiceKit
import NestTransport

public struct SettlementService: Nest_Settlement_V1_SettlementService.SimpleServiceProtocol {
  typealias Transaction = Nest_Settlement_V1_LedgerTransaction
  typealias Obligation = Nest_Settlement_V1_OfflineObligation

  let store: SettlementStore
  let peers: any SettlementPeers
  let now: @Sendable () -> Int64

  public init(
    store: SettlementStore, peers: any SettlementPeers, now: @escaping @Sendable () -> Int64 = Clock.nowUnixMs
  ) {
    self.store = store
    self.peers = peers
    self.now = now
  }

  // MARK: Sales and refunds

  public func recordSale(request: Nest_Settlement_V1_RecordSaleRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordSaleResponse
  {
    let caller = try Caller.require(.service)
    try LedgerRules.check(request)
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "RecordSale", token: request.clientToken, request: request, nowUnixMs: now
      ) {
        var snapshot = request
        snapshot.clientToken = ""
        if let (recorded, response) = try SettlementStore.sale(orderID: request.orderID, in: db) {
          guard recorded == snapshot else {
            throw DomainError(
              .alreadyExists, "order \(request.orderID) was already recorded with a different snapshot",
              violations: [.init(field: "order_id", description: "already recorded differently")])
          }
          return response
        }
        let transaction = Transaction.with {
          $0.id = Caller.newID("txn")
          $0.kind = .sale
          $0.source = .orderID(request.orderID)
          $0.postings = LedgerRules.sale(
            buyer: try! LedgerRules.account(request.buyer!), seller: try! LedgerRules.account(request.seller!),
            amount: request.amount!, bps: request.commissionBps)
          $0.createdAtUnixMs = now
        }
        try SettlementStore.insert(transaction, in: db)
        var response = Nest_Settlement_V1_RecordSaleResponse.with { $0.transaction = transaction }
        let scenario = request.scenario!
        if request.kind == .customerOrder && LedgerRules.owesOffline(scenario.scenario) {
          let obligation = Obligation.with {
            $0.id = Caller.newID("obl")
            $0.orderID = request.orderID
            $0.isvID = scenario.isvID
            $0.distributorID = scenario.distributorID
            $0.amount = request.wholesaleAmount
            $0.status = .open
            $0.authorizationID = request.authorizationID
            $0.accruedAtUnixMs = request.paidAtUnixMs == 0 ? now : request.paidAtUnixMs
            $0.createdAtUnixMs = now
            $0.updatedAtUnixMs = now
            $0.history = [.entry(Nest_Settlement_V1_ObligationStatus.open, actor: caller.subject, at: now)]
          }
          try SettlementStore.save(obligation, in: db)
          response.obligation = obligation
        }
        try SettlementStore.insertSale(snapshot, response: response, in: db)
        return response
      }
    }
  }

  public func recordRefund(request: Nest_Settlement_V1_RecordRefundRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
  {
    let caller = try Caller.require(.service)
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "RecordRefund", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        if let (recorded, response) = try SettlementStore.refund(orderID: request.orderID, in: db) {
          guard recorded.linkedOrderIds == request.linkedOrderIds else {
            throw DomainError(
              .alreadyExists, "order \(request.orderID) was already refunded with other linked orders",
              violations: [.init(field: "linked_order_ids", description: "differ from the recorded refund")])
          }
          return response
        }
        var response = Nest_Settlement_V1_RecordRefundResponse()
        for (index, orderID) in ([request.orderID] + request.linkedOrderIds).enumerated() {
          guard let (sale, recorded) = try SettlementStore.sale(orderID: orderID, in: db),
            var original = try SettlementStore.transaction(recorded.transaction?.id ?? "", in: db)
          else {
            throw DomainError(.failedPrecondition, "no sale is recorded yet for order \(orderID)")
          }
          if index == 0 && sale.kind == .linkedOrder {
            throw DomainError(
              .failedPrecondition, "order \(orderID) is a linked order: refund its parent \(sale.parentOrderID)")
          }
          let reversal = Transaction.with {
            $0.id = Caller.newID("txn")
            $0.kind = .refund
            $0.source = .orderID(orderID)
            $0.postings = LedgerRules.reversal(of: original.postings)
            $0.reversesTransactionID = original.id
            $0.createdAtUnixMs = now
          }
          try SettlementStore.insert(reversal, in: db)
          original.reversedByTransactionID = reversal.id
          try SettlementStore.updateBody(original, in: db)
          response.transactions.append(reversal)
          if var obligation = recorded.obligation.flatMap({ try? SettlementStore.obligation($0.id, in: db) }) {
            response.obligations += try Self.cancel(
              &obligation, at: request.refundedAtUnixMs, by: caller, now: now, in: db)
          }
        }
        try SettlementStore.insertRefund(request, response: response, in: db)
        return response
      }
    }
  }

  /// A refunded sale's obligation: CANCELLED if still OPEN; once statemented, OFFSET by a new
  /// OPEN credit for the next statement.
  static func cancel(
    _ obligation: inout Obligation, at refundedAt: Int64, by caller: Principal, now: Int64, in db: Database
  )
    throws -> [Obligation]
  {
    obligation.updatedAtUnixMs = now
    guard obligation.status != .open else {
      obligation.status = .cancelled
      obligation.history.append(.entry(obligation.status, actor: caller.subject, reason: "order refunded", at: now))
      try SettlementStore.save(obligation, in: db)
      return [obligation]
    }
    obligation.status = .offset
    obligation.history.append(.entry(obligation.status, actor: caller.subject, reason: "order refunded", at: now))
    try SettlementStore.save(obligation, in: db)
    var credit = obligation
    credit.id = Caller.newID("obl")
    credit.amount?.amountMinor = -(obligation.amount?.amountMinor ?? 0)
    credit.status = .open
    credit.statementID = ""
    credit.offsetsObligationID = obligation.id
    credit.accruedAtUnixMs = refundedAt == 0 ? now : refundedAt
    credit.createdAtUnixMs = now
    credit.history = [
      .entry(Nest_Settlement_V1_ObligationStatus.open, actor: caller.subject, reason: "credit", at: now)
    ]
    try SettlementStore.save(credit, in: db)
    return [obligation, credit]
  }

  // MARK: Usage

  public func recordUsage(request: Nest_Settlement_V1_RecordUsageRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordUsageResponse
  {
    let caller = try Caller.require(.service, .isv, .distributor, .customer)
    guard (1...1000).contains(request.records.count) else {
      throw DomainError.invalid([.init(field: "records", description: "must hold 1 to 1000 records")])
    }
    // The fee payer of every instance named, asked of entitlement before anything is written.
    var instances: [String: Nest_Entitlement_V1_ServiceInstance?] = [:]
    for id in Set(request.records.map(\.instanceID)) where !id.isEmpty {
      instances[id] = try await self.peers.instance(id)
    }
    let known = instances
    let now = self.now()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "RecordUsage", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var results: [Nest_Settlement_V1_UsageResult] = []
        for record in request.records {
          results.append(
            try Self.charge(record, instance: known[record.instanceID] ?? nil, caller: caller, now: now, in: db))
        }
        return .with { $0.results = results }
      }
    }
  }

  static func charge(
    _ record: Nest_Settlement_V1_UsageRecord, instance: Nest_Entitlement_V1_ServiceInstance?, caller: Principal,
    now: Int64, in db: Database
  ) throws -> Nest_Settlement_V1_UsageResult {
    var result = Nest_Settlement_V1_UsageResult.with { $0.recordID = record.recordID }
    if let problem = LedgerRules.problem(with: record) {
      result.result = .invalid
      result.message = problem
      return result
    }
    if let (recorded, first) = try SettlementStore.usage(recordID: record.recordID, in: db) {
      result = first
      result.result = .duplicate
      result.message =
        recorded == record ? "already recorded" : "already recorded; content differs from the recorded one"
      return result
    }
    guard let instance,
      caller.role == .service
        || (instance.resourceOwner?.role == caller.role && instance.resourceOwner?.accountID == caller.subject),
      let payer = instance.feePayer, let account = try? LedgerRules.account(payer)
    else {
      result.result = .unknownInstance
      result.message = "no instance \(record.instanceID) whose resources the caller reports on"
      return result
    }
    let transaction = Transaction.with {
      $0.id = Caller.newID("txn")
      $0.kind = .usage
      $0.source = .usageRecordID(record.recordID)
      $0.instanceID = instance.id
      $0.postings = LedgerRules.usage(payer: account, cost: record.cost!)
      $0.createdAtUnixMs = now
    }
    try SettlementStore.insert(transaction, in: db)
    result.result = .accepted
    result.transactionID = transaction.id
    result.feePayer = payer
    result.scenario = instance.scenario
    try SettlementStore.insertUsage(record, result: result, in: db)
    return result
  }

  // MARK: Balances and transactions

  /// The account a caller asks about: its own when unset; any for an operator.
  static func account(_ requested: AccountRef?, for caller: Principal) throws -> AccountRef {
    if caller.role == .service {
      throw DomainError(.permissionDenied, "services do not read balances")
    }
    guard let requested else {
      guard caller.role != .operator else {
        throw DomainError.invalid([.init(field: "account", description: "is required for an operator")])
      }
      return try LedgerRules.account(
        .with {
          $0.role = caller.role; $0.accountID = caller.subject
        })
    }
    switch requested.kind {
    case .platform, .cloud:
      guard requested.accountID.isEmpty else {
        throw DomainError.invalid([
          .init(field: "account.account_id", description: "must be empty for PLATFORM and CLOUD")
        ])
      }
    case .customer, .distributor, .isv:
      try DomainError.requireNonEmpty(("account.account_id", requested.accountID))
    default:
      throw DomainError.invalid([.init(field: "account.kind", description: "is required")])
    }
    guard caller.role != .operator else { return requested }
    let own = try LedgerRules.account(
      .with {
        $0.role = caller.role; $0.accountID = caller.subject
      })
    guard requested == own else {
      throw DomainError(.permissionDenied, "an account other than the caller's own")
    }
    return requested
  }

  public func getBalance(request: Nest_Settlement_V1_GetBalanceRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_GetBalanceResponse
  {
    let caller = try Caller.require()
    let account = try Self.account(request.account, for: caller)
    let (amounts, asOf) = try await self.store.database.read { try SettlementStore.balance(of: account, in: $0) }
    return .with {
      $0.balance = .with {
        $0.account = account
        $0.amounts = amounts
        $0.asOfUnixMs = asOf
      }
    }
  }

  public func listTransactions(request: Nest_Settlement_V1_ListTransactionsRequest, context: ServerContext)
    async throws -> Nest_Settlement_V1_ListTransactionsResponse
  {
    let caller = try Caller.require()
    let page = try PageQuery(request.page)
    try Self.checkRange(request.createdAfterUnixMs, request.createdBeforeUnixMs, field: "created")
    let account: AccountRef? =
      caller.role == .operator && request.account == nil ? nil : try Self.account(request.account, for: caller)
    let result = try await self.store.database.read {
      try SettlementStore.transactions(account: account, filter: request, page: page, in: $0)
    }
    return .with {
      $0.transactions = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  static func checkRange(_ after: Int64, _ before: Int64, field: String) throws(DomainError) {
    if after > 0 && before > 0 && before <= after {
      throw .invalid([.init(field: "\(field)_before_unix_ms", description: "must be after \(field)_after_unix_ms")])
    }
  }

  // MARK: Obligations and statements

  public func listObligations(request: Nest_Settlement_V1_ListObligationsRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_ListObligationsResponse
  {
    let caller = try Caller.require(.isv, .distributor, .operator)
    let page = try PageQuery(request.page)
    try Self.checkRange(request.accruedAfterUnixMs, request.accruedBeforeUnixMs, field: "accrued")
    var party: String? = nil
    if caller.role == .isv || caller.role == .distributor {
      // The caller's own side of the pair may only name the caller.
      let own = caller.role == .isv ? request.isvID : request.distributorID
      guard own.isEmpty || own == caller.subject else {
        throw DomainError(.permissionDenied, "obligations of another account")
      }
      party = caller.subject
    }
    let query = party
    let result = try await self.store.database.read {
      try SettlementStore.obligations(request, party: query, page: page, in: $0)
    }
    return .with {
      $0.obligations = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  public func issueStatement(request: Nest_Settlement_V1_IssueStatementRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_IssueStatementResponse
  {
    let caller = try Caller.require(.isv, .distributor, .operator)
    let isvID = request.isvID.isEmpty && caller.role == .isv ? caller.subject : request.isvID
    let distributorID =
      request.distributorID.isEmpty && caller.role == .distributor ? caller.subject : request.distributorID
    try DomainError.requireNonEmpty(("isv_id", isvID), ("distributor_id", distributorID))
    let now = self.now()
    var violations: [FieldViolation] = []
    if request.periodEndUnixMs <= request.periodStartUnixMs {
      violations.append(.init(field: "period_end_unix_ms", description: "must be after period_start_unix_ms"))
    }
    if request.periodEndUnixMs > now {
      violations.append(.init(field: "period_end_unix_ms", description: "must not be in the future"))
    }
    guard violations.isEmpty else { throw DomainError.invalid(violations) }
    if caller.role == .isv && isvID != caller.subject || caller.role == .distributor && distributorID != caller.subject
    {
      throw DomainError(.permissionDenied, "a statement of a pair the caller is not party to")
    }
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: caller.subject, method: "IssueStatement", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        var obligations = try SettlementStore.openObligations(
          isvID: isvID, distributorID: distributorID, start: request.periodStartUnixMs, end: request.periodEndUnixMs,
          in: db)
        guard !obligations.isEmpty else {
          throw DomainError(.failedPrecondition, "no OPEN obligation of \(distributorID) to \(isvID) in the period")
        }
        let statement = Nest_Settlement_V1_Statement.with {
          $0.id = Caller.newID("stmt")
          $0.isvID = isvID
          $0.distributorID = distributorID
          $0.periodStartUnixMs = request.periodStartUnixMs
          $0.periodEndUnixMs = request.periodEndUnixMs
          $0.obligationIds = obligations.map(\.id)
          $0.totals = MoneyMath.totals(obligations.compactMap(\.amount))
          $0.status = .issued
          $0.issuedBy = caller.subject
          $0.issuedAtUnixMs = now
          $0.history = [.entry(Nest_Settlement_V1_StatementStatus.issued, actor: caller.subject, at: now)]
        }
        for index in obligations.indices {
          obligations[index].status = .statemented
          obligations[index].statementID = statement.id
          obligations[index].updatedAtUnixMs = now
          obligations[index].history.append(.entry(obligations[index].status, actor: caller.subject, at: now))
          try SettlementStore.save(obligations[index], in: db)
        }
        try SettlementStore.save(statement, in: db)
        return .with {
          $0.statement = statement
          $0.obligations = obligations
        }
      }
    }
  }

  /// A statement the caller is party to (as `role`): NOT_FOUND otherwise.
  static func statement(_ id: String, for caller: Principal, in db: Database) throws -> Nest_Settlement_V1_Statement {
    guard let statement = try SettlementStore.statement(id, in: db),
      caller.role == .isv && statement.isvID == caller.subject
        || caller.role == .distributor
          && statement.distributorID == caller.subject
    else { throw DomainError.notFound("statement", id, field: "statement_id") }
    return statement
  }

  public func confirmStatementSettled(
    request: Nest_Settlement_V1_ConfirmStatementSettledRequest, context: ServerContext
  ) async throws -> Nest_Settlement_V1_ConfirmStatementSettledResponse {
    let caller = try Caller.require(.isv)
    try DomainError.requireNonEmpty(
      ("statement_id", request.statementID), ("external_reference", request.externalReference))
    guard request.externalReference.utf8.count <= 256 else {
      throw DomainError.invalid([.init(field: "external_reference", description: "must be at most 256 bytes")])
    }
    let now = self.now()
    return try await self.store.database.write { db in
      var statement = try Self.statement(request.statementID, for: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "ConfirmStatementSettled", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        guard statement.status == .issued || statement.status == .disputed else {
          throw DomainError(.failedPrecondition, "statement \(statement.id) is already \(statusName(statement.status))")
        }
        statement.status = .settled
        statement.externalReference = request.externalReference
        statement.settledAtUnixMs = now
        statement.history.append(.entry(statement.status, actor: caller.subject, at: now))
        for var obligation in try SettlementStore.obligations(statementID: statement.id, in: db)
        where obligation.status == .statemented {
          obligation.status = .settled
          obligation.updatedAtUnixMs = now
          obligation.history.append(.entry(obligation.status, actor: caller.subject, at: now))
          try SettlementStore.save(obligation, in: db)
        }
        try SettlementStore.save(statement, in: db)
        return .with { $0.statement = statement }
      }
    }
  }

  public func disputeStatement(request: Nest_Settlement_V1_DisputeStatementRequest, context: ServerContext)
    async throws -> Nest_Settlement_V1_DisputeStatementResponse
  {
    let caller = try Caller.require(.distributor)
    try DomainError.requireNonEmpty(("statement_id", request.statementID), ("reason", request.reason))
    guard request.reason.utf8.count <= 1024 else {
      throw DomainError.invalid([.init(field: "reason", description: "must be at most 1024 bytes")])
    }
    let now = self.now()
    return try await self.store.database.write { db in
      var statement = try Self.statement(request.statementID, for: caller, in: db)
      return try ClientTokens.once(
        db, caller: caller.subject, method: "DisputeStatement", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        guard statement.status == .issued else {
          throw DomainError(
            .failedPrecondition, "statement \(statement.id) is \(statusName(statement.status)), not ISSUED")
        }
        statement.status = .disputed
        statement.disputeReason = request.reason
        statement.disputedAtUnixMs = now
        statement.history.append(.entry(statement.status, actor: caller.subject, reason: request.reason, at: now))
        try SettlementStore.save(statement, in: db)
        return .with { $0.statement = statement }
      }
    }
  }

  // MARK: Reconciliation

  public func reconcile(request: Nest_Settlement_V1_ReconcileRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_ReconcileResponse
  {
    _ = try Caller.require(.operator)
    let now = self.now()
    guard request.asOfUnixMs <= now else {
      throw DomainError.invalid([.init(field: "as_of_unix_ms", description: "must not be in the future")])
    }
    let asOf = request.asOfUnixMs == 0 ? now : request.asOfUnixMs
    var orders: [Nest_Order_V1_Order]? = nil
    var instanceOrders: [String]? = nil
    if request.checkOrders {
      orders = try await self.peers.paidOrders().filter { $0.paidAtUnixMs <= asOf }
      instanceOrders = try await self.peers.instanceOrderIDs()
    }
    let (paid, instances) = (orders, instanceOrders)
    var response = try await self.store.database.read { db in
      let sales = try Reconciliation.Sales(in: db)
      var response = try Reconciliation.ledger(asOf: asOf, sales: sales, in: db)
      if let paid, let instances {
        response.discrepancies += Reconciliation.orders(paid, instanceOrderIDs: instances, asOf: asOf, sales: sales)
        response.ordersChecked = UInt64(paid.count)
      }
      return response
    }
    response.ok = response.discrepancies.isEmpty
    response.checkedAtUnixMs = now
    return response
  }
}
