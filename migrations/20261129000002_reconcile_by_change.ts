import type { Knex } from 'knex';

/*
 * SPEC section 16: reconciliation costs what changed, not what exists.
 *
 * - ledger_entries.balance_after: the user's balance after this entry (a running balance, written by
 *   the persist transaction that holds the account row locked). The latest entry's balance_after is
 *   what accounts.balance must be: checking an account against its ledger no longer sums its history.
 * - accounts.changed_at (indexed): set by every persist transaction for every user it touches, so a
 *   run finds the accounts changed since the last one through the index; audited_entry_id and
 *   audited_balance: the last ledger entry a run verified, and the balance after it, so a run verifies
 *   only the entries added since.
 * - reconciliation_state: where the last run stopped (changes since, and the rolling audit's cursor).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE ledger_entries ADD COLUMN balance_after BIGINT NULL');
  await knex.raw(`
    UPDATE ledger_entries l
      JOIN (SELECT id, SUM(amount) OVER (PARTITION BY user_id ORDER BY id) AS running FROM ledger_entries) r
        ON r.id = l.id
       SET l.balance_after = r.running`);
  await knex.raw(`
    ALTER TABLE accounts
      ADD COLUMN changed_at DATETIME(3) NULL,
      ADD COLUMN audited_entry_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
      ADD COLUMN audited_balance BIGINT NOT NULL DEFAULT 0,
      ADD KEY ix_accounts_changed (changed_at, user_id)`);
  await knex.raw('UPDATE accounts SET changed_at = updated_at');
  await knex.raw(`
    CREATE TABLE reconciliation_state (
      name   VARCHAR(32)  NOT NULL,
      value  VARCHAR(255) NOT NULL,
      PRIMARY KEY (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('reconciliation_state');
  await knex.raw(`
    ALTER TABLE accounts DROP KEY ix_accounts_changed, DROP COLUMN changed_at, DROP COLUMN audited_entry_id,
      DROP COLUMN audited_balance`);
  await knex.raw('ALTER TABLE ledger_entries DROP COLUMN balance_after');
}
