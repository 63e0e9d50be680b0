import type { Knex } from 'knex';

/*
 * SPEC section 16, records at scale: consumption records and ledger entries older than the retention
 * horizon move to archive tables (same columns, plus when they moved), so the hot tables stay bounded
 * by months, not by history. Statistics keep working from usage_daily, which is never archived.
 *
 * accounts.archived_balance / archived_entry_id: the sum of a user's archived ledger entries and the
 * last of them, so "balance = ledger" still holds: balance = archived_balance + SUM(ledger_entries).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE TABLE consumption_records_archive LIKE consumption_records');
  await knex.raw(
    'ALTER TABLE consumption_records_archive ADD COLUMN archived_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)',
  );
  await knex.raw('CREATE TABLE ledger_entries_archive LIKE ledger_entries');
  await knex.raw(
    'ALTER TABLE ledger_entries_archive ADD COLUMN archived_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)',
  );
  await knex.raw(`
    ALTER TABLE accounts
      ADD COLUMN archived_balance BIGINT NOT NULL DEFAULT 0,
      ADD COLUMN archived_entry_id BIGINT UNSIGNED NOT NULL DEFAULT 0`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE accounts DROP COLUMN archived_balance, DROP COLUMN archived_entry_id');
  await knex.schema.dropTableIfExists('ledger_entries_archive');
  await knex.schema.dropTableIfExists('consumption_records_archive');
}
