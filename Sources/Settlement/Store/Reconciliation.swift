// Reconcile's checks as SQL over the ledger's columns: the ledger balances per currency and
// per transaction; every sale has the postings its snapshot implies (buyer -amount, platform
// the floored commission, seller the rest), the obligation its scenario owes, and, once
// refunded, a reversal; and, given marketplace-order's paid orders and entitlement's
// instances, every paid order has exactly one sale and one instance.
import GRDB
import NestDomain
import NestProto

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

  /// The ledger on its own, as recorded up to `asOf`.
  static func ledger(asOf: Int64, in db: Database) throws -> Nest_Settlement_V1_ReconcileResponse {
    var response = Nest_Settlement_V1_ReconcileResponse()
    response.sums = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT p.currency,
            SUM(CASE WHEN p.amount_minor < 0 THEN p.amount_minor ELSE 0 END) AS debits,
            SUM(CASE WHEN p.amount_minor > 0 THEN p.amount_minor ELSE 0 END) AS credits
          FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id
          WHERE t.created_at_unix_ms <= ? GROUP BY p.currency ORDER BY p.currency
          """), arguments: [asOf]
    ).map { row in
      let currency: String = row["currency"]
      let debits: Int64 = row["debits"]
      let credits: Int64 = row["credits"]
      return .with {
        $0.debits = MoneyMath.money(currency, debits)
        $0.credits = MoneyMath.money(currency, credits)
        $0.net = MoneyMath.money(currency, debits + credits)
      }
    }
    for sum in response.sums where sum.net?.amountMinor != 0 {
      let net = sum.net ?? .init()
      response.discrepancies.append(
        discrepancy(.unbalancedLedger, currency: net.currency, "\(net.currency): postings sum to \(net.amountMinor)"))
    }
    for row in try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT p.transaction_id, p.currency, SUM(p.amount_minor) AS net
          FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id WHERE t.created_at_unix_ms <= ?
          GROUP BY p.transaction_id, p.currency HAVING SUM(p.amount_minor) != 0
          """), arguments: [asOf])
    {
      let currency: String = row["currency"]
      let net: Int64 = row["net"]
      response.discrepancies.append(
        discrepancy(
          .unbalancedTransaction, transaction: row["transaction_id"], currency: currency,
          "\(currency): postings sum to \(net)"))
    }
    // Every sale's postings, against what its snapshot implies.
    for row in try Row.fetchAll(
      db.cachedStatement(
        sql: """
          WITH recorded AS (
            SELECT s.* FROM sales s JOIN ledger_transactions t ON t.id = s.transaction_id WHERE t.created_at_unix_ms <= ?1),
          commission AS (
            SELECT order_id, (amount_minor / 10000) * commission_bps + (amount_minor % 10000) * commission_bps / 10000 AS c
            FROM recorded),
          expected AS (
            SELECT r.order_id, r.transaction_id, r.currency, 0 AS seq, r.buyer_kind AS kind, r.buyer_id AS account,
              -r.amount_minor AS amount FROM recorded r
            UNION ALL SELECT r.order_id, r.transaction_id, r.currency, 1, 4, '', c.c
              FROM recorded r JOIN commission c USING (order_id)
            UNION ALL SELECT r.order_id, r.transaction_id, r.currency, 2, r.seller_kind, r.seller_id, r.amount_minor - c.c
              FROM recorded r JOIN commission c USING (order_id))
          SELECT DISTINCT e.order_id, e.transaction_id, r.amount_minor, r.commission_bps
          FROM expected e JOIN recorded r USING (order_id)
          LEFT JOIN ledger_postings p ON p.transaction_id = e.transaction_id AND p.seq = e.seq
          WHERE p.transaction_id IS NULL OR p.account_kind != e.kind OR p.account_id != e.account
            OR p.amount_minor != e.amount OR p.currency != e.currency
            OR (SELECT COUNT(*) FROM ledger_postings WHERE transaction_id = e.transaction_id) != 3
          """), arguments: [asOf])
    {
      let amount: Int64 = row["amount_minor"]
      let bps: Int64 = row["commission_bps"]
      response.discrepancies.append(
        discrepancy(
          .amountMismatch, order: row["order_id"], transaction: row["transaction_id"],
          "postings differ from amount \(amount) at \(bps) bps"))
    }
    // Customer sales of scenarios 1, 2 and 4 owe an obligation; no other sale does.
    for row in try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT s.order_id, s.transaction_id, s.kind = 1 AND s.scenario IN (1, 2, 4) AS owes,
            (SELECT COUNT(*) FROM obligations o WHERE o.order_id = s.order_id) AS recorded
          FROM sales s JOIN ledger_transactions t ON t.id = s.transaction_id WHERE t.created_at_unix_ms <= ?
          """), arguments: [asOf])
    {
      let owes: Bool = row["owes"]
      let recorded: Int = row["recorded"]
      if owes && recorded == 0 {
        response.discrepancies.append(
          discrepancy(
            .missingObligation, order: row["order_id"], transaction: row["transaction_id"], "no offline obligation"))
      } else if !owes && recorded > 0 {
        response.discrepancies.append(
          discrepancy(.missingObligation, order: row["order_id"], "an obligation for a sale that owes none offline"))
      }
    }
    // A REFUND reverses a SALE; a sale's refund transaction is its reversal.
    for id in try String.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT t.id FROM ledger_transactions t LEFT JOIN ledger_reversals r ON r.transaction_id = t.id
          WHERE t.kind = 2 AND t.created_at_unix_ms <= ? AND r.transaction_id IS NULL
          """), arguments: [asOf])
    {
      response.discrepancies.append(
        discrepancy(.missingReversal, transaction: id, "a REFUND that reverses no known SALE"))
    }
    let counts = try Row.fetchOne(
      db.cachedStatement(
        sql: """
          SELECT COUNT(*) AS transactions,
            COALESCE(SUM(kind = 1), 0) AS sales, COALESCE(SUM(kind = 2), 0) AS refunds, COALESCE(SUM(kind = 3), 0) AS usage,
            (SELECT COUNT(*) FROM ledger_postings p JOIN ledger_transactions t2 ON t2.id = p.transaction_id
               WHERE t2.created_at_unix_ms <= ?1) AS postings,
            (SELECT COUNT(*) FROM obligations) AS obligations
          FROM ledger_transactions WHERE created_at_unix_ms <= ?1
          """), arguments: [asOf])
    response.transactionCount = counts?["transactions"] ?? 0
    response.postingCount = counts?["postings"] ?? 0
    response.saleCount = counts?["sales"] ?? 0
    response.refundCount = counts?["refunds"] ?? 0
    response.usageCount = counts?["usage"] ?? 0
    response.obligationCount = counts?["obligations"] ?? 0
    return response
  }

  /// What the ledger says of each order: its SALE transactions, what the buyer was charged,
  /// and whether the sale was reversed.
  struct SaleFacts {
    var transactions: [String]
    var charged: Int64
    var reversed: Bool
  }

  static func sales(asOf: Int64, in db: Database) throws -> [String: SaleFacts] {
    var facts: [String: SaleFacts] = [:]
    for row in try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT t.order_id, t.id, -(SELECT amount_minor FROM ledger_postings WHERE transaction_id = t.id AND seq = 0) AS charged,
            EXISTS (SELECT 1 FROM ledger_reversals WHERE reversed_transaction_id = t.id) AS reversed
          FROM ledger_transactions t WHERE t.kind = 1 AND t.created_at_unix_ms <= ? ORDER BY t.rowid
          """), arguments: [asOf])
    {
      let order: String = row["order_id"]
      var entry = facts[order] ?? SaleFacts(transactions: [], charged: row["charged"], reversed: row["reversed"])
      entry.transactions.append(row["id"])
      facts[order] = entry
    }
    return facts
  }

  /// The ledger against marketplace-order's paid orders and entitlement's instances.
  static func orders(
    _ orders: [Nest_Order_V1_Order], instanceOrderIDs: [String], sales: [String: SaleFacts]
  ) -> [Discrepancy] {
    var found: [Discrepancy] = []
    var instances: [String: Int] = [:]
    for order in instanceOrderIDs { instances[order, default: 0] += 1 }
    for order in orders {
      if let sale = sales[order.id] {
        if sale.transactions.count > 1 {
          found.append(discrepancy(.duplicateSale, order: order.id, "\(sale.transactions.count) SALE transactions"))
        }
        if sale.charged != order.price?.amount?.amountMinor {
          found.append(
            discrepancy(
              .amountMismatch, order: order.id, transaction: sale.transactions[0],
              "the buyer was charged \(sale.charged), the order's price is \(order.price?.amount?.amountMinor ?? 0)"))
        }
        if order.status == .refunded && !sale.reversed {
          found.append(
            discrepancy(
              .missingReversal, order: order.id, transaction: sale.transactions[0], "refunded but not reversed"))
        }
      } else if order.recordsSale {
        found.append(discrepancy(.missingSale, order: order.id, "a paid order with no SALE"))
      }
      if order.kind == .customer {
        switch instances[order.id] ?? 0 {
        case 0: found.append(discrepancy(.missingInstance, order: order.id, "a paid order with no instance"))
        case 1: break
        case let count: found.append(discrepancy(.duplicateInstance, order: order.id, "\(count) instances"))
        }
      }
    }
    let known = Set(orders.map(\.id))
    for (order, sale) in sales.sorted(by: { $0.key < $1.key }) where !known.contains(order) {
      found.append(
        discrepancy(
          .unknownOrder, order: order, transaction: sale.transactions[0], "marketplace-order knows no such paid order"))
    }
    return found
  }
}
