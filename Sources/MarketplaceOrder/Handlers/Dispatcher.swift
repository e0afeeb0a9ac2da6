// The outbox dispatcher: delivers each order's pending rows step by step (the rows one commit
// queued together, such as a payment's instance and sales, at once; the next step when they
// are all acknowledged), several orders at once, retrying failures with capped exponential
// backoff until the target acknowledges. A round's instances go to entitlement in one
// CreateServiceInstances call, its sales to settlement in one RecordSales call. Every target
// is idempotent on the row's order (the row's key), so a row attempted twice (a crash between
// the call and the acknowledgement) changes nothing. What each row asks and how an outcome is
// recorded are the outbox's rules (DeliveryRules); this part only calls.
import Foundation
import GRDB
import GRPCCore
public import Logging
import Metrics
import NestDomain
import NestProto
import NestServiceKit
public import ServiceLifecycle
import Tracing

public final class Dispatcher: Service, Sendable {
  let store: OrderStore
  let peers: any OrderPeers
  let logger: Logger
  let clock: NestClock
  let initialBackoff: Duration
  let maximumBackoff: Duration
  let concurrency: Int
  private let wakeups = Wakeups()

  public init(
    store: OrderStore, peers: any OrderPeers, logger: Logger, clock: NestClock = .system,
    initialBackoff: Duration = .milliseconds(100), maximumBackoff: Duration = .seconds(5), concurrency: Int = 16
  ) {
    self.store = store
    self.peers = peers
    self.logger = logger
    self.clock = clock
    self.initialBackoff = initialBackoff
    self.maximumBackoff = maximumBackoff
    self.concurrency = concurrency
  }

  /// New rows were queued: look now rather than at the next tick.
  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    await self.wakeups.run(every: .milliseconds(200)) { await self.dispatchDue() }
  }

  /// Attempts every due row; repeats while attempts succeed (an acknowledged row makes its
  /// order's next row due).
  public func dispatchDue() async {
    while !Task.isCancelled {
      let due: [Delivery]
      let orders: [String: Order]
      do {
        // The rows and their orders from one snapshot, in one read.
        (due, orders) = try await self.store.database.read { db in
          let due = try OrderStore.dueDeliveries(nowUnixMs: self.clock.nowUnixMs(), limit: 256, in: db)
          let orders = try OrderStore.orders(ids: Array(Set(due.map(\.orderID))), in: db)
          return (due, Dictionary(orders.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first }))
        }
      } catch is CancellationError {
        return
      } catch {
        self.logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
        return
      }
      guard !due.isEmpty else {
        await self.measureOutbox()
        return
      }
      // Attempts run concurrently (the round's sales together, in one call); their outcomes
      // are recorded together, in one commit.
      let outcomes = await withTaskGroup(of: [Outcome].self) { group in
        var attempts = Self.attempts(due).makeIterator()
        for _ in 0..<self.concurrency {
          guard let rows = attempts.next() else { break }
          group.addTask { await self.attempt(rows, orders: orders) }
        }
        var outcomes: [Outcome] = []
        for await some in group {
          outcomes += some
          if let rows = attempts.next() { group.addTask { await self.attempt(rows, orders: orders) } }
        }
        return outcomes
      }
      await self.record(outcomes)
      if !outcomes.contains(where: { $0.failure == nil }) { return }  // everything failed: wait for the backoff
    }
  }

  /// Whether the rows of `kind` due in a round go together, in one call to their target.
  static func isBatched(_ kind: Nest_Order_V1_DeliveryKind) -> Bool { kind == .createInstance || kind == .recordSale }

  /// A round's rows as attempts: the rows of a batched kind in calls of up to `BatchItems.limit`
  /// rows of that kind, each order at most once per call; every other row alone.
  static func attempts(_ due: [Delivery]) -> [[Delivery]] {
    var batches: [[Delivery]] = []
    var others: [[Delivery]] = []
    for row in due {
      guard Self.isBatched(row.kind) else {
        others.append([row])
        continue
      }
      if let index = batches.firstIndex(where: {
        $0[0].kind == row.kind && $0.count < BatchItems.limit && !$0.contains { $0.orderID == row.orderID }
      }) {
        batches[index].append(row)
      } else {
        batches.append([row])
      }
    }
    return batches + others
  }

  /// One attempt at `rows` (one of `attempts`): a batch in one call, any other row alone.
  func attempt(_ rows: [Delivery], orders: [String: Order]) async -> [Outcome] {
    if let kind = rows.first?.kind, Self.isBatched(kind) { return await self.attemptBatch(rows, orders: orders) }
    var outcomes: [Outcome] = []
    for row in rows { outcomes.append(await self.attempt(row, order: orders[row.orderID])) }
    return outcomes
  }

  /// A row's attempt as its span shows it.
  static func describe(_ row: Delivery, in span: any Span) {
    span.attributes["nest.delivery.id"] = row.id
    span.attributes["nest.delivery.attempt"] = Int(row.attempts) + 1
    span.attributes["nest.order.id"] = row.orderID
  }

  /// A status code's name (as `Status.Code` prints it), or its number when it has none.
  static func codeName(_ code: Int32) -> String {
    Status.Code(rawValue: Int(code)).map { "\($0)" } ?? "\(code)"
  }

  /// What one attempt at one row came to.
  struct Outcome: Sendable {
    var delivery: Delivery
    var acknowledgement: Delivery.OneOf_Acknowledgement?
    /// CREATE_INSTANCE: the instance the order is fulfilled with.
    var instanceID: String?
    var failure: (code: Int32, message: String)?
  }

  /// The outbox as operators watch it: rows pending and how long the oldest has waited.
  func measureOutbox() async {
    let now = self.clock.nowUnixMs()
    let pending: Int
    let oldest: Int64?
    do {
      (pending, oldest) = try await self.store.database.read { try OrderStore.pendingDeliveries(in: $0) }
    } catch {
      self.logger.debug("cannot measure the outbox", metadata: ["error": "\(error)"])
      return
    }
    Gauge(label: "nest_outbox_pending").record(pending)
    Gauge(label: "nest_outbox_oldest_age_seconds").record(oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0)
  }

  /// One attempt at one row (of `order`, as read with the row), as a span of the trace of
  /// the call that queued it.
  func attempt(_ delivery: Delivery, order: Order?) async -> Outcome {
    await withSpan(
      "deliver \(statusName(delivery.kind))", context: TraceContext.continuing(delivery.traceParent), ofKind: .consumer
    ) { span in
      Self.describe(delivery, in: span)
      let outcome = await self.call(delivery, order: order)
      if let failure = outcome.failure { span.setStatus(SpanStatus(code: .error, message: failure.message)) }
      return outcome
    }
  }

  /// The rows of one batch (one kind) in one call. Each row has its own span in the trace of
  /// the call that queued it, as a single row's attempt has; the call is made under the
  /// first one's.
  func attemptBatch(_ rows: [Delivery], orders: [String: Order]) async -> [Outcome] {
    guard !rows.isEmpty else { return [] }
    let spans = rows.map { row in
      let span = InstrumentationSystem.tracer.startSpan(
        "deliver \(statusName(row.kind))", context: TraceContext.continuing(row.traceParent), ofKind: .consumer)
      Self.describe(row, in: span)
      span.attributes["nest.delivery.batch"] = rows.count
      return span
    }
    let outcomes = await ServiceContext.$current.withValue(spans.first?.context) {
      await self.callBatch(rows, orders: orders)
    }
    for (span, outcome) in zip(spans, outcomes) {
      if let failure = outcome.failure { span.setStatus(SpanStatus(code: .error, message: failure.message)) }
      span.end()
    }
    return outcomes
  }

  /// One batch call for `rows`: each row acknowledged or failed by the result for its order,
  /// or all of them failed by the call's error.
  private func callBatch(_ rows: [Delivery], orders: [String: Order]) async -> [Outcome] {
    var outcomes = rows.map { Outcome(delivery: $0) }
    var sent: [(index: Int, order: Order)] = []
    for (index, row) in rows.enumerated() {
      if let order = orders[row.orderID] {
        sent.append((index, order))
      } else {
        outcomes[index].failure = (
          Int32(RPCError.Code.failedPrecondition.rawValue), "failedPrecondition: order \(row.orderID) is missing"
        )
      }
    }
    if let kind = rows.first?.kind, !sent.isEmpty {
      do {
        let results = try await self.callBatch(kind, for: sent.map(\.order))
        for (index, order) in sent {
          guard let result = results[order.id] else {
            outcomes[index].failure = (
              Int32(RPCError.Code.internalError.rawValue), "internalError: no result for the order"
            )
            continue
          }
          outcomes[index].acknowledgement = result.acknowledgement
          outcomes[index].instanceID = result.instanceID
          outcomes[index].failure = result.failure
        }
      } catch {
        let (status, cause) = RPCError.status(of: error)
        if let cause {
          self.logger.error(
            "batch delivery failed here",
            metadata: ["deliveries": "\(sent.map { rows[$0.index].id })", "cause": "\(cause)"])
        }
        for (index, _) in sent {
          outcomes[index].failure = (Int32(status.code.rawValue), "\(status.code): \(status.message)")
        }
      }
    }
    for outcome in outcomes {
      self.count(outcome)
      if let failure = outcome.failure {
        self.logger.debug(
          "delivery failed",
          metadata: [
            "delivery": "\(outcome.delivery.id)", "kind": "\(outcome.delivery.kind)", "error": "\(failure.message)",
          ])
      }
    }
    return outcomes
  }

  /// One batch call of `kind` for `orders`: what the target answered for each order, by its
  /// id (an order the target answered nothing for is missing).
  private func callBatch(_ kind: Nest_Order_V1_DeliveryKind, for orders: [Order]) async throws -> [String: Outcome] {
    var answered: [String: Outcome] = [:]
    switch kind {
    case .createInstance:
      for result in try await self.peers.createInstances(orders.map(DeliveryRules.instanceRequest(for:))) {
        let id = result.instance?.id ?? ""
        answered[result.orderID] =
          answered[result.orderID]
          ?? Self.outcome(
            result.errorCode, result.errorMessage, acknowledgement: id.isEmpty ? nil : .instanceID(id), instanceID: id,
            otherwise: "entitlement answered no instance")
      }
    case .recordSale:
      for result in try await self.peers.recordSales(orders.map(DeliveryRules.saleRequest(for:))) {
        answered[result.orderID] =
          answered[result.orderID]
          ?? Self.outcome(
            result.errorCode, result.errorMessage,
            acknowledgement: result.recorded?.transaction.map { .transactionID($0.id) },
            otherwise: "settlement answered no transaction")
      }
    default:
      throw DomainError(.failedPrecondition, "delivery kind \(statusName(kind)) is not sent in batches")
    }
    return answered
  }

  /// One item's result of a batch call as an outcome (its row filled in by the caller): the
  /// item's refusal when it has an error code, else its acknowledgement, else (the answer
  /// lacks what acknowledges it) INTERNAL with `otherwise`.
  static func outcome(
    _ errorCode: Int32, _ errorMessage: String, acknowledgement: Delivery.OneOf_Acknowledgement?,
    instanceID: String? = nil, otherwise: String
  ) -> Outcome {
    var outcome = Outcome(delivery: Delivery())
    if errorCode != 0 {
      outcome.failure = (errorCode, "\(Self.codeName(errorCode)): \(errorMessage)")
    } else if let acknowledgement {
      outcome.acknowledgement = acknowledgement
      outcome.instanceID = instanceID
    } else {
      outcome.failure = (Int32(RPCError.Code.internalError.rawValue), "internalError: \(otherwise)")
    }
    return outcome
  }

  /// The attempt and, when it failed, the failure, in the outbox's metrics.
  private func count(_ outcome: Outcome) {
    let dimensions = [("target", statusName(outcome.delivery.target)), ("kind", statusName(outcome.delivery.kind))]
    Counter(label: "nest_outbox_delivery_attempts_total", dimensions: dimensions).increment()
    if let failure = outcome.failure {
      Counter(
        label: "nest_outbox_delivery_failures_total",
        dimensions: dimensions + [("code", Self.codeName(failure.code))]
      ).increment()
    }
  }

  /// One call to the row's target.
  private func call(_ delivery: Delivery, order: Order?) async -> Outcome {
    var outcome = Outcome(delivery: delivery)
    let key = delivery.idempotencyKey
    defer { self.count(outcome) }
    do {
      guard let order else {
        throw DomainError(.failedPrecondition, "order \(delivery.orderID) is missing")
      }
      switch delivery.kind {
      case .renewInstance:
        let instance = try await self.peers.renewInstance(DeliveryRules.renewRequest(for: order, key: key))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .changeInstance:
        let instance = try await self.peers.changeInstance(DeliveryRules.changeRequest(for: order, key: key))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .recordRefund:
        let refund = try await self.peers.recordRefund(DeliveryRules.refundRequest(for: order, key: key))
        outcome.acknowledgement = .transactionID(refund.transactions.first?.id ?? "")
      case .releaseInstance:
        try await self.peers.releaseInstance(try DeliveryRules.releaseRequest(for: order, key: key))
      case .releaseSlot:
        try await self.peers.releaseSlot(orderID: order.id)
      default:
        throw DomainError(.failedPrecondition, "unknown delivery kind \(delivery.kind)")
      }
    } catch {
      let (status, cause) = RPCError.status(of: error)
      outcome.failure = (Int32(status.code.rawValue), "\(status.code): \(status.message)")
      if let cause {
        self.logger.error("delivery failed here", metadata: ["delivery": "\(delivery.id)", "cause": "\(cause)"])
      } else {
        self.logger.debug(
          "delivery failed", metadata: ["delivery": "\(delivery.id)", "kind": "\(delivery.kind)", "error": "\(error)"])
      }
    }
    return outcome
  }

  /// Records a round's outcomes in one transaction: acknowledged rows DELIVERED (and their
  /// orders fulfilled), failed ones rescheduled with backoff.
  private func record(_ outcomes: [Outcome]) async {
    let now = self.clock.nowUnixMs()
    do {
      try await self.store.database.write { db in
        for outcome in outcomes {
          guard let row = try OrderStore.delivery(outcome.delivery.id, in: db), row.status == .pending else { continue }
          try OrderStore.save(
            DeliveryRules.attempted(
              row, failure: outcome.failure, acknowledgement: outcome.acknowledgement, now: now,
              initialBackoff: self.initialBackoff, maximumBackoff: self.maximumBackoff), in: db)
          if outcome.failure == nil, let instanceID = outcome.instanceID {
            try Self.fulfil(row.orderID, instanceID: instanceID, now: now, in: db)
          }
        }
      }
    } catch is CancellationError {
      // Shutting down: unrecorded attempts are made again at the next start (idempotent).
    } catch {
      self.logger.error("cannot record delivery outcomes", metadata: ["error": "\(error)"])
    }
  }

  /// The order has its instance: FULFILLED with its linked orders, unless refunded meanwhile
  /// (then it only learns its instance).
  static func fulfil(_ orderID: String, instanceID: String, now: Int64, in db: Database) throws {
    guard var order = try OrderStore.order(orderID, in: db) else { return }
    order.instanceID = instanceID
    if OrderRules.allows(order.status, .fulfil) {
      try OrderRules.apply(.fulfil, to: &order, actor: "marketplace-order", reason: "instance \(instanceID)", now: now)
      for var link in try OrderStore.orders(ids: order.linkedOrderIds, in: db)
      where OrderRules.allows(link.status, .fulfil) {
        try OrderRules.apply(
          .fulfil, to: &link, actor: "marketplace-order", reason: "parent \(orderID) fulfilled", now: now)
        try OrderStore.save(link, in: db)
      }
    }
    try OrderStore.save(order, in: db)
  }
}
