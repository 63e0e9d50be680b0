import type { Knex } from 'knex';

export interface BalanceWithLedgerSum {
  user_id: string;
  balance: string;
  ledger_sum: string;
}

/**
 * Accounts with the sum of their ledger entries, read in one statement (one consistent snapshot):
 * the figures SPEC 7.2 says agree, defined once for reconciliation, the admin view and the tests.
 * Callers add the where (and order, limit); columns are qualified by `a.`.
 */
export function balancesWithLedgerSum(db: Knex | Knex.Transaction): Knex.QueryBuilder<BalanceWithLedgerSum> {
  return db('accounts as a').select(
    'a.user_id',
    'a.balance',
    // Archived entries count through their sum (see migrations/20261129000003_archive.ts).
    db.raw(
      'a.archived_balance + (SELECT COALESCE(SUM(l.amount), 0) FROM ledger_entries l WHERE l.user_id = a.user_id) AS ledger_sum',
    ),
  );
}

/** Amounts as decimal strings, whatever type the driver gave the aggregate. */
export function asStrings(row: BalanceWithLedgerSum): BalanceWithLedgerSum {
  return { user_id: String(row.user_id), balance: String(row.balance), ledger_sum: String(row.ledger_sum) };
}
