// The ledger is held to account by SQLite itself, whoever writes to it: here the sqlite3
// shell, as an auditor or an operator with a bad idea would use it on a settlement database.
import Foundation
import GRDB
import NestProto
import NestProtoTesting
import NestServiceKit
import NestTestKit
import Settlement
import Testing

@Suite("Ledger schema")
struct LedgerSchemaTests {
  /// A settlement database with one sale posted through the store, and its path.
  func database() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID()).sqlite").path
    let pool = try ServiceDatabase.open(path: path, migrations: SettlementStore.migrations)
    try pool.write { db in
      let sale = directSale("order-1", customer: "c1", isv: "i1", amount: 10_000, commissionBps: 500)
      let transaction = try LedgerRules.saleTransaction(sale, id: "txn-1", now: 1)
      try SettlementStore.insert(transaction, in: db)
      try SettlementStore.insertSale(sale, transactionID: transaction.id, obligationID: nil, recordedAt: 1, in: db)
    }
    try pool.pool.close()
    return path
  }

  /// sqlite3 `path` `sql`, with foreign keys on as the services have them.
  func sqlite3(_ path: String, _ sql: String) throws -> ProcessResult {
    try run(["sqlite3", path, "PRAGMA foreign_keys = ON;", sql])
  }

  @Test(
    "UPDATE and DELETE on posted ledger rows fail",
    arguments: [
      "UPDATE ledger_postings SET amount_minor = 0 WHERE transaction_id = 'txn-1' AND seq = 1",
      "UPDATE ledger_transactions SET created_at_unix_ms = 2",
      "DELETE FROM ledger_postings WHERE transaction_id = 'txn-1'",
      "DELETE FROM ledger_transactions",
      "UPDATE sales SET amount_minor = 1",
      "DELETE FROM sales",
    ])
  func immutable(_ statement: String) throws {
    let path = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let result = try self.sqlite3(path, statement)
    #expect(result.status != 0)
    #expect(result.stderr.contains("is append-only"), "\(result.stderr)")
    let total = try self.sqlite3(path, "SELECT SUM(amount_minor), COUNT(*) FROM ledger_postings")
    #expect(total.stdoutText == "0|3\n")
  }

  @Test("a transaction that does not sum to zero is refused; a balanced one is posted")
  func balanced() throws {
    let path = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let unbalanced = try self.sqlite3(
      path,
      """
      BEGIN;
      INSERT INTO ledger_postings VALUES ('txn-2', 0, 1, 'c1', 'USD', -500, 'price');
      INSERT INTO ledger_postings VALUES ('txn-2', 1, 3, 'i1', 'USD', 499, 'seller_net');
      INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-2', 1, 'order-2', 2);
      COMMIT;
      """)
    #expect(unbalanced.status != 0)
    #expect(unbalanced.stderr.contains("unbalanced transaction"), "\(unbalanced.stderr)")
    // A header first, postings after: refused too (it would be unbalanced when posted).
    let headerFirst = try self.sqlite3(
      path, "INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-3', 1, 'order-3', 3)"
    )
    #expect(headerFirst.stderr.contains("unbalanced transaction"), "\(headerFirst.stderr)")
    // Another currency does not balance a first one.
    let mixed = try self.sqlite3(
      path,
      """
      BEGIN;
      INSERT INTO ledger_postings VALUES ('txn-4', 0, 1, 'c1', 'USD', -500, 'price');
      INSERT INTO ledger_postings VALUES ('txn-4', 1, 3, 'i1', 'EUR', 500, 'seller_net');
      INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-4', 1, 'order-4', 4);
      COMMIT;
      """)
    #expect(mixed.stderr.contains("unbalanced transaction"), "\(mixed.stderr)")
    // A second SALE for one order is refused by its unique key.
    let duplicate = try self.sqlite3(
      path,
      """
      BEGIN;
      INSERT INTO ledger_postings VALUES ('txn-5', 0, 1, 'c1', 'USD', -500, 'price');
      INSERT INTO ledger_postings VALUES ('txn-5', 1, 3, 'i1', 'USD', 500, 'seller_net');
      INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-5', 1, 'order-1', 5);
      COMMIT;
      """)
    #expect(duplicate.stderr.contains("UNIQUE constraint failed"), "\(duplicate.stderr)")
    let count = try self.sqlite3(path, "SELECT COUNT(*) FROM ledger_transactions")
    #expect(count.stdoutText == "1\n")
    // A balanced one, by hand, is posted.
    let good = try self.sqlite3(
      path,
      """
      BEGIN;
      INSERT INTO ledger_postings VALUES ('txn-6', 0, 1, 'c1', 'USD', -500, 'price');
      INSERT INTO ledger_postings VALUES ('txn-6', 1, 3, 'i1', 'USD', 500, 'seller_net');
      INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-6', 1, 'order-6', 6);
      COMMIT;
      """)
    #expect(good.status == 0, "\(good.stderr)")
    // Its postings cannot grow afterwards.
    let more = try self.sqlite3(path, "INSERT INTO ledger_postings VALUES ('txn-6', 2, 4, '', 'USD', 0, 'late')")
    #expect(more.stderr.contains("transaction is posted"), "\(more.stderr)")
  }

  @Test("a reversal must negate every posting of the SALE it reverses, once")
  func reversals() throws {
    let path = try self.database()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let partial = try self.sqlite3(
      path,
      """
      BEGIN;
      INSERT INTO ledger_postings VALUES ('txn-r', 0, 1, 'c1', 'USD', 100, 'refund');
      INSERT INTO ledger_postings VALUES ('txn-r', 1, 3, 'i1', 'USD', -100, 'refund');
      INSERT INTO ledger_transactions (id, kind, order_id, created_at_unix_ms) VALUES ('txn-r', 2, 'order-1', 7);
      INSERT INTO ledger_reversals VALUES ('txn-r', 'txn-1');
      COMMIT;
      """)
    #expect(partial.stderr.contains("a reversal must be a REFUND negating every posting"), "\(partial.stderr)")
  }
}
