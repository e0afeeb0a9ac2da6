// The ledger's schema, which SQLite itself holds to account:
// - a transaction's postings are inserted before its header row; the header's insert trigger
//   refuses a transaction with fewer than two postings, or whose postings do not sum to zero
//   in each currency; a posting for a transaction already posted is refused;
// - postings, transactions, reversal links and sale snapshots are never updated or deleted;
// - one SALE per order, one REFUND per order, one USAGE per usage record (UNIQUE indexes),
//   and one reversal per transaction, whose postings must negate the reversed ones exactly.
// Anyone can audit it with sqlite3: every amount is a column.
import GRDB

enum LedgerSchema {
  static func create(in db: Database) throws {
    try db.execute(
      sql: """
        CREATE TABLE ledger_transactions (
          id TEXT PRIMARY KEY,
          kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
          order_id TEXT,
          usage_record_id TEXT,
          instance_id TEXT NOT NULL DEFAULT '',
          created_at_unix_ms INTEGER NOT NULL,
          -- SALE and REFUND come from an order, USAGE from a usage record.
          CHECK ((kind IN (1, 2)) = (order_id IS NOT NULL)),
          CHECK ((kind = 3) = (usage_record_id IS NOT NULL))
        );
        CREATE UNIQUE INDEX ledger_one_sale_per_order ON ledger_transactions(order_id) WHERE kind = 1;
        CREATE UNIQUE INDEX ledger_one_refund_per_order ON ledger_transactions(order_id) WHERE kind = 2;
        CREATE UNIQUE INDEX ledger_one_usage_per_record ON ledger_transactions(usage_record_id) WHERE kind = 3;
        CREATE INDEX ledger_transactions_instance ON ledger_transactions(instance_id);
        CREATE INDEX ledger_transactions_created ON ledger_transactions(created_at_unix_ms);

        CREATE TABLE ledger_postings (
          transaction_id TEXT NOT NULL REFERENCES ledger_transactions(id) DEFERRABLE INITIALLY DEFERRED,
          seq INTEGER NOT NULL CHECK (seq >= 0),
          account_kind INTEGER NOT NULL CHECK (account_kind BETWEEN 1 AND 5),
          account_id TEXT NOT NULL,
          currency TEXT NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
          amount_minor INTEGER NOT NULL,
          memo TEXT NOT NULL,
          PRIMARY KEY (transaction_id, seq),
          -- PLATFORM and CLOUD are single accounts; parties have an id.
          CHECK ((account_kind IN (4, 5)) = (account_id = ''))
        );
        CREATE INDEX ledger_postings_account ON ledger_postings(account_kind, account_id);

        -- A REFUND transaction and the SALE it reverses.
        CREATE TABLE ledger_reversals (
          transaction_id TEXT PRIMARY KEY REFERENCES ledger_transactions(id),
          reversed_transaction_id TEXT NOT NULL UNIQUE REFERENCES ledger_transactions(id)
        );

        CREATE TRIGGER ledger_postings_before_their_transaction BEFORE INSERT ON ledger_postings
        WHEN EXISTS (SELECT 1 FROM ledger_transactions WHERE id = NEW.transaction_id)
        BEGIN SELECT RAISE(ABORT, 'transaction is posted: its postings cannot change'); END;

        CREATE TRIGGER ledger_transactions_balanced BEFORE INSERT ON ledger_transactions
        WHEN (SELECT COUNT(*) FROM ledger_postings WHERE transaction_id = NEW.id) < 2
          OR EXISTS (
            SELECT 1 FROM ledger_postings WHERE transaction_id = NEW.id
            GROUP BY currency HAVING SUM(amount_minor) != 0)
        BEGIN SELECT RAISE(ABORT, 'unbalanced transaction: its postings must sum to zero in each currency'); END;

        CREATE TRIGGER ledger_reversals_mirror BEFORE INSERT ON ledger_reversals
        WHEN (SELECT kind FROM ledger_transactions WHERE id = NEW.transaction_id) IS NOT 2
          OR EXISTS (
            SELECT 1 FROM ledger_postings
            WHERE transaction_id IN (NEW.transaction_id, NEW.reversed_transaction_id)
            GROUP BY account_kind, account_id, currency HAVING SUM(amount_minor) != 0)
        BEGIN SELECT RAISE(ABORT, 'a reversal must be a REFUND negating every posting it reverses'); END;
        """)
    for table in ["ledger_transactions", "ledger_postings", "ledger_reversals"] { try appendOnly(table, in: db) }
  }

  /// Triggers that refuse UPDATE and DELETE on `table`.
  static func appendOnly(_ table: String, in db: Database) throws {
    for operation in ["UPDATE", "DELETE"] {
      try db.execute(
        sql: """
          CREATE TRIGGER \(table)_no_\(operation.lowercased()) BEFORE \(operation) ON \(table)
          BEGIN SELECT RAISE(ABORT, '\(table) is append-only'); END
          """)
    }
  }
}
