import type { Knex } from 'knex';

/*
 * SPEC 14, refunds.
 *
 * - refunds: one row per refund of a deduct's calls, written by the persistence job from the journal.
 *   refund_key (rfd_...) is the refund's stored id: the caller's refund_id is idempotent within the
 *   idempotency window, and the same refund_id after it is a new refund with a new key. Records are
 *   not updated: their refunded counts and amounts are summed from here when records are read, so a
 *   refund persisted before its deduction (two jobs in flight) needs no special case.
 * - usage_daily.refunded_count / refunded_cost: calls refunded and money returned on that business day
 *   (the day of the refund, under the record's service); the usage columns keep counting calls made.
 */
async function noPadCollation(knex: Knex): Promise<string> {
  const [rows] = await knex.raw('SELECT VERSION() AS v');
  return /mariadb/i.test(String(rows[0].v)) ? 'utf8mb4_nopad_bin' : 'utf8mb4_0900_bin';
}

export async function up(knex: Knex): Promise<void> {
  const collation = await noPadCollation(knex);
  await knex.raw(`
    CREATE TABLE refunds (
      id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      refund_key     VARCHAR(40)  NOT NULL,
      refund_id      VARCHAR(128) NOT NULL,
      user_id        VARCHAR(64)  NOT NULL,
      record_id      VARCHAR(40)  NOT NULL,
      request_id     VARCHAR(128) NOT NULL,
      service_name   VARCHAR(32)  NOT NULL,
      count          INT UNSIGNED NOT NULL,
      free_count     INT UNSIGNED NOT NULL,
      paid_count     INT UNSIGNED NOT NULL,
      free_returned  INT UNSIGNED NOT NULL,
      amount         BIGINT       NOT NULL,
      period         CHAR(6)      NOT NULL,
      created_at     DATETIME(3)  NOT NULL,
      persisted_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (id),
      UNIQUE KEY uq_refunds_key (refund_key),
      KEY ix_refunds_user_record (user_id, record_id),
      KEY ix_refunds_user_refund (user_id, refund_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${collation}`);
  await knex.raw(`
    ALTER TABLE usage_daily
      ADD COLUMN refunded_count BIGINT NOT NULL DEFAULT 0,
      ADD COLUMN refunded_cost  BIGINT NOT NULL DEFAULT 0`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE usage_daily DROP COLUMN refunded_count, DROP COLUMN refunded_cost');
  await knex.schema.dropTableIfExists('refunds');
}
