// Reconcile's checks (DESIGN section 5): the ledger balances per currency and per
// transaction; every sale has the postings its snapshot implies, its obligation and, once
// refunded, its reversal; and, with the orders and instances of the other services, every
// paid order has exactly one sale and one instance.
import GRDB
import NestProto
import NestServiceKit

enum Reconciliation {
  typealias Discrepancy = Nest_Settlement_V1_Discrepancy

  static func discrepancy(
    _ kind: Nest_Settlement_V1_DiscrepancyKind, order: String = "", transaction: String = "", currency: String = "",
    _ description: String
  ) -> Discrepancy {
    .with {
      $0.kind = kind
      $0.orderID = order
      $0.transactionID = transaction
      $0.currency = currency
      $0.description = description
    }
  }

  /// Every SALE transaction, and by order id: read once per Reconcile.
  struct Sales {
    var all: [Nest_Settlement_V1_LedgerTransaction]
    var byOrder: [String: [Nest_Settlement_V1_LedgerTransaction]] = [:]

    init(in db: Database) throws {
      self.all = try SettlementStore.transactions(kind: .sale, asOf: .max, in: db)
      for sale in self.all {
        if case .orderID(let order)? = sale.source { self.byOrder[order, default: []].append(sale) }
      }
    }
  }

  /// The ledger on its own, as recorded up to `asOf`.
  static func ledger(asOf: Int64, sales allSales: Sales, in db: Database) throws -> Nest_Settlement_V1_ReconcileResponse
  {
    var response = Nest_Settlement_V1_ReconcileResponse()
    response.sums = try SettlementStore.sums(asOf: asOf, in: db)
    for sum in response.sums where sum.net?.amountMinor != 0 {
      let net = sum.net!
      response.discrepancies.append(
        discrepancy(.unbalancedLedger, currency: net.currency, "\(net.currency): postings sum to \(net.amountMinor)"))
    }
    for (transaction, currency, net) in try SettlementStore.unbalancedTransactions(asOf: asOf, in: db) {
      response.discrepancies.append(
        discrepancy(
          .unbalancedTransaction, transaction: transaction, currency: currency, "\(currency): postings sum to \(net)"))
    }
    let sales = allSales.all.filter { $0.createdAtUnixMs <= asOf }
    let refunds = try SettlementStore.transactions(kind: .refund, asOf: asOf, in: db)
    let obligations = try SettlementStore.obligationCounts(in: db)
    for (order, transactions) in allSales.byOrder where transactions.filter({ $0.createdAtUnixMs <= asOf }).count > 1 {
      response.discrepancies.append(
        discrepancy(.duplicateSale, order: order, "\(transactions.count) SALE transactions for one order"))
    }
    let transactionsByID = Dictionary(uniqueKeysWithValues: (sales + refunds).map { ($0.id, $0) })
    for (snapshot, transactionID) in try SettlementStore.allSales(in: db) {
      guard let transaction = transactionsByID[transactionID] else { continue }  // recorded after asOf
      let expected = LedgerRules.sale(
        buyer: try LedgerRules.account(snapshot.buyer ?? .init()),
        seller: try LedgerRules.account(snapshot.seller ?? .init()), amount: snapshot.amount ?? .init(),
        bps: snapshot.commissionBps)
      if expected.map(\.amount) != transaction.postings.map(\.amount)
        || expected.map(\.account) != transaction.postings.map(\.account)
      {
        response.discrepancies.append(
          discrepancy(
            .amountMismatch, order: snapshot.orderID, transaction: transactionID,
            "postings differ from amount \(snapshot.amount?.amountMinor ?? 0) at \(snapshot.commissionBps) bps"))
      }
      let owes = snapshot.kind == .customerOrder && LedgerRules.owesOffline(snapshot.scenario?.scenario ?? .unspecified)
      let recorded =
        try Int.fetchOne(
          db, sql: "SELECT COUNT(*) FROM obligations WHERE order_id = ?", arguments: [snapshot.orderID]) ?? 0
      if owes && recorded == 0 {
        response.discrepancies.append(
          discrepancy(.missingObligation, order: snapshot.orderID, transaction: transactionID, "no offline obligation"))
      } else if !owes && recorded > 0 {
        response.discrepancies.append(
          discrepancy(.missingObligation, order: snapshot.orderID, "an obligation for a sale that owes none offline"))
      }
    }
    for refund in refunds where transactionsByID[refund.reversesTransactionID] == nil {
      response.discrepancies.append(
        discrepancy(.missingReversal, transaction: refund.id, "a REFUND that reverses no known SALE"))
    }
    for sale in sales
    where !sale.reversedByTransactionID.isEmpty && transactionsByID[sale.reversedByTransactionID] == nil {
      response.discrepancies.append(
        discrepancy(.missingReversal, transaction: sale.id, "the REFUND that reversed this SALE is missing"))
    }
    response.transactionCount = try SettlementStore.count(
      "SELECT COUNT(*) FROM transactions WHERE created_at_unix_ms <= ?", [asOf], in: db)
    response.postingCount = try SettlementStore.count(
      "SELECT COUNT(*) FROM postings p JOIN transactions t ON t.id = p.transaction_id WHERE t.created_at_unix_ms <= ?",
      [asOf], in: db)
    response.saleCount = UInt64(sales.count)
    response.refundCount = UInt64(refunds.count)
    response.usageCount = try SettlementStore.count(
      "SELECT COUNT(*) FROM transactions WHERE kind = ? AND created_at_unix_ms <= ?",
      [Nest_Settlement_V1_TransactionKind.usage.rawValue, asOf], in: db)
    response.obligationCount = try SettlementStore.count("SELECT COUNT(*) FROM obligations", in: db)
    return response
  }

  /// The ledger against marketplace-order's paid orders and entitlement's instances.
  static func orders(_ orders: [Nest_Order_V1_Order], instanceOrderIDs: [String], asOf: Int64, sales: Sales)
    -> [Discrepancy]
  {
    var found: [Discrepancy] = []
    var instances: [String: Int] = [:]
    for order in instanceOrderIDs { instances[order, default: 0] += 1 }
    let salesByOrder = sales.byOrder
    let known = Set(orders.map(\.id))
    for order in orders {
      let sold = salesByOrder[order.id] ?? []
      if sold.isEmpty {
        found.append(discrepancy(.missingSale, order: order.id, "a paid order with no SALE"))
      } else if sold.count > 1 {
        found.append(discrepancy(.duplicateSale, order: order.id, "\(sold.count) SALE transactions"))
      }
      if let sale = sold.first {
        let charged = -(sale.postings.first?.amount?.amountMinor ?? 0)
        if charged != order.price?.amount?.amountMinor {
          found.append(
            discrepancy(
              .amountMismatch, order: order.id, transaction: sale.id,
              "the buyer was charged \(charged), the order's price is \(order.price?.amount?.amountMinor ?? 0)"))
        }
        if order.status == .refunded && sale.reversedByTransactionID.isEmpty {
          found.append(
            discrepancy(.missingReversal, order: order.id, transaction: sale.id, "refunded but not reversed"))
        }
      }
      if order.kind == .customer {
        switch instances[order.id] ?? 0 {
        case 0: found.append(discrepancy(.missingInstance, order: order.id, "a paid order with no instance"))
        case 1: break
        case let count: found.append(discrepancy(.duplicateInstance, order: order.id, "\(count) instances"))
        }
      }
    }
    for sale in sales.all where sale.createdAtUnixMs <= asOf {
      if case .orderID(let order)? = sale.source, !known.contains(order) {
        found.append(
          discrepancy(.unknownOrder, order: order, transaction: sale.id, "marketplace-order knows no such paid order"))
      }
    }
    return found
  }
}
