import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { loadConfig, type Config } from '../../src/config/config.js';
import { startRoles, type Running, type Role } from '../../src/main/processes.js';
import { createLogger } from '../../src/lib/logger.js';
import { BusinessCalendar, type Clock } from '../../src/lib/clock.js';
import { workerDeps } from '../../src/context.js';
import type { WorkerDeps } from '../../src/workers/workers.js';
import type { RedisClient } from '../../src/redis/connection.js';
import type { RedisKeys } from '../../src/redis/keys.js';
import type { Db } from '../../src/repositories/database.js';
import type { JobQueues } from '../../src/jobs/queues.js';
import { AccountRepository } from '../../src/repositories/account.repository.js';
import { LedgerRepository } from '../../src/repositories/ledger.repository.js';
import { ReconciliationRepository } from '../../src/repositories/reconciliation.repository.js';
import type { AccountService } from '../../src/services/account.service.js';
import type { AdminService } from '../../src/services/admin.service.js';
import type { CreditService } from '../../src/services/credit.service.js';
import type { PersistenceService } from '../../src/services/persistence.service.js';
import type { ReconciliationService } from '../../src/services/reconciliation.service.js';
import type { ReservationService } from '../../src/services/reservation.service.js';
import type { ArchiveService } from '../../src/services/archive.service.js';
import type { GrantService } from '../../src/services/grant.service.js';
import { RechargeRepository } from '../../src/repositories/recharge.repository.js';
import { testServers } from './servers.js';
import { PaymentSimulator } from '../../simulator/payment-simulator.js';

export const GATEWAY_TOKEN = 'test-gateway-token';
export const ADMIN_TOKEN = 'test-admin-token';
export const CALLBACK_SECRET = 'test-callback-secret';

export interface ApiResponse<T = any> {
  status: number;
  body: { success: boolean; data: T; code?: number; message?: string; details?: { field: string; message: string }[] };
}

/**
 * What tests read and drive beside HTTP: the stores and their key layout, the queues, repositories over
 * the same database, the services that have no route (sweeps, runs, buffers), and the workers' deps.
 * Built here from the running process, so the service's own context carries nothing only tests need.
 */
export interface Probe {
  config: Config;
  clock: Clock;
  calendar: BusinessCalendar;
  redis: RedisClient;
  db: Db;
  keys: RedisKeys;
  queues: JobQueues;
  repositories: {
    accounts: AccountRepository;
    ledger: LedgerRepository;
    reconciliation: ReconciliationRepository;
    recharges: RechargeRepository;
  };
  accounts: AccountService;
  admin: AdminService;
  /** the one credit path (seedBalance) */
  credits: CreditService;
  persistence: PersistenceService;
  reconciliation: ReconciliationService;
  reservations: ReservationService;
  archive: ArchiveService;
  /** credit grants: `expireDue()` is the expiry job's run */
  grants: GrantService;
  /** what startWorkers / jobHandlers take, to run a worker inside the test */
  workers: WorkerDeps;
}

export interface Harness {
  url: string;
  running: Running;
  /** what tests read and drive beside HTTP (never the service's context itself) */
  probe: Probe;
  config: Config;
  /** the environment this harness's config came from: spawn a process with it to join the harness */
  env: Record<string, string>;
  /** the payment simulator, when asked for */
  sim?: PaymentSimulator;
  /** a prefix for this harness's user ids */
  tag: string;
  user(name: string): string;
  post<T = any>(path: string, body: unknown, headers?: Record<string, string>): Promise<ApiResponse<T>>;
  put<T = any>(path: string, body: unknown, headers?: Record<string, string>): Promise<ApiResponse<T>>;
  del<T = any>(path: string, headers?: Record<string, string>): Promise<ApiResponse<T>>;
  get<T = any>(
    path: string,
    query?: Record<string, string | number>,
    headers?: Record<string, string>,
  ): Promise<ApiResponse<T>>;
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
  /** start a payment simulator and point the payment client at it */
  simulator?: boolean;
  env?: Record<string, string>;
  /** servers of the test's own (fault tests restart them); default: the run's shared ones */
  servers?: { redisUrl: string; databaseUrl: string };
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const servers = opts.servers ?? (await testServers());
  const tag = randomBytes(4).toString('hex');
  const sim = opts.simulator ? await new PaymentSimulator({ callbackSecret: CALLBACK_SECRET }).start() : undefined;
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    REDIS_URL: servers.redisUrl,
    DATABASE_URL: servers.databaseUrl,
    REDIS_KEY_PREFIX: `t${tag}`,
    QUEUE_PREFIX: `{q${tag}}`,
    PORT: '0',
    GRPC_PORT: '0',
    HOST: '127.0.0.1',
    GATEWAY_TOKEN,
    ADMIN_TOKEN,
    PAYMENT_CALLBACK_SECRET: CALLBACK_SECRET,
    PAYMENT_GRPC_ADDR: sim?.grpcAddr ?? '127.0.0.1:1',
    PAYMENT_TIMEOUT: '1500ms',
    // A killed worker's job is picked up again within seconds, not the production 30 s.
    QUEUE_LOCK_DURATION: '5000',
    QUEUE_STALLED_INTERVAL: '1000',
    // Deliveries never wait for spare CPU here: the tests' timings must not follow the machine's load
    // (the CPU gate has tests of its own: test/unit/cpu-gate.test.ts, and the webhooks suite).
    WEBHOOKS_YIELD_ABOVE_CPU_PERCENT: '100',
    ...opts.env,
  };
  const config = loadConfig(env, opts.overrides ?? {});
  const running = await startRoles(config, opts.roles ?? ['api', 'worker'], {
    clock: opts.clock,
    logger: createLogger(config.logLevel, 'test'),
  });
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
  const probe: Probe = {
    config,
    clock: ctx.clock,
    calendar: new BusinessCalendar(config.businessTz),
    redis: ctx.redis,
    db: ctx.db,
    keys: ctx.keys,
    queues: ctx.queues,
    repositories: {
      accounts: new AccountRepository(ctx.db),
      ledger: new LedgerRepository(ctx.db),
      reconciliation: new ReconciliationRepository(ctx.db),
      recharges: new RechargeRepository(ctx.db),
    },
    accounts: ctx.accounts,
    admin: ctx.admin,
    credits: ctx.credits,
    persistence: ctx.persistence,
    reconciliation: ctx.reconciliation,
    reservations: ctx.reservations,
    archive: ctx.archive,
    grants: ctx.grants,
    workers: workerDeps(ctx),
  };
  const harness: Harness = {
    url,
    running,
    probe,
    config,
    tag,
    env,
    sim,
    user: (name) => `${tag}-${name}`,
    post: (path, body, headers) => call('POST', path, body, headers),
    put: (path, body, headers) => call('PUT', path, body, headers),
    del: (path, headers) => call('DELETE', path, undefined, headers),
    get: (path, query = {}, headers) =>
      call(
        'GET',
        `${path}?${new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]))}`,
        undefined,
        headers,
      ),
    async drain(timeoutMs = 60_000) {
      const started = Date.now();
      while (Date.now() - started < timeoutMs) {
        await probe.persistence.drainBuffer();
        let busy = 0;
        for (const queue of [probe.queues.queueOf('persist-changes'), probe.queues.queueOf('apply-payment')]) {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
          busy += Object.values(counts).reduce((a, b) => a + b, 0);
        }
        if (busy === 0 && (await probe.persistence.pendingCount()) === 0) return Date.now() - started;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`queues did not drain within ${timeoutMs} ms`);
    },
    async assertInvariant(userIds) {
      const period = probe.calendar.period(probe.clock.now());
      for (const userId of userIds) {
        const redisBal = await probe.redis.hget(probe.keys.account(userId), 'bal');
        const { balance, ledgerSum } = await probe.repositories.ledger.balanceAndLedgerSum(userId);
        // An account absent from Redis (never loaded, evicted when idle) is MySQL's, loaded on its next call:
        // then nothing of it may be unpersisted.
        if (redisBal !== null) expect(BigInt(redisBal), `redis vs mysql balance of ${userId}`).to.equal(balance);
        else expect(await probe.redis.hlen(probe.keys.pending(userId)), `journal of absent ${userId}`).to.equal(0);
        expect(balance, `mysql balance vs ledger sum of ${userId}`).to.equal(ledgerSum);
        // The running balance of the latest entry (what reconciliation checks in O(1)) agrees too.
        // (with every entry archived, the archived sum is that running balance)
        const latest = await probe
          .db('ledger_entries')
          .where({ user_id: userId })
          .orderBy('id', 'desc')
          .first('balance_after');
        const archived = await probe.db('accounts').where({ user_id: userId }).first('archived_balance');
        const running = latest?.balance_after ?? archived?.archived_balance ?? 0;
        expect(BigInt(running), `latest running balance of ${userId}`).to.equal(balance);
        // Grants included (SPEC 14): each grant's remaining in Redis = credit_grants = the sum of its entries.
        const grantRows: { grant_id: string; remaining: string; status: string; entries: string }[] = await probe
          .db('credit_grants as g')
          .where('g.user_id', userId)
          .select(
            'g.grant_id',
            'g.remaining',
            'g.status',
            probe.db.raw(
              '(SELECT COALESCE(SUM(e.amount), 0) FROM grant_entries e WHERE e.user_id = g.user_id AND e.grant_id = g.grant_id) AS entries',
            ),
          );
        const redisGrants = JSON.parse((await probe.redis.hget(probe.keys.account(userId), 'g')) ?? '[]') as {
          id: string;
          rem: string;
        }[];
        for (const row of grantRows) {
          expect(String(row.entries), `grant ${row.grant_id} of ${userId}: entries vs remaining`).to.equal(
            String(row.remaining),
          );
          const live = redisGrants.find((g) => g.id === row.grant_id);
          if (live)
            expect(live.rem, `grant ${row.grant_id} of ${userId}: redis vs mysql`).to.equal(String(row.remaining));
          else if (redisBal !== null && row.status === 'active' && String(row.remaining) !== '0')
            expect.fail(`grant ${row.grant_id} of ${userId} is active in MySQL but not in Redis`);
        }
        for (const g of redisGrants) {
          expect(
            grantRows.some((r) => r.grant_id === g.id),
            `grant ${g.id} of ${userId} is in Redis but not in MySQL`,
          ).to.equal(true);
        }
        // Fields starting with '!' are the month's quota alarms (src/redis/commands/includes/alerts.lua).
        const redisUsed = Object.fromEntries(
          Object.entries(await probe.redis.hgetall(probe.keys.quota(userId, period))).filter(
            ([f]) => !f.startsWith('!') && !f.startsWith('$'),
          ),
        );
        const mysqlUsed = await probe.repositories.accounts.quotaUsage(userId, period);
        const mysqlMap = Object.fromEntries(mysqlUsed.map((r) => [r.service_name, r.used]));
        const redisServices = redisBal === null && Object.keys(redisUsed).length === 0 ? [] : Object.keys(mysqlMap);
        // Fields starting with $ are the month's and days' spending (limits), not services.
        for (const service of new Set([
          ...Object.keys(redisUsed).filter((f) => !f.startsWith('$')),
          ...redisServices,
        ])) {
          expect(redisUsed[service] ?? '0', `quota used of ${userId}/${service}`).to.equal(mysqlMap[service] ?? '0');
        }
      }
    },
    async stop() {
      await running.stop();
      await sim?.stop();
    },
  };
  return harness;
}

/** Credits a balance through the service's one credit path (an operator adjustment). */
export async function seedBalance(h: Harness, userId: string, micros: bigint): Promise<void> {
  const id = `seed-${userId}-${randomBytes(6).toString('hex')}`;
  await h.probe.credits.credit({ kind: 'adjustment', id, userId, amount: micros, note: 'test seed' });
}
