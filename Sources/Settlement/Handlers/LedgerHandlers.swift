// Sales, refunds and usage posted to the ledger; balances and transactions read from it.
import GRDB
public import GRPCCore
import NestAuth
import NestDomain
public import NestProto
import NestServiceKit

extension SettlementService {
  public func recordSale(request: Nest_Settlement_V1_RecordSaleRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordSaleResponse
  {
    let access = try Access.forCall()
    try LedgerRules.check(request)
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in try Self.record(request, access: access, now: now, in: db) }
  }

  public func recordSales(request: Nest_Settlement_V1_RecordSalesRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordSalesResponse
  {
    let access = try Access.forCall()
    try BatchItems.check(request.sales.map(\.orderID), field: "sales", key: "order_id")
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "RecordSales", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        try .with { $0.results = try request.sales.map { try Self.result(of: $0, access: access, now: now, in: db) } }
      }
    }
  }

  /// One sale of a batch in its own savepoint: recorded, or refused with the code and message
  /// RecordSale would have answered while the others stand (BatchItems).
  static func result(
    of sale: Nest_Settlement_V1_RecordSaleRequest, access: Access, now: Int64, in db: Database
  ) throws -> Nest_Settlement_V1_SaleResult {
    var result = Nest_Settlement_V1_SaleResult.with { $0.orderID = sale.orderID }
    switch try BatchItems.item(
      in: db,
      {
        try LedgerRules.check(sale)
        return try Self.record(sale, access: access, now: now, in: db)
      })
    {
    case .success(let recorded): result.recorded = recorded
    case .failure(let refused): result.refuse(refused)
    }
    return result
  }

  /// One checked sale, as RecordSale and each sale of RecordSales record it: idempotent on
  /// the order id (a different snapshot is ALREADY_EXISTS) and on the client token.
  static func record(
    _ request: Nest_Settlement_V1_RecordSaleRequest, access: Access, now: Int64, in db: Database
  ) throws -> Nest_Settlement_V1_RecordSaleResponse {
    try ClientTokens.once(
      db, caller: access.caller.subject, method: "RecordSale", token: request.clientToken, request: request,
      nowUnixMs: now
    ) {
      var snapshot = request
      snapshot.clientToken = ""
      if let recorded = try SettlementStore.sale(orderID: request.orderID, in: db) {
        guard recorded.request == snapshot else {
          throw DomainError(
            .alreadyExists, "order \(request.orderID) was already recorded with a different snapshot",
            violations: [.init(field: "order_id", description: "already recorded differently")])
        }
        return try .with {
          $0.transaction = try SettlementStore.transaction(recorded.transactionID, in: db)
          $0.obligation = try recorded.obligationID.flatMap { try SettlementStore.obligation($0, in: db) }
        }
      }
      let transaction = try LedgerRules.saleTransaction(request, id: Identifiers.new("txn"), now: now)
      try SettlementStore.insert(transaction, in: db)
      let obligation = ObligationRules.obligation(
        for: request, id: Identifiers.new("obl"), actor: access.caller.subject, now: now)
      if let obligation { try SettlementStore.save(obligation, in: db) }
      try SettlementStore.insertSale(
        snapshot, transactionID: transaction.id, obligationID: obligation?.id, recordedAt: now, in: db)
      return .with {
        $0.transaction = transaction
        $0.obligation = obligation
      }
    }
  }

  public func recordRefund(request: Nest_Settlement_V1_RecordRefundRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordRefundResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("order_id", request.orderID))
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "RecordRefund", token: request.clientToken, request: request,
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
          guard let sale = try SettlementStore.sale(orderID: orderID, in: db),
            let original = try SettlementStore.transaction(sale.transactionID, in: db)
          else {
            throw DomainError(.failedPrecondition, "no sale is recorded yet for order \(orderID)")
          }
          if index == 0 && sale.request.kind == .linkedOrder {
            throw DomainError(
              .failedPrecondition, "order \(orderID) is a linked order: refund its parent \(sale.request.parentOrderID)"
            )
          }
          let reversal = LedgerRules.reversalTransaction(
            of: original, orderID: orderID, id: Identifiers.new("txn"), now: now)
          try SettlementStore.insert(reversal, in: db)
          try SettlementStore.insertReversal(reversal.id, reverses: original.id, in: db)
          response.transactions.append(reversal)
          if let id = sale.obligationID, let obligation = try SettlementStore.obligation(id, in: db) {
            let changed = ObligationRules.refund(
              obligation, refundedAt: request.refundedAtUnixMs, creditID: Identifiers.new("obl"),
              actor: access.caller.subject, now: now)
            for obligation in changed { try SettlementStore.save(obligation, in: db) }
            response.obligations += changed
          }
        }
        try SettlementStore.insertRefund(request, response: response, in: db)
        return response
      }
    }
  }

  public func recordUsage(request: Nest_Settlement_V1_RecordUsageRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_RecordUsageResponse
  {
    let access = try Access.forCall()
    guard (1...1000).contains(request.records.count) else {
      throw DomainError.invalid("records", "must hold 1 to 1000 records")
    }
    // The fee payer of every instance named, asked of entitlement before anything is written.
    var instances: [String: Nest_Entitlement_V1_ServiceInstance] = [:]
    for id in Set(request.records.map(\.instanceID)) where !id.isEmpty {
      instances[id] = try await self.peers.instance(id)
    }
    let known = instances
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: access.caller.subject, method: "RecordUsage", token: request.clientToken, request: request,
        nowUnixMs: now
      ) {
        try .with {
          $0.results = try request.records.map {
            try Self.charge($0, instance: known[$0.instanceID], access: access, now: now, in: db)
          }
        }
      }
    }
  }

  /// One usage record: INVALID, DUPLICATE (with the first result), UNKNOWN_INSTANCE (or not
  /// the caller's to report), or charged to the instance's fee payer.
  static func charge(
    _ record: Nest_Settlement_V1_UsageRecord, instance: Nest_Entitlement_V1_ServiceInstance?, access: Access,
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
    // The resource owner reports on its own instances (the declared relation); a metering
    // service on any.
    guard let instance, access.isPlatform || instance.resourceOwner?.isCaller(access.caller) == true else {
      result.result = .unknownInstance
      result.message = "no instance \(record.instanceID) whose resources the caller reports on"
      return result
    }
    let payer = instance.feePayer ?? .init()
    let account = try LedgerRules.account(payer)
    let transaction = LedgerRules.usageTransaction(
      record, payer: account, instanceID: instance.id, id: Identifiers.new("txn"), now: now)
    try SettlementStore.insert(transaction, in: db)
    result.result = .accepted
    result.transactionID = transaction.id
    result.feePayer = payer
    result.scenario = instance.scenario
    try SettlementStore.insertUsage(record, result: result, in: db)
    return result
  }

  public func getBalance(request: Nest_Settlement_V1_GetBalanceRequest, context: ServerContext) async throws
    -> Nest_Settlement_V1_GetBalanceResponse
  {
    let access = try Access.forCall()
    let account = try SettlementPolicy.account(request.account, for: access)
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
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    try DomainError.checkRange(request.createdAfterUnixMs, request.createdBeforeUnixMs, field: "created")
    let account: AccountRef? =
      access.isPlatform && request.account == nil ? nil : try SettlementPolicy.account(request.account, for: access)
    let result = try await self.store.database.read {
      try SettlementStore.transactions(account: account, filter: request, page: page, in: $0)
    }
    return .with {
      $0.transactions = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }
}
