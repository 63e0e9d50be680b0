import type { Knex } from 'knex';

/*
 * The system of record. Every amount is BIGINT micro-units (1 CNY = 1,000,000). Ids compare as bytes
 * (utf8mb4_bin) because Redis keys do: "Alice" and "alice" are two users.
 */
const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE accounts (
      user_id          VARCHAR(64)  NOT NULL,
      balance          BIGINT       NOT NULL DEFAULT 0,
      overdraft_limit  BIGINT       NOT NULL DEFAULT 0,
      created_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      updated_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      PRIMARY KEY (user_id)
    ) ${TABLE_OPTIONS}`);

  // Free calls used per user, service and month (period = YYYYMM in the business time zone).
  await knex.raw(`
    CREATE TABLE quota_usage (
      user_id       VARCHAR(64) NOT NULL,
      period        CHAR(6)     NOT NULL,
      service_name  VARCHAR(32) NOT NULL,
      used          BIGINT      NOT NULL DEFAULT 0,
      updated_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      PRIMARY KEY (user_id, period, service_name)
    ) ${TABLE_OPTIONS}`);

  // One row per accepted, charged call (or committed reservation). record_id is the id the gateway
  // was given; (user_id, request_id) makes a replayed request impossible to store twice.
  await knex.raw(`
    CREATE TABLE consumption_records (
      id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      record_id     VARCHAR(40)  NOT NULL,
      user_id       VARCHAR(64)  NOT NULL,
      request_id    VARCHAR(128) NOT NULL,
      service_name  VARCHAR(32)  NOT NULL,
      type          VARCHAR(8)   NOT NULL,
      count         INT UNSIGNED NOT NULL,
      free_count    INT UNSIGNED NOT NULL,
      paid_count    INT UNSIGNED NOT NULL,
      amount        BIGINT       NOT NULL,
      unit_price    BIGINT       NULL,
      period        CHAR(6)      NOT NULL,
      created_at    DATETIME(3)  NOT NULL,
      persisted_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (id),
      UNIQUE KEY uq_records_record_id (record_id),
      UNIQUE KEY uq_records_user_request (user_id, request_id),
      KEY ix_records_user_time (user_id, created_at, id),
      KEY ix_records_user_service_time (user_id, service_name, created_at, id)
    ) ${TABLE_OPTIONS}`);

  // Every change of a balance, signed. SUM(amount) per user is the user's balance; (entry_type,
  // ref_id) makes each change impossible to book twice.
  await knex.raw(`
    CREATE TABLE ledger_entries (
      id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      user_id     VARCHAR(64)  NOT NULL,
      entry_type  VARCHAR(24)  NOT NULL,
      ref_id      VARCHAR(160) NOT NULL,
      amount      BIGINT       NOT NULL,
      note        VARCHAR(255) NULL,
      created_at  DATETIME(3)  NOT NULL,
      PRIMARY KEY (id),
      UNIQUE KEY uq_ledger_ref (entry_type, ref_id),
      KEY ix_ledger_user (user_id, id)
    ) ${TABLE_OPTIONS}`);

  // Daily aggregates per user and service (business-time-zone days), kept in the same transaction as
  // the records, so statistics never scan the records table.
  await knex.raw(`
    CREATE TABLE usage_daily (
      user_id       VARCHAR(64) NOT NULL,
      day           DATE        NOT NULL,
      service_name  VARCHAR(32) NOT NULL,
      total_count   BIGINT      NOT NULL DEFAULT 0,
      free_count    BIGINT      NOT NULL DEFAULT 0,
      paid_count    BIGINT      NOT NULL DEFAULT 0,
      total_cost    BIGINT      NOT NULL DEFAULT 0,
      records       BIGINT      NOT NULL DEFAULT 0,
      PRIMARY KEY (user_id, day, service_name)
    ) ${TABLE_OPTIONS}`);
}

export async function down(knex: Knex): Promise<void> {
  for (const t of ['usage_daily', 'ledger_entries', 'consumption_records', 'quota_usage', 'accounts']) {
    await knex.schema.dropTableIfExists(t);
  }
}
