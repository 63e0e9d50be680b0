/*
 * `tsx bench/redis-deduct.ts [deducts] [free|paid]`: what one deduct costs Redis, from Redis's own
 * counters (INFO commandstats), on a throw-away redis-server: the deduct script called through
 * `Scripts` for 1,000 users (200 in flight), then an empty script given the same keys and arguments
 * (the fixed cost of calling a script), then the commands the script ran, per deduct. For comparing
 * two versions of the scripts side by side; no HTTP, no MySQL (the accounts are written straight
 * into Redis, as loaded).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis } from '../scripts/local-servers.js';
import { defineScripts, Scripts } from '../src/redis/scripts.js';
import { RedisKeys } from '../src/redis/keys.js';
import { Metrics } from '../src/lib/metrics.js';

const DEDUCTS = Number(process.argv[2] ?? 200_000);
const PAID = process.argv[3] === 'paid';
const USERS = 1000;
const IN_FLIGHT = 200;

/** CPU time (user + system) of a process so far, µs, from /proc. */
function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(stat[11]) + Number(stat[12])) * 1_000_000) / 100;
}

type Stats = Map<string, { calls: number; usec: number }>;
async function commandStats(redis: Redis): Promise<Stats> {
  const stats: Stats = new Map();
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) stats.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return stats;
}

const dir = mkdtempSync(join(tmpdir(), 'bench-redis-deduct-'));
// With the append-only file, as in production: every write a script makes is also written there.
const server = await startRedis({ dir, aof: true });
const redis = new Redis(server.url, { enableAutoPipelining: true });
try {
  defineScripts(redis);
  const keys = new RedisKeys('b');
  const noLoad = { load: () => Promise.reject(new Error('every account is in Redis')) };
  const scripts = new Scripts(redis, keys, noLoad, new Metrics(false));
  const user = (i: number) => `u${i % USERS}`;
  const now = new Date();
  for (let i = 0; i < USERS; i++) await redis.hset(keys.account(user(i)), 'bal', '1000000000000', 'v', '1');
  const service = { name: 'passport', freeQuota: PAID ? 0 : 1_000_000, priceArg: '1000', unitPrice: 1000n };
  const deduct = (i: number) =>
    scripts.deduct({
      userId: user(i),
      period: '202611',
      date: '2026-11-30',
      requestId: `r-${i}`,
      service: service as never,
      count: 1,
      idempotencyTtlMs: 86_400_000,
      quotaExpiresAt: now.getTime() + 40 * 86_400_000,
      now,
    });
  let next = 0;
  const run = async (one: (i: number) => Promise<unknown>) => {
    next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < DEDUCTS) await one(next++);
      }),
    );
  };
  await redis.config('RESETSTAT');
  const cpuBefore = cpuUs(server.process.pid!);
  await run(deduct);
  const cpu = (cpuUs(server.process.pid!) - cpuBefore) / DEDUCTS;
  const stats = await commandStats(redis);
  const perDeduct = (name: string) => ((stats.get(name)?.usec ?? 0) / DEDUCTS).toFixed(2);
  console.log(
    `${DEDUCTS} deducts (${PAID ? 'paid' : 'free'}): the script ${perDeduct('evalsha')} µs per deduct; ` +
      `redis-server's CPU ${cpu.toFixed(1)} µs per deduct (the script, the network, the append-only file)`,
  );
  const inner = [...stats].filter(([name]) => name !== 'evalsha' && name !== 'eval' && !name.startsWith('config'));
  for (const [name, s] of inner.sort((a, b) => b[1].usec - a[1].usec))
    console.log(`  ${name}: ${(s.calls / DEDUCTS).toFixed(2)} per deduct, ${(s.usec / DEDUCTS).toFixed(2)} µs`);

  // The fixed cost: an empty script with the deduct's 8 keys and 14 arguments.
  const args = [...Array.from({ length: 8 }, (_, i) => keys.account(user(i))), ...Array(14).fill('x'.repeat(20))];
  await redis.config('RESETSTAT');
  await run(() => redis.eval('return 1', 8, ...args));
  const empty = (await commandStats(redis)).get('eval')!;
  const emptyUs = empty.usec / empty.calls;
  console.log(`empty script, same keys and arguments: ${emptyUs.toFixed(2)} µs per call`);
  const commandsUs = inner.reduce((sum, [, s]) => sum + s.usec, 0) / DEDUCTS;
  const totalUs = (stats.get('evalsha')?.usec ?? 0) / DEDUCTS;
  console.log(
    `per deduct: ${commandsUs.toFixed(2)} µs in its commands, ${emptyUs.toFixed(2)} µs calling a script, ` +
      `${(totalUs - commandsUs - emptyUs).toFixed(2)} µs the script's own Lua (its calls into Redis included)`,
  );
} finally {
  redis.disconnect();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
