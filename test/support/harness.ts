import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { loadConfig, type Config } from '../../src/config/config.js';
import { startRoles, type Running, type Role } from '../../src/main/processes.js';
import { createLogger } from '../../src/lib/logger.js';
import type { Clock } from '../../src/lib/clock.js';
import { testServers } from './servers.js';

export const GATEWAY_TOKEN = 'test-gateway-token';
export const ADMIN_TOKEN = 'test-admin-token';

export interface ApiResponse<T = any> {
  status: number;
  body: { success: boolean; data: T; code?: number; message?: string; details?: { field: string; message: string }[] };
}

export interface Harness {
  url: string;
  running: Running;
  config: Config;
  /** a prefix for this harness's user ids */
  tag: string;
  user(name: string): string;
  post<T = any>(path: string, body: unknown, headers?: Record<string, string>): Promise<ApiResponse<T>>;
  get<T = any>(path: string, query?: Record<string, string | number>, headers?: Record<string, string>): Promise<ApiResponse<T>>;
  /** Waits until every accepted change is in MySQL: buffer flushed, queue empty, journals empty. */
  drain(timeoutMs?: number): Promise<number>;
  /** SPEC 7.2 for each user: Redis balance = MySQL balance = ledger sum; free quota used agrees. */
  assertInvariant(userIds: string[]): Promise<void>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  roles?: Role[];
  clock?: Clock;
  overrides?: Record<string, unknown>;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const servers = await testServers();
  const tag = randomBytes(4).toString('hex');
  const config = loadConfig(
    { NODE_ENV: 'test', REDIS_URL: servers.redisUrl, DATABASE_URL: servers.databaseUrl, PORT: '0', HOST: '127.0.0.1', GATEWAY_TOKEN, ADMIN_TOKEN },
    {
      redis: { key_prefix: `t${tag}` },
      queue: { prefix: `{q${tag}}` },
      log_level: process.env.TEST_LOG_LEVEL ?? 'silent',
      ...opts.overrides,
    },
  );
  const running = await startRoles(config, opts.roles ?? ['api', 'worker'], { clock: opts.clock, logger: createLogger(config.logLevel, 'test') });
  const url = running.url ?? '';
  const auth = { authorization: `Bearer ${GATEWAY_TOKEN}` };

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(url + path, {
      method,
      headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: any;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`non-JSON response ${res.status}: ${text.slice(0, 200)}`);
    }
    return { status: res.status, body: parsed };
  };

  const ctx = running.ctx;
  const harness: Harness = {
    url, running, config, tag,
    user: (name) => `${tag}-${name}`,
    post: (path, body, headers) => call('POST', path, body, headers),
    get: (path, query = {}, headers) => call('GET', `${path}?${new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]))}`, undefined, headers),
    async drain(timeoutMs = 60_000) {
      const started = Date.now();
      const queue = ctx.queues.queueOf('persist-changes');
      while (Date.now() - started < timeoutMs) {
        await ctx.persistence.drainBuffer();
        const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
        const busy = Object.values(counts).reduce((a, b) => a + b, 0);
        if (busy === 0 && (await ctx.persistence.pendingCount()) === 0) return Date.now() - started;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`queues did not drain within ${timeoutMs} ms`);
    },
    async assertInvariant(userIds) {
      const period = ctx.calendar.period(ctx.clock.now());
      for (const userId of userIds) {
        const redisBal = await ctx.redis.hget(ctx.keys.account(userId), 'bal');
        const { balance, ledgerSum } = await ctx.repositories.ledger.balanceAndLedgerSum(userId);
        expect(BigInt(redisBal ?? '0'), `redis vs mysql balance of ${userId}`).to.equal(balance);
        expect(balance, `mysql balance vs ledger sum of ${userId}`).to.equal(ledgerSum);
        const redisUsed = await ctx.redis.hgetall(ctx.keys.quota(userId, period));
        const mysqlUsed = await ctx.repositories.accounts.quotaUsage(userId, period);
        const mysqlMap = Object.fromEntries(mysqlUsed.map((r) => [r.service_name, r.used]));
        for (const service of new Set([...Object.keys(redisUsed), ...Object.keys(mysqlMap)])) {
          expect(redisUsed[service] ?? '0', `quota used of ${userId}/${service}`).to.equal(mysqlMap[service] ?? '0');
        }
      }
    },
    stop: () => running.stop(),
  };
  return harness;
}

/** Credits a balance through the service's one credit path (an operator adjustment). */
export async function seedBalance(h: Harness, userId: string, micros: bigint): Promise<void> {
  await h.running.ctx.credits.credit({ kind: 'adjustment', id: `seed-${userId}-${randomBytes(6).toString('hex')}`, userId, amount: micros, note: 'test seed' });
}
