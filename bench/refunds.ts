/*
 * `npm run bench:refunds` (issue #14, refunds): the refund path measured with the service's own code
 * (createContext, services called in-process; no HTTP), on a throw-away redis-server and MariaDB.
 *
 * (1) Latency of refunds one after another (each a read of the remembered deduct and one script), and
 * of deducts the same way for comparison. (2) Redis bytes a refund adds (its answer and the record's
 * refunded-so-far entry, keys included), by MEMORY USAGE; a deduct's own memory is not touched by a
 * refund. (3) Persistence of the journaled refunds: changes per second through persist().
 * A table on stdout, JSON under bench/results/refunds-*.json.
 *
 * Env: BENCH_USERS (100), BENCH_CALLS_PER_USER (20).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, startMariaDb, ensurePackages } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { loadConfig } from '../src/config/config.js';
import { createContext, type AppContext } from '../src/context.js';
import { createLogger } from '../src/lib/logger.js';
import type { LedgerChange } from '../src/lib/ledger-change.js';

const USERS = Number(process.env.BENCH_USERS ?? 100);
const CALLS = Number(process.env.BENCH_CALLS_PER_USER ?? 20);
const log = (s: string) => console.log(`[bench:refunds] ${s}`);
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

function percentiles(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))], 3);
  return { p50: at(50), p90: at(90), p99: at(99), max: round(s[s.length - 1], 3) };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function memoryOf(ctx: AppContext, pattern: string): Promise<{ keys: number; bytes: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  do {
    const [next, found] = await ctx.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      keys++;
      bytes += Number(await ctx.redis.memory('USAGE', key, 'SAMPLES', '0'));
    }
  } while (cursor !== '0');
  return { keys, bytes };
}

async function main(): Promise<void> {
  ensurePackages(log);
  const dir = mkdtempSync(join(tmpdir(), 'billing-bench-refunds-'));
  const [redisServer, mariadb] = await Promise.all([
    startRedis({ dir: join(dir, 'redis'), aof: false }),
    startMariaDb({ dir: join(dir, 'mariadb'), database: 'bench', fast: true }),
  ]);
  let ctx: AppContext | null = null;
  const results: Record<string, unknown> = { users: USERS, callsPerUser: CALLS, loadavgAtStart: loadavg()[0] };
  try {
    const migrateDb = createDatabase(mariadb.url, 2);
    await migrateLatest(migrateDb);
    await migrateDb.destroy();
    const config = loadConfig({
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      REDIS_URL: redisServer.url,
      DATABASE_URL: mariadb.url,
      REDIS_KEY_PREFIX: 'bench',
      QUEUE_PREFIX: '{bench}',
    });
    ctx = createContext(config, { logger: createLogger('warn') });
    const users = Array.from({ length: USERS }, (_, i) => `bench-refund-${i}`);
    for (const userId of users) {
      await ctx.credits.credit({ kind: 'adjustment', id: `seed-${userId}`, userId, amount: 1_000_000_000n, note: '' });
    }

    // (1) deducts and refunds one after another: 3 calls each, past the free quota after the first ones.
    const deductMs: number[] = [];
    for (const userId of users)
      for (let i = 0; i < CALLS; i++)
        deductMs.push(
          await timed(() => ctx!.billing.deduct({ requestId: `r${i}`, userId, serviceName: 'payment', count: 3 })),
        );
    const refundMs: number[] = [];
    // Every other call refunded (one in two in parts, one in two whole): the others stay unrefunded.
    for (const userId of users)
      for (let i = 0; i < CALLS; i += 2)
        refundMs.push(
          await timed(() =>
            ctx!.refunds.refund({ refundId: `f${i}`, userId, requestId: `r${i}`, count: i % 4 === 0 ? 2 : undefined }),
          ),
        );
    results.latencyMs = { deduct: percentiles(deductMs), refund: percentiles(refundMs) };

    // (2) Redis bytes of refunds: the refund-id answers and the refunded-so-far entries.
    const refundsMemory = await memoryOf(ctx, 'bench:{*}:refunds:*');
    const refundedMemory = await memoryOf(ctx, 'bench:{*}:refunded:*');
    const refunds = refundMs.length;
    results.memory = {
      refunds,
      bytesPerRefund: round((refundsMemory.bytes + refundedMemory.bytes) / refunds),
      refundIdHashes: refundsMemory,
      refundedHashes: refundedMemory,
    };

    // (3) persistence of what the deducts and refunds journaled, in batches of 500.
    await ctx.persistence.drainBuffer();
    const journal: LedgerChange[] = [];
    for (const userId of users)
      for (const json of Object.values(await ctx.redis.hgetall(ctx.keys.pending(userId))))
        journal.push(JSON.parse(json) as LedgerChange);
    const refundChanges = journal.filter((c) => c.kind === 'refund');
    const t = Date.now();
    for (let i = 0; i < refundChanges.length; i += 500) await ctx.persistence.persist(refundChanges.slice(i, i + 500));
    const seconds = (Date.now() - t) / 1000;
    results.persistence = { refundChanges: refundChanges.length, perSecond: round(refundChanges.length / seconds) };
    results.loadavgAtEnd = loadavg()[0];

    const l = results.latencyMs as { deduct: { p50: number; p99: number }; refund: { p50: number; p99: number } };
    const m = results.memory as { bytesPerRefund: number };
    console.table([
      { what: 'deduct latency (in-process, sequential)', p50: l.deduct.p50, p99: l.deduct.p99 },
      { what: 'refund latency (in-process, sequential)', p50: l.refund.p50, p99: l.refund.p99 },
    ]);
    log(`Redis per refund: ${m.bytesPerRefund} B (${CALLS / 2} refunds a user, keys included)`);
    log(`refunds persisted: ${(results.persistence as { perSecond: number }).perSecond}/s`);
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/refunds-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify(results, null, 2));
    log(`results in ${file}`);
  } finally {
    await ctx?.close();
    await Promise.allSettled([redisServer.stop(), mariadb.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
