import type { Knex } from 'knex';

/*
 * consumption_records (and its archive) lose ix_records_user_request (user_id, request_id). Since a
 * request id may be reused after the idempotency window (20261129000001) no statement reads by it:
 * replays are answered from Redis, refunds find their deduct there too, and listings go by time. It
 * was the widest of the table's five indexes, written on every record: dropping it takes about a
 * tenth off what MariaDB spends booking a deduction (bench/persist-cpu.ts).
 */
const TABLES = ['consumption_records', 'consumption_records_archive'];

export async function up(knex: Knex): Promise<void> {
  for (const table of TABLES) await knex.raw(`ALTER TABLE ${table} DROP INDEX ix_records_user_request`);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of TABLES)
    await knex.raw(`ALTER TABLE ${table} ADD KEY ix_records_user_request (user_id, request_id)`);
}
