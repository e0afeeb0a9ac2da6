// Offline settlement: the obligation a sale of scenario 1, 2 or 4 records ("the distributor
// owes the ISV the wholesale amount"), what a refund does to it (CANCELLED while OPEN; once
// on a statement, OFFSET by an OPEN credit for the next one), and the statements that
// gather a pair's OPEN obligations for a period: ISSUED, then SETTLED by the ISV with its
// payment reference, or DISPUTED by the distributor. Pure.
public import NestDomain
public import NestProto

public typealias Obligation = Nest_Settlement_V1_OfflineObligation
public typealias Statement = Nest_Settlement_V1_Statement

public enum ObligationRules {
  /// The obligation a recorded sale owes offline; nil for a sale that owes none.
  public static func obligation(
    for sale: Nest_Settlement_V1_RecordSaleRequest, id: String, actor: String, now: Int64
  ) -> Obligation? {
    guard sale.kind == .customerOrder, let scenario = sale.scenario, LedgerRules.owesOffline(scenario.scenario) else {
      return nil
    }
    return .with {
      $0.id = id
      $0.orderID = sale.orderID
      $0.isvID = scenario.isvID
      $0.distributorID = scenario.distributorID
      $0.amount = sale.wholesaleAmount
      $0.status = .open
      $0.authorizationID = sale.authorizationID
      $0.accruedAtUnixMs = sale.paidAtUnixMs == 0 ? now : sale.paidAtUnixMs
      $0.createdAtUnixMs = now
      $0.updatedAtUnixMs = now
      $0.history = [.entry(Nest_Settlement_V1_ObligationStatus.open, actor: actor, at: now)]
    }
  }

  /// A refunded sale's obligation: CANCELLED if still OPEN; once statemented, OFFSET, and a
  /// new OPEN credit (its negative) for the next statement. Returns what changed or is new.
  public static func refund(
    _ obligation: Obligation, refundedAt: Int64, creditID: String, actor: String, now: Int64
  ) -> [Obligation] {
    var changed = obligation
    changed.updatedAtUnixMs = now
    guard obligation.status != .open else {
      changed.status = .cancelled
      changed.history.append(.entry(changed.status, actor: actor, reason: "order refunded", at: now))
      return [changed]
    }
    changed.status = .offset
    changed.history.append(.entry(changed.status, actor: actor, reason: "order refunded", at: now))
    var credit = obligation
    credit.id = creditID
    credit.amount?.amountMinor = -(obligation.amount?.amountMinor ?? 0)
    credit.status = .open
    credit.statementID = ""
    credit.offsetsObligationID = obligation.id
    credit.accruedAtUnixMs = refundedAt == 0 ? now : refundedAt
    credit.createdAtUnixMs = now
    credit.updatedAtUnixMs = now
    credit.history = [.entry(Nest_Settlement_V1_ObligationStatus.open, actor: actor, reason: "credit", at: now)]
    return [changed, credit]
  }
}

public enum StatementRules {
  /// The pair and period of an IssueStatement request, the caller's own side filled in.
  public static func check(
    _ request: Nest_Settlement_V1_IssueStatementRequest, isvID: String, distributorID: String, now: Int64
  ) throws(DomainError) {
    try DomainError.requireNonEmpty(("isv_id", isvID), ("distributor_id", distributorID))
    var violations: [DomainError.Violation] = []
    if request.periodEndUnixMs <= request.periodStartUnixMs {
      violations.append(.init(field: "period_end_unix_ms", description: "must be after period_start_unix_ms"))
    }
    if request.periodEndUnixMs > now {
      violations.append(.init(field: "period_end_unix_ms", description: "must not be in the future"))
    }
    guard violations.isEmpty else { throw .invalid(violations) }
  }

  /// A statement of `obligations` (the pair's OPEN ones in the period), ISSUED; the
  /// obligations STATEMENTED on it.
  public static func issue(
    _ obligations: [Obligation], id: String, isvID: String, distributorID: String, start: Int64, end: Int64,
    issuedBy: String, now: Int64
  ) throws(DomainError) -> (Statement, [Obligation]) {
    guard !obligations.isEmpty else {
      throw DomainError(.failedPrecondition, "no OPEN obligation of \(distributorID) to \(isvID) in the period")
    }
    let statement = Statement.with {
      $0.id = id
      $0.isvID = isvID
      $0.distributorID = distributorID
      $0.periodStartUnixMs = start
      $0.periodEndUnixMs = end
      $0.obligationIds = obligations.map(\.id)
      $0.totals = MoneyMath.totals(obligations.compactMap(\.amount))
      $0.status = .issued
      $0.issuedBy = issuedBy
      $0.issuedAtUnixMs = now
      $0.history = [.entry(Nest_Settlement_V1_StatementStatus.issued, actor: issuedBy, at: now)]
    }
    let statemented = obligations.map { obligation in
      var obligation = obligation
      obligation.status = .statemented
      obligation.statementID = id
      obligation.updatedAtUnixMs = now
      obligation.history.append(.entry(obligation.status, actor: issuedBy, at: now))
      return obligation
    }
    return (statement, statemented)
  }

  /// ISSUED or DISPUTED -> SETTLED with the ISV's reference; its STATEMENTED obligations too.
  public static func settle(
    _ statement: Statement, obligations: [Obligation], reference: String, actor: String, now: Int64
  ) throws(DomainError) -> (Statement, [Obligation]) {
    guard statement.status == .issued || statement.status == .disputed else {
      throw DomainError(.failedPrecondition, "statement \(statement.id) is already \(statusName(statement.status))")
    }
    var settled = statement
    settled.status = .settled
    settled.externalReference = reference
    settled.settledAtUnixMs = now
    settled.history.append(.entry(settled.status, actor: actor, at: now))
    let changed = obligations.filter { $0.status == .statemented }.map { obligation in
      var obligation = obligation
      obligation.status = .settled
      obligation.updatedAtUnixMs = now
      obligation.history.append(.entry(obligation.status, actor: actor, at: now))
      return obligation
    }
    return (settled, changed)
  }

  /// ISSUED -> DISPUTED with the distributor's reason.
  public static func dispute(_ statement: Statement, reason: String, actor: String, now: Int64) throws(DomainError)
    -> Statement
  {
    guard statement.status == .issued else {
      throw DomainError(.failedPrecondition, "statement \(statement.id) is \(statusName(statement.status)), not ISSUED")
    }
    var disputed = statement
    disputed.status = .disputed
    disputed.disputeReason = reason
    disputed.disputedAtUnixMs = now
    disputed.history.append(.entry(disputed.status, actor: actor, reason: reason, at: now))
    return disputed
  }
}
