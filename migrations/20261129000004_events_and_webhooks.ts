import type { Knex } from 'knex';

/*
 * SPEC section 13, events and webhooks.
 *
 * events: a transactional outbox. The persistence job inserts each event (INSERT IGNORE by its
 * deterministic id) in the same transaction as the change that carried it; dispatched_at is set once
 * its deliveries are queued, and a scheduled job queues those a crash left undispatched. `seq` orders
 * the cursor pages.
 * alert_settings: per-user thresholds (NULL: the configured default), loaded with the account.
 * webhook_endpoints: operators' receivers; previous_secret stays valid until previous_secret_until.
 * webhook_deliveries: one row per attempt; response_excerpt is at most 1 KiB of the answer.
 */
async function noPadCollation(knex: Knex): Promise<string> {
  const [rows] = await knex.raw('SELECT VERSION() AS v');
  return /mariadb/i.test(String(rows[0].v)) ? 'utf8mb4_nopad_bin' : 'utf8mb4_0900_bin';
}

export async function up(knex: Knex): Promise<void> {
  const options = `ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${await noPadCollation(knex)}`;
  await knex.raw(`
    CREATE TABLE events (
      seq            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      id             VARCHAR(40)  NOT NULL,
      user_id        VARCHAR(64)  NOT NULL,
      type           VARCHAR(32)  NOT NULL,
      data           TEXT         NOT NULL,
      created_at     DATETIME(3)  NOT NULL,
      dispatched_at  DATETIME(3)  NULL,
      PRIMARY KEY (seq),
      UNIQUE KEY uq_events_id (id),
      KEY ix_events_user (user_id, seq),
      KEY ix_events_type (type, seq),
      KEY ix_events_undispatched (dispatched_at, seq)
    ) ${options}`);
  await knex.raw(`
    CREATE TABLE alert_settings (
      user_id            VARCHAR(64) NOT NULL,
      balance_low        BIGINT      NULL,
      quota_low_percent  INT         NULL,
      updated_at         DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      PRIMARY KEY (user_id)
    ) ${options}`);
  await knex.raw(`
    CREATE TABLE webhook_endpoints (
      id                     VARCHAR(40)   NOT NULL,
      url                    VARCHAR(2048) NOT NULL,
      events                 TEXT          NOT NULL,
      description            VARCHAR(255)  NOT NULL DEFAULT '',
      secret                 VARCHAR(80)   NOT NULL,
      previous_secret        VARCHAR(80)   NULL,
      previous_secret_until  DATETIME(3)   NULL,
      created_at             DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      deleted_at             DATETIME(3)   NULL,
      PRIMARY KEY (id)
    ) ${options}`);
  await knex.raw(`
    CREATE TABLE webhook_deliveries (
      id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      endpoint_id       VARCHAR(40)  NOT NULL,
      event_id          VARCHAR(40)  NOT NULL,
      attempt           INT          NOT NULL,
      status_code       INT          NULL,
      latency_ms        INT          NOT NULL,
      response_excerpt  VARCHAR(1024) NULL,
      error             VARCHAR(255) NULL,
      delivered         TINYINT(1)   NOT NULL,
      created_at        DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (id),
      KEY ix_deliveries_endpoint (endpoint_id, id),
      KEY ix_deliveries_event (event_id)
    ) ${options}`);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['webhook_deliveries', 'webhook_endpoints', 'alert_settings', 'events']) {
    await knex.schema.dropTableIfExists(table);
  }
}
