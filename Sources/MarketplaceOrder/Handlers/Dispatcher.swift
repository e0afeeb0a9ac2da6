// The outbox dispatcher: delivers each order's pending rows step by step (the rows one commit
// queued together, such as a payment's instance and sales, at once; the next step when they
// are all acknowledged), several orders at once, retrying failures with capped exponential
// backoff until the target acknowledges. Every target is idempotent on the row's key, so a row attempted twice
// (a crash between the call and the acknowledgement) changes nothing. What each row asks and
// how an outcome is recorded are the outbox's rules (DeliveryRules); this part only calls.
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
      // Attempts run concurrently; their outcomes are recorded together, in one commit.
      let outcomes = await withTaskGroup(of: Outcome.self) { group in
        var rows = due.makeIterator()
        for _ in 0..<self.concurrency {
          guard let row = rows.next() else { break }
          group.addTask { await self.attempt(row, order: orders[row.orderID]) }
        }
        var outcomes: [Outcome] = []
        for await outcome in group {
          outcomes.append(outcome)
          if let row = rows.next() { group.addTask { await self.attempt(row, order: orders[row.orderID]) } }
        }
        return outcomes
      }
      await self.record(outcomes)
      if !outcomes.contains(where: { $0.failure == nil }) { return }  // everything failed: wait for the backoff
    }
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
      span.attributes["nest.delivery.id"] = delivery.id
      span.attributes["nest.delivery.attempt"] = Int(delivery.attempts) + 1
      span.attributes["nest.order.id"] = delivery.orderID
      let outcome = await self.call(delivery, order: order)
      if let failure = outcome.failure { span.setStatus(SpanStatus(code: .error, message: failure.message)) }
      return outcome
    }
  }

  /// One call to the row's target.
  private func call(_ delivery: Delivery, order: Order?) async -> Outcome {
    var outcome = Outcome(delivery: delivery)
    let key = delivery.idempotencyKey
    let dimensions = [("target", statusName(delivery.target)), ("kind", statusName(delivery.kind))]
    Counter(label: "nest_outbox_delivery_attempts_total", dimensions: dimensions).increment()
    defer {
      if let failure = outcome.failure {
        Counter(
          label: "nest_outbox_delivery_failures_total",
          dimensions: dimensions + [
            ("code", Status.Code(rawValue: Int(failure.code)).map { "\($0)" } ?? "\(failure.code)")
          ]
        ).increment()
      }
    }
    do {
      guard let order else {
        throw DomainError(.failedPrecondition, "order \(delivery.orderID) is missing")
      }
      switch delivery.kind {
      case .createInstance:
        let instance = try await self.peers.createInstance(DeliveryRules.instanceRequest(for: order, key: key))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .renewInstance:
        let instance = try await self.peers.renewInstance(DeliveryRules.renewRequest(for: order, key: key))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .changeInstance:
        let instance = try await self.peers.changeInstance(DeliveryRules.changeRequest(for: order, key: key))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .recordSale:
        let sale = try await self.peers.recordSale(DeliveryRules.saleRequest(for: order, key: key))
        outcome.acknowledgement = .transactionID(sale.transaction?.id ?? "")
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
