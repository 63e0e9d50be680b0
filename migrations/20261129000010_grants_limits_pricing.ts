import type { Knex } from 'knex';

/*
 * SPEC section 14: credit grants, spending limits and per-user prices.
 *
 * credit_grants holds each grant and what is left of it; grant_entries is the grants' ledger: every
 * movement of a grant (granted, spent by a call, given back by a refund or a release, expired, voided)
 * is one signed row, so SUM(amount) per grant = its remaining, as SUM(ledger_entries) per user = the
 * balance. The balance's ledger (ledger_entries) is unchanged: a call paid partly from grants books
 * one `grant_spend` row per grant touched here and one `deduction` row there for the balance's part.
 *
 * Ids compare as bytes (the server's NO PAD binary collation, as every other table since
 * 20261129000001).
 */
async function noPadCollation(knex: Knex): Promise<string> {
  const [rows] = await knex.raw('SELECT VERSION() AS v');
  return /mariadb/i.test(String(rows[0].v)) ? 'utf8mb4_nopad_bin' : 'utf8mb4_0900_bin';
}

export async function up(knex: Knex): Promise<void> {
  const options = `ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=${await noPadCollation(knex)}`;
  await knex.raw(`
    CREATE TABLE credit_grants (
      user_id      VARCHAR(64)  NOT NULL,
      grant_id     VARCHAR(64)  NOT NULL,
      category     VARCHAR(16)  NOT NULL,
      priority     INT          NOT NULL,
      amount       BIGINT       NOT NULL,
      remaining    BIGINT       NOT NULL,
      expires_at   DATETIME(3)  NULL,
      status       VARCHAR(8)   NOT NULL DEFAULT 'active',
      note         VARCHAR(255) NULL,
      created_at   DATETIME(3)  NOT NULL,
      ended_at     DATETIME(3)  NULL,
      PRIMARY KEY (user_id, grant_id),
      KEY ix_grants_due (status, expires_at)
    ) ${options}`);
  await knex.raw(`
    CREATE TABLE grant_entries (
      id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      user_id          VARCHAR(64)  NOT NULL,
      grant_id         VARCHAR(64)  NOT NULL,
      entry_type       VARCHAR(16)  NOT NULL,
      ref_id           VARCHAR(160) NOT NULL,
      amount           BIGINT       NOT NULL,
      remaining_after  BIGINT       NOT NULL,
      created_at       DATETIME(3)  NOT NULL,
      PRIMARY KEY (id),
      UNIQUE KEY uq_grant_entries_ref (user_id, grant_id, entry_type, ref_id),
      KEY ix_grant_entries_user (user_id, id)
    ) ${options}`);
  // NULL: no limit. Amounts in micro-units.
  await knex.raw(`
    CREATE TABLE spending_limits (
      user_id     VARCHAR(64) NOT NULL,
      daily       BIGINT      NULL,
      monthly     BIGINT      NULL,
      updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      PRIMARY KEY (user_id)
    ) ${options}`);
  // NULL: the catalogue's value.
  await knex.raw(`
    CREATE TABLE user_pricing (
      user_id       VARCHAR(64) NOT NULL,
      service_name  VARCHAR(32) NOT NULL,
      free_quota    BIGINT      NULL,
      unit_price    BIGINT      NULL,
      updated_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      PRIMARY KEY (user_id, service_name)
    ) ${options}`);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['user_pricing', 'spending_limits', 'grant_entries', 'credit_grants']) {
    await knex.schema.dropTableIfExists(table);
  }
}
