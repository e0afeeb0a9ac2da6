// The outbox dispatcher (DESIGN section 6): delivers each order's pending rows in order, one
// at a time per order and several orders at once, retrying failures with capped exponential
// backoff until the target acknowledges. Every target is idempotent on the row's key, so a
// row attempted twice (a crash between the call and the acknowledgement) changes nothing.
import Foundation
import GRDB
import GRPCCore
public import Logging
import NestProto
import NestServiceKit
public import ServiceLifecycle

public final class Dispatcher: Service, Sendable {
  let store: OrderStore
  let peers: any OrderPeers
  let logger: Logger
  let initialBackoff: Duration
  let maximumBackoff: Duration
  let concurrency: Int
  private let wakeups = Wakeups()

  public init(
    store: OrderStore, peers: any OrderPeers, logger: Logger, initialBackoff: Duration = .milliseconds(100),
    maximumBackoff: Duration = .seconds(5), concurrency: Int = 16
  ) {
    self.store = store
    self.peers = peers
    self.logger = logger
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
      do {
        due = try await self.store.database.read {
          try OrderStore.dueDeliveries(nowUnixMs: Clock.nowUnixMs(), limit: 256, in: $0)
        }
      } catch {
        self.logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
        return
      }
      guard !due.isEmpty else { return }
      // Attempts run concurrently; their outcomes are recorded together, in one commit.
      let outcomes = await withTaskGroup(of: Outcome.self) { group in
        var rows = due.makeIterator()
        for _ in 0..<self.concurrency {
          guard let row = rows.next() else { break }
          group.addTask { await self.attempt(row) }
        }
        var outcomes: [Outcome] = []
        for await outcome in group {
          outcomes.append(outcome)
          if let row = rows.next() { group.addTask { await self.attempt(row) } }
        }
        return outcomes
      }
      await self.record(outcomes)
      if !outcomes.contains(where: \.acknowledged) { return }  // everything failed: wait for the backoff
    }
  }

  /// What one attempt at one row came to.
  struct Outcome: Sendable {
    var delivery: Delivery
    var acknowledgement: Delivery.OneOf_Acknowledgement?
    /// CREATE_INSTANCE: the instance the order is fulfilled with.
    var instanceID: String?
    var error: RPCError?
    var acknowledged: Bool { self.error == nil }
  }

  /// One attempt at one row.
  func attempt(_ delivery: Delivery) async -> Outcome {
    var outcome = Outcome(delivery: delivery)
    do {
      guard let order = try await self.store.database.read({ try OrderStore.order(delivery.orderID, in: $0) }) else {
        throw RPCError(code: .internalError, message: "order \(delivery.orderID) is missing")
      }
      switch delivery.kind {
      case .createInstance:
        let instance = try await self.peers.createInstance(
          Self.instanceRequest(for: order, key: delivery.idempotencyKey))
        outcome.acknowledgement = .instanceID(instance.id)
        outcome.instanceID = instance.id
      case .recordSale:
        let sale = try await self.peers.recordSale(Self.saleRequest(for: order, key: delivery.idempotencyKey))
        outcome.acknowledgement = .transactionID(sale.transaction?.id ?? "")
      case .recordRefund:
        let refund = try await self.peers.recordRefund(
          .with {
            $0.clientToken = delivery.idempotencyKey
            $0.orderID = order.id
            $0.linkedOrderIds = order.linkedOrderIds
            $0.reason = order.reason
            $0.refundedAtUnixMs = order.refundedAtUnixMs
          })
        outcome.acknowledgement = .transactionID(refund.transactions.first?.id ?? "")
      case .releaseInstance:
        guard !order.instanceID.isEmpty else {
          throw RPCError(code: .failedPrecondition, message: "the instance of \(order.id) is not created yet")
        }
        try await self.peers.releaseInstance(
          .with {
            $0.clientToken = delivery.idempotencyKey
            $0.instanceID = order.instanceID
            $0.reason = "refund of order \(order.id): \(order.reason)"
          })
      default:
        throw RPCError(code: .internalError, message: "unknown delivery kind \(delivery.kind)")
      }
    } catch {
      outcome.error = error as? RPCError ?? RPCError(code: .unknown, message: "\(error)")
      self.logger.debug(
        "delivery failed", metadata: ["delivery": "\(delivery.id)", "kind": "\(delivery.kind)", "error": "\(error)"])
    }
    return outcome
  }

  /// Records a round's outcomes in one transaction: acknowledged rows DELIVERED (and their
  /// orders fulfilled), failed ones rescheduled with backoff.
  private func record(_ outcomes: [Outcome]) async {
    let now = Clock.nowUnixMs()
    do {
      try await self.store.database.write { db in
        for outcome in outcomes {
          guard var row = try OrderStore.delivery(outcome.delivery.id, in: db), row.status == .pending else { continue }
          row.attempts += 1
          row.lastAttemptAtUnixMs = now
          if let error = outcome.error {
            row.lastErrorCode = Int32(error.code.rawValue)
            row.lastError = "\(error.code): \(error.message)"
            let wait = OrderRules.backoff(
              afterAttempts: row.attempts, initial: self.initialBackoff, cap: self.maximumBackoff)
            row.nextAttemptAtUnixMs =
              now + Int64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
          } else {
            row.status = .delivered
            row.deliveredAtUnixMs = now
            row.nextAttemptAtUnixMs = 0
            row.lastErrorCode = 0
            row.lastError = ""
            row.acknowledgement = outcome.acknowledgement
            if let instanceID = outcome.instanceID {
              try Self.fulfil(row.orderID, instanceID: instanceID, now: now, in: db)
            }
          }
          try OrderStore.save(row, in: db)
        }
      }
    } catch {
      self.logger.error("cannot record delivery outcomes", metadata: ["error": "\(error)"])
    }
  }

  /// The order has its instance: FULFILLED (with its linked orders) unless refunded meanwhile.
  static func fulfil(_ orderID: String, instanceID: String, now: Int64, in db: Database) throws {
    guard var order = try OrderStore.order(orderID, in: db) else { return }
    order.instanceID = instanceID
    // A refund may have come first: then the order stays REFUNDED and only learns its instance.
    if let status = try? OrderRules.transition(from: order.status, .fulfil) {
      OrderService.record(&order, status, actor: "marketplace-order", reason: "instance \(instanceID)", now: now)
      for id in order.linkedOrderIds {
        guard var link = try OrderStore.order(id, in: db),
          let linked = try? OrderRules.transition(from: link.status, .fulfil)
        else { continue }
        OrderService.record(&link, linked, actor: "marketplace-order", reason: "parent \(orderID) fulfilled", now: now)
        try OrderStore.save(link, in: db)
      }
    }
    try OrderStore.save(order, in: db)
  }

  /// CreateServiceInstance for a paid customer order: everything from the order's snapshot,
  /// so every attempt sends the same request.
  static func instanceRequest(for order: Order, key: String) -> Nest_Entitlement_V1_CreateServiceInstanceRequest {
    .with {
      $0.clientToken = key
      $0.orderID = order.id
      $0.serviceID = order.serviceID
      $0.versionID = order.serviceVersionID
      $0.customerID = order.buyer?.accountID ?? ""
      $0.authorizationID = order.wholesale?.authorizationID ?? ""
      $0.quantity = Int32(clamping: order.quantity)
      $0.expiry = .term(
        .with {
          $0.billingPeriod = order.price?.billingPeriod ?? .month
          $0.periods = Int32(clamping: order.periods)
        })
      $0.parameterSetName = order.parameterSetName
      $0.resolution = order.scenario
    }
  }

  /// RecordSale for a paid order (customer or linked), from its snapshot.
  static func saleRequest(for order: Order, key: String) -> Nest_Settlement_V1_RecordSaleRequest {
    .with {
      $0.clientToken = key
      $0.orderID = order.id
      $0.kind = order.kind == .linked ? .linkedOrder : .customerOrder
      $0.parentOrderID = order.parentOrderID
      $0.linkedOrderIds = order.linkedOrderIds
      $0.buyer = order.buyer
      $0.seller = order.seller
      $0.amount = order.price?.amount
      $0.commissionBps = order.price?.commissionBps ?? 0
      $0.scenario = order.scenario
      if order.kind == .customer, let scenario = order.scenario?.scenario,
        scenario == .scenario1 || scenario == .scenario2 || scenario == .scenario4
      {
        $0.wholesaleAmount = order.wholesale?.wholesaleAmount
      }
      $0.authorizationID = order.wholesale?.authorizationID ?? ""
      $0.productID = order.productID
      $0.planID = order.planID
      $0.quantity = order.quantity
      $0.periods = order.periods
      $0.billingPeriod = order.price?.billingPeriod ?? .unspecified
      $0.paidAtUnixMs = order.paidAtUnixMs
    }
  }
}
