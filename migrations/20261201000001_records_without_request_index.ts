import type { Knex } from 'knex';

/*
 * consumption_records (and its archive) lose ix_records_user_request (user_id, request_id). Since a
 * request id may be reused after the idempotency window (20261129000001) no statement reads by it:
 * replays are answered from Redis, refunds find their deduct there too, and listings go by time. It
 * was the widest of the table's five indexes, written on every record: dropping it takes about a
 * tenth off what MariaDB spends booking a deduction (bench/persist-cpu.ts).
 */
const TABLES = ['consumption_records', 'consumption_records_archive'];
const INDEX = 'ix_records_user_request';

/** DDL is not transactional: a run that failed between the two tables is run again from the one it reached. */
async function hasIndex(knex: Knex, table: string): Promise<boolean> {
  const [rows] = (await knex.raw(
    'SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?',
    [table, INDEX],
  )) as unknown as [unknown[]];
  return rows.length > 0;
}

export async function up(knex: Knex): Promise<void> {
  for (const table of TABLES) {
    if (await hasIndex(knex, table)) await knex.raw(`ALTER TABLE ${table} DROP INDEX ${INDEX}`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const table of TABLES) {
    if (!(await hasIndex(knex, table))) await knex.raw(`ALTER TABLE ${table} ADD KEY ${INDEX} (user_id, request_id)`);
  }
}
