/*
 * `tsx bench/persist-cpu.ts [batch] [batches] [all|apply|ack]`: the CPU one process spends per change
 * persisted, without queue or HTTP: synthetic deductions over 1,000 users, `batches` batches of `batch`
 * (defaults 20 and 300) through PersistenceService.persist (`all`), LedgerRepository.applyChanges in
 * one transaction (`apply`) or the journal acknowledgement alone (`ack`), on a redis-server and a
 * MariaDB of their own. Three measured runs after a warm-up; it prints this process's CPU, redis-server's
 * and mariadbd's per change. Steadier than bench/worker-cpu.ts for comparing two versions of the code.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, startMariaDb } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { loadConfig } from '../src/config/config.js';
import { createContext } from '../src/context.js';
import { createLogger } from '../src/lib/logger.js';
import { LedgerRepository } from '../src/repositories/ledger.repository.js';
import type { LedgerChange } from '../src/lib/ledger-change.js';

const batch = Number(process.argv[2] ?? 20);
const batches = Number(process.argv[3] ?? 300);
const mode = process.argv[4] ?? 'all';

const data = mkdtempSync(join(tmpdir(), 'bench-persist-cpu-'));
const redis = await startRedis({ dir: join(data, 'redis'), aof: true });
const db = await startMariaDb({ dir: join(data, 'mariadb'), database: 'billing', fast: true });
const migrator = createDatabase(db.url, 1);
await migrateLatest(migrator);
await migrator.destroy();
const env = { REDIS_URL: redis.url, DATABASE_URL: db.url, NODE_ENV: 'development' };
const ctx = createContext(loadConfig(env as NodeJS.ProcessEnv), { logger: createLogger('warn') });
const ledger = new LedgerRepository(ctx.db);

let seq = 0;
/** A deduction as deduct-8.lua journals it: two in three paid from the balance, one from free quota. */
const deduction = (): LedgerChange => {
  seq++;
  const free = seq % 3 === 0;
  return {
    kind: 'deduction',
    id: `rec_${seq.toString(36).padStart(12, '0')}`,
    userId: `bench${Math.floor(Math.random() * 1000)}`,
    requestId: `req-${seq}`,
    service: 'passport',
    count: '1',
    free: free ? '1' : '0',
    paid: free ? '0' : '1',
    amount: free ? '0' : '1000',
    unitPrice: '1000',
    period: '202611',
    day: '2026-11-29',
    at: new Date().toISOString(),
  };
};
const run = (changes: LedgerChange[]): Promise<unknown> =>
  mode === 'apply'
    ? ledger.transaction((trx) => ledger.applyChanges(changes, trx))
    : mode === 'ack'
      ? ctx.persistence.acknowledge(changes)
      : ctx.persistence.persist(changes);
/** CPU time of a server process so far, µs (clock ticks of 10 ms). */
const cpuUs = (pid: number | undefined) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(stat[11]) + Number(stat[12])) * 10_000;
};
const servers = () => ({ redis: cpuUs(redis.process.pid), mariadb: cpuUs(db.process.pid) });

// Each batch is parsed from JSON, as a job's payload is.
const payloads = (count: number) =>
  Array.from({ length: count }, () => JSON.stringify(Array.from({ length: batch }, deduction)));
for (const p of payloads(400)) await run(JSON.parse(p) as LedgerChange[]);
for (let round = 1; round <= 3; round++) {
  const measured = payloads(batches);
  const serversBefore = servers();
  const before = process.cpuUsage();
  for (const p of measured) await run(JSON.parse(p) as LedgerChange[]);
  const cpu = process.cpuUsage(before);
  const after = servers();
  const per = (us: number) => (us / (batches * batch)).toFixed(1);
  console.log(
    `${mode}, batches of ${batch}: ${per(cpu.user + cpu.system)} µs CPU per change ` +
      `(user ${per(cpu.user)}, sys ${per(cpu.system)}), redis-server ${per(after.redis - serversBefore.redis)} µs, ` +
      `mariadbd ${per(after.mariadb - serversBefore.mariadb)} µs`,
  );
}
await ctx.close();
await redis.stop();
await db.stop();
rmSync(data, { recursive: true, force: true });
process.exit(0);
