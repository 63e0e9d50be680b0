import type { Knex } from 'knex';

const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

export async function up(knex: Knex): Promise<void> {
  // One row per reconciliation run: what it checked, found and repaired.
  await knex.raw(`
    CREATE TABLE reconciliation_runs (
      id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      trigger_kind      VARCHAR(16)  NOT NULL,
      status            VARCHAR(8)   NOT NULL DEFAULT 'running',
      started_at        DATETIME(3)  NOT NULL,
      finished_at       DATETIME(3)  NULL,
      duration_ms       INT UNSIGNED NULL,
      users_checked     INT UNSIGNED NOT NULL DEFAULT 0,
      users_in_flight   INT UNSIGNED NOT NULL DEFAULT 0,
      mismatches        INT UNSIGNED NOT NULL DEFAULT 0,
      repairs           INT UNSIGNED NOT NULL DEFAULT 0,
      reenqueued        INT UNSIGNED NOT NULL DEFAULT 0,
      orders_checked    INT UNSIGNED NOT NULL DEFAULT 0,
      orders_completed  INT UNSIGNED NOT NULL DEFAULT 0,
      orders_closed     INT UNSIGNED NOT NULL DEFAULT 0,
      error             VARCHAR(1024) NULL,
      PRIMARY KEY (id),
      KEY ix_runs_started (started_at)
    ) ${TABLE_OPTIONS}`);

  // Every mismatch a run found, and whether it repaired it.
  await knex.raw(`
    CREATE TABLE reconciliation_repairs (
      id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      run_id      BIGINT UNSIGNED NOT NULL,
      user_id     VARCHAR(64)  NULL,
      kind        VARCHAR(32)  NOT NULL,
      subject     VARCHAR(64)  NOT NULL,
      before_value VARCHAR(64) NULL,
      after_value  VARCHAR(64) NULL,
      repaired    TINYINT(1)   NOT NULL,
      note        VARCHAR(255) NULL,
      created_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      PRIMARY KEY (id),
      KEY ix_repairs_run (run_id),
      KEY ix_repairs_user (user_id, id)
    ) ${TABLE_OPTIONS}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('reconciliation_repairs');
  await knex.schema.dropTableIfExists('reconciliation_runs');
}
