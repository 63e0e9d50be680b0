import type { Knex } from 'knex';

/*
 * SPEC section 10: ids compare byte-exactly in MySQL as they do in Redis.
 *
 * utf8mb4_bin is a PAD SPACE collation: 'r1' and 'r1 ' compare equal, so a unique key saw one id where
 * Redis saw two and a whole persist batch rolled back. Every table moves to the binary NO PAD
 * collation of the server (MariaDB: utf8mb4_nopad_bin, MySQL 8: utf8mb4_0900_bin), in which two ids
 * are equal exactly when their bytes are.
 *
 * Also:
 * - consumption_records loses its unique (user_id, request_id): after the idempotency window a reused
 *   request_id is a new call (SPEC 10.2); each record stays unique by record_id.
 * - ledger_entries is unique by (user_id, entry_type, ref_id): an adjustment's ref_id is its key alone,
 *   in its own column beside the user, no longer "user:key" (which two users could share).
 * - payment_confirmations: the (order, payment) pairs a signed callback or GetPayment confirmed. The
 *   apply-payment job credits only a confirmed pair, so a job added by hand cannot mint money.
 * - recharge_orders.next_check_at: when reconciliation asks the payment service about a pending order
 *   next, so that orders whose GetPayment keeps failing cannot starve newer ones.
 */
const TABLES = [
  'accounts',
  'quota_usage',
  'consumption_records',
  'ledger_entries',
  'usage_daily',
  'recharge_orders',
  'reconciliation_runs',
  'reconciliation_repairs',
];

async function noPadCollation(knex: Knex): Promise<string> {
  const [rows] = await knex.raw('SELECT VERSION() AS v');
  return /mariadb/i.test(String(rows[0].v)) ? 'utf8mb4_nopad_bin' : 'utf8mb4_0900_bin';
}

export async function up(knex: Knex): Promise<void> {
  const collation = await noPadCollation(knex);
  for (const table of TABLES) {
    await knex.raw(`ALTER TABLE ${table} CONVERT TO CHARACTER SET utf8mb4 COLLATE ${collation}`);
  }
  await knex.raw(`
    ALTER TABLE consumption_records
      DROP INDEX uq_records_user_request,
      ADD KEY ix_records_user_request (user_id, request_id)`);
  await knex.raw(`
    UPDATE ledger_entries SET ref_id = SUBSTRING(ref_id, CHAR_LENGTH(user_id) + 2)
    WHERE entry_type = 'adjustment' AND LEFT(ref_id, CHAR_LENGTH(user_id) + 1) = CONCAT(user_id, ':')`);
  await knex.raw(`
    ALTER TABLE ledger_entries
      DROP INDEX uq_ledger_ref,
      ADD UNIQUE KEY uq_ledger_user_ref (user_id, entry_type, ref_id)`);
  await knex.raw(`
    CREATE TABLE payment_confirmations (
      order_id      VARCHAR(40) NOT NULL,
      payment_id    VARCHAR(64) NOT NULL,
      source        VARCHAR(16) NOT NULL,
      confirmed_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (order_id, payment_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${collation}`);
  await knex.raw(`
    ALTER TABLE recharge_orders
      ADD COLUMN next_check_at DATETIME(3) NULL,
      ADD KEY ix_orders_status_check (status, next_check_at, created_at)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE recharge_orders DROP INDEX ix_orders_status_check, DROP COLUMN next_check_at');
  await knex.schema.dropTableIfExists('payment_confirmations');
  await knex.raw(`
    ALTER TABLE ledger_entries DROP INDEX uq_ledger_user_ref, ADD UNIQUE KEY uq_ledger_ref (entry_type, ref_id)`);
  await knex.raw(`
    ALTER TABLE consumption_records DROP INDEX ix_records_user_request,
      ADD UNIQUE KEY uq_records_user_request (user_id, request_id)`);
  for (const table of TABLES) {
    await knex.raw(`ALTER TABLE ${table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  }
}
