/*
 * `npm run bench:scale` (issue #18, SPEC 16): maintenance and reads at a million accounts, measured
 * with the service's own code: maintenance in-process (createContext, the services called directly),
 * reads over HTTP against the API role in its own process.
 *
 * It starts a throw-away redis-server and MariaDB under the OS temp dir, migrates, then generates
 * straight into MySQL, server-side (INSERT ... SELECT from MariaDB's sequence engine, in user order so
 * that every index is appended to, never split): per account one recharge and ENTRIES-1 deductions
 * with correct running balances (balance_after), accounts.balance = the last one, audited markers
 * set as if a previous run had verified them all; ENTRIES consumption records (the first free, each
 * paid one matching its ledger deduction) and their usage_daily rows. Generation goes by chunks of
 * accounts and stops early when BENCH_GENERATE_SECONDS is spent: the size reached is reported.
 *
 * Then: (1) a reconciliation run with 1 % of accounts changed, (2) one with nothing changed, (3) a
 * full audit's throughput (stopped after BENCH_AUDIT_SECONDS if not done), (4) Redis bytes per active
 * and per evicted account, (5) sweep and expiry cost with every account in Redis and 100 due entries,
 * (6) record and statistics reads over HTTP at a fixed rate (wrk, bench/wrk/paced.lua) against
 * src/main/api.ts, each beside a bare-route control (bench/bare-server.ts), (7) Redis bytes per
 * remembered request: BENCH_SMALL_DEDUCTS through BillingService and persisted to MySQL, then
 * BENCH_DEDUCTS (10M) through the Scripts wrapper, journal acknowledged but not written to MySQL.
 * A table on stdout, JSON under bench/results/scale-*.json (rewritten after each step).
 *
 * Env: BENCH_ACCOUNTS (1000000), BENCH_ENTRIES_PER_ACCOUNT (20), BENCH_GENERATE_SECONDS (900),
 * BENCH_AUDIT_SECONDS (300), BENCH_MEMORY_ACCOUNTS (100000), BENCH_REDIS_ACCOUNTS (all accounts),
 * BENCH_SMALL_DEDUCTS (200000), BENCH_DEDUCTS (10000000), BENCH_DEDUCT_USERS (5000),
 * BENCH_DEDUCT_CONCURRENCY (512), BENCH_READ_SECONDS (20), BENCH_READ_RATE (100), BENCH_BUFFER_POOL (4G),
 * BENCH_SETTLE_SECONDS (120), BENCH_KEEP=1 keeps the servers' folder, BENCH_STEPS=reads,... runs only the
 * steps named (reconciliation, full audit, account memory, sweep and expiry, reads, request memory).
 */
import { ReconciliationRepository } from '../src/repositories/reconciliation.repository.js';
import { BusinessCalendar } from '../src/lib/clock.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { startRedis, startMariaDb, ensurePackages, freePort } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { loadConfig } from '../src/config/config.js';
import { createContext, type AppContext } from '../src/context.js';
import { createLogger } from '../src/lib/logger.js';
import type { LedgerChange } from '../src/lib/ledger-change.js';
import { Scripts } from '../src/redis/scripts.js';
import { Metrics } from '../src/lib/metrics.js';

const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const ACCOUNTS = num('BENCH_ACCOUNTS', 1_000_000);
const ENTRIES = num('BENCH_ENTRIES_PER_ACCOUNT', 20);
const GENERATE_SECONDS = num('BENCH_GENERATE_SECONDS', 900);
const AUDIT_SECONDS = num('BENCH_AUDIT_SECONDS', 300);
const MEMORY_ACCOUNTS = num('BENCH_MEMORY_ACCOUNTS', 100_000);
const SMALL_DEDUCTS = num('BENCH_SMALL_DEDUCTS', 200_000);
const DEDUCTS = num('BENCH_DEDUCTS', 10_000_000);
/** 2,000 deducts a user at 10M: inside the listpack range of the idempotency hashes (docs/architecture.md). */
const DEDUCT_USERS = num('BENCH_DEDUCT_USERS', 5000);
const DEDUCT_CONCURRENCY = num('BENCH_DEDUCT_CONCURRENCY', 512);
/** Deducts between two journal drains (acknowledgements). */
const DEDUCT_CHUNK = 250_000;
const READ_SECONDS = num('BENCH_READ_SECONDS', 20);
const READ_RATE = num('BENCH_READ_RATE', 100);
const BUFFER_POOL = process.env.BENCH_BUFFER_POOL ?? '4G';
/** Accounts generated per round of INSERTs (ENTRIES ledger rows and records each). */
const CHUNK_ACCOUNTS = 25_000;
/** Every account starts with one recharge of 100.00; each deduction costs `count` calls at 0.001. */
const RECHARGE = 100_000_000;
const UNIT_PRICE = 1000;

const log = (s: string) => console.log(`[bench:scale] ${new Date().toISOString().slice(11, 19)} ${s}`);
const userId = (n: number) => `u${String(n).padStart(7, '0')}`;
/** SQL for the user id of account number `expr` (same format as userId). */
const userSql = (expr: string) => `CONCAT('u', LPAD(${expr}, 7, '0'))`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

type Row = [what: string, measured: string, figure: string, target: string];
const rows: Row[] = [];
const results: Record<string, unknown> = { at: new Date().toISOString(), cpus: cpus().length };

/** Runs `fn` over `items` with at most `concurrency` in flight. */
async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function range(from: number, to: number, step = 1): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i += step) out.push(i);
  return out;
}

async function usedMemory(ctx: AppContext): Promise<number> {
  const info = await ctx.redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

// ---------------------------------------------------------------------------------------------------
// Generation

interface Generated {
  accounts: number;
  seconds: number;
  ledgerEntries: number;
  records: number;
  dailyRows: number;
  phasesMs: Record<string, number>;
}

/**
 * Accounts 1..ACCOUNTS in chunks, all four tables per chunk, until the time budget is spent. Ids are
 * explicit and follow user order (entry s of the whole run is entry k of account u), so the ledger
 * deduction of entry k and the consumption record of entry k share s.
 */
async function generate(conns: mysql.Connection[], base: Date): Promise<Generated> {
  const t0 = Date.now();
  const phases = { ledger: 0, records: 0, daily: 0 };
  const service = `ELT(1 + k MOD 3, 'passport', 'payment', 'asset')`;
  const T0 = base.toISOString().slice(0, 23).replace('T', ' ');
  // Per account u and entry k (1..ENTRIES): calls = 1 + u mod 5; entry 1 is the recharge (and a free
  // record), entry k > 1 a paid deduction; the balance after entry k is RECHARGE - (k-1)*calls*price.
  const price = `(1 + u MOD 5) * ${UNIT_PRICE}`;
  const at = `TIMESTAMP('${T0}') - INTERVAL (${ENTRIES} - k) DAY - INTERVAL (u MOD 3600) SECOND`;
  const entries = (from: number, to: number) =>
    `(SELECT seq AS s, (seq - 1) DIV ${ENTRIES} + 1 AS u, (seq - 1) MOD ${ENTRIES} + 1 AS k
        FROM seq_${from}_to_${to}) e`;
  let done = 0;
  while (done < ACCOUNTS) {
    const first = done + 1;
    const last = Math.min(ACCOUNTS, done + CHUNK_ACCOUNTS);
    const [sFrom, sTo] = [(first - 1) * ENTRIES + 1, last * ENTRIES];
    // Two connections, two cores: accounts and ledger on one, records and their daily rows on the other.
    const tA = Date.now();
    await Promise.all([
      (async () => {
        await conns[0].query(`
      INSERT INTO accounts (user_id, balance, overdraft_limit, created_at, updated_at, changed_at, audited_entry_id,
                            audited_balance)
      SELECT ${userSql('u')}, b, 0, TIMESTAMP('${T0}') - INTERVAL 60 DAY, TIMESTAMP('${T0}') - INTERVAL 1 DAY,
             TIMESTAMP('${T0}') - INTERVAL 1 DAY, u * ${ENTRIES}, b
        FROM (SELECT seq AS u, ${RECHARGE} - (${ENTRIES} - 1) * (1 + seq MOD 5) * ${UNIT_PRICE} AS b
                FROM seq_${first}_to_${last}) a`);
        await conns[0].query(`
      INSERT INTO ledger_entries (id, user_id, entry_type, ref_id, amount, note, created_at, balance_after)
      SELECT s, ${userSql('u')}, IF(k = 1, 'recharge', 'deduction'),
             IF(k = 1, CONCAT('o', LPAD(u, 9, '0')), CONCAT('c', LPAD(s, 11, '0'))),
             IF(k = 1, ${RECHARGE}, -${price}), IF(k = 1, 'recharge', 'bench'), ${at},
             ${RECHARGE} - (k - 1) * ${price}
        FROM ${entries(sFrom, sTo)}`);
        phases.ledger += Date.now() - tA;
      })(),
      (async () => {
        await conns[1].query(`
      INSERT INTO consumption_records (id, record_id, user_id, request_id, service_name, type, count, free_count,
                                       paid_count, amount, unit_price, period, created_at, persisted_at)
      SELECT s, CONCAT('c', LPAD(s, 11, '0')), ${userSql('u')}, CONCAT('q', LPAD(k, 5, '0')), ${service},
             IF(k = 1, 'free', 'balance'), 1 + u MOD 5, IF(k = 1, 1 + u MOD 5, 0), IF(k = 1, 0, 1 + u MOD 5),
             IF(k = 1, 0, ${price}), ${UNIT_PRICE}, DATE_FORMAT(${at} + INTERVAL 8 HOUR, '%Y%m'), ${at}, ${at}
        FROM ${entries(sFrom, sTo)}`);
        phases.records += Date.now() - tA;
        const tD = Date.now();
        // The entries of an account lie whole days apart, so each record is its own business day
        // (Asia/Shanghai, UTC+8 without DST, as the persist transaction labels them): one daily row each.
        await conns[1].query(`
      INSERT INTO usage_daily (user_id, day, service_name, total_count, free_count, paid_count, total_cost, records)
      SELECT ${userSql('u')}, DATE(${at} + INTERVAL 8 HOUR), ${service}, 1 + u MOD 5, IF(k = 1, 1 + u MOD 5, 0),
             IF(k = 1, 0, 1 + u MOD 5), IF(k = 1, 0, ${price}), 1
        FROM ${entries(sFrom, sTo)}`);
        phases.daily += Date.now() - tD;
      })(),
    ]);
    done = last;
    const elapsed = (Date.now() - t0) / 1000;
    if (done % 100_000 === 0 || done === ACCOUNTS) {
      log(`generated ${done.toLocaleString()} accounts in ${Math.round(elapsed)} s (${JSON.stringify(phases)} ms)`);
    }
    if (elapsed > GENERATE_SECONDS && done < ACCOUNTS) {
      log(`time budget of ${GENERATE_SECONDS} s spent: stopping at ${done.toLocaleString()} accounts`);
      break;
    }
  }
  const seconds = round((Date.now() - t0) / 1000);
  const [[daily]] = (await conns[0].query('SELECT COUNT(*) AS n FROM usage_daily')) as unknown as [[{ n: number }]];
  return {
    accounts: done,
    seconds,
    ledgerEntries: done * ENTRIES,
    records: done * ENTRIES,
    dailyRows: Number(daily.n),
    phasesMs: phases,
  };
}

// ---------------------------------------------------------------------------------------------------
// Measurements

/** Every 100th account gets one new deduction (running balance right, changed_at now) and is loaded. */
async function changeOnePercent(ctx: AppContext, conn: mysql.Connection, accounts: number): Promise<string[]> {
  const changed = range(100, accounts, 100).map(userId);
  const cond = `user_id IN (${changed.map(() => '?').join(',')})`;
  await conn.query(
    `INSERT INTO ledger_entries (user_id, entry_type, ref_id, amount, note, created_at, balance_after)
     SELECT user_id, 'deduction', CONCAT('bench-new-', user_id), -5000, 'bench', NOW(3), balance - 5000
       FROM accounts WHERE ${cond}`,
    changed,
  );
  await conn.query(`UPDATE accounts SET balance = balance - 5000, changed_at = NOW(3) WHERE ${cond}`, changed);
  await pool(changed, 32, (u) => ctx.accounts.load(u));
  return changed;
}

async function reconciliationRuns(ctx: AppContext, conn: mysql.Connection, accounts: number): Promise<void> {
  const state = new ReconciliationRepository(ctx.db);
  // The previous run began 10 minutes ago: every account was verified then (the audited markers).
  await state.setState('changes_since', new Date(Date.now() - 10 * 60_000).toISOString());
  await state.setState('audit_cursor', '');
  const t = Date.now();
  const changed = await changeOnePercent(ctx, conn, accounts);
  log(`1 % changed: ${changed.length} accounts given a new entry and loaded into Redis in ${Date.now() - t} ms`);

  const one = await ctx.reconciliation.run('manual');
  log(`run, 1 % changed: ${one.durationMs} ms, ${one.users_checked} checked, ${one.mismatches} mismatches`);
  results.runOnePercent = one;
  rows.push([
    `reconciliation run, ${changed.length.toLocaleString()} of ${accounts.toLocaleString()} changed`,
    `${one.users_checked} checked, ${one.mismatches} mismatches`,
    `${(one.durationMs / 1000).toFixed(2)} s`,
    '≤ 30 s',
  ]);

  // Nothing changed since: as if the next run came after the margin for late commits (2 min) had
  // passed, its mark is MySQL's now (that run itself set it 2 minutes back).
  const [[now]] = (await conn.query('SELECT CURRENT_TIMESTAMP(3) AS t')) as unknown as [[{ t: Date }]];
  await state.setState('changes_since', new Date(now.t).toISOString());
  const none = await ctx.reconciliation.run('manual');
  log(`run, nothing changed: ${none.durationMs} ms, ${none.users_checked} checked (the audit slice)`);
  results.runNothingChanged = none;
  rows.push([
    'reconciliation run, nothing changed',
    `${none.users_checked} checked (audit slice), ${none.mismatches} mismatches`,
    `${(none.durationMs / 1000).toFixed(2)} s`,
    '≤ 2 s',
  ]);
}

class AuditStopped extends Error {}

/** A full audit, stopped from its progress callback after AUDIT_SECONDS (the run is then recorded failed). */
async function fullAudit(ctx: AppContext, accounts: number): Promise<void> {
  const t0 = Date.now();
  const samples: { ms: number; done: number }[] = [];
  let finished = true;
  // Recorded first, as the admin API does, so that a run stopped early is still found by its id.
  const runId = await ctx.reconciliation.createRun('manual', true);
  try {
    await ctx.reconciliation.run(
      'manual',
      (phase, done) => {
        if (phase !== 'accounts') return;
        samples.push({ ms: Date.now() - t0, done });
        if (Date.now() - t0 > AUDIT_SECONDS * 1000) throw new AuditStopped(`bench: stopped after ${AUDIT_SECONDS} s`);
      },
      { full: true, runId },
    );
  } catch (err) {
    if (!(err instanceof AuditStopped)) throw err;
    finished = false;
  }
  const ms = Date.now() - t0;
  const [row] = await ctx.db('reconciliation_runs').where({ id: runId }).select();
  const checked = Number(row.users_checked);
  // Throughput over the accounts phase only (the sweep before it and orders after it are excluded).
  const first = samples[0];
  const last = samples[samples.length - 1];
  const perSecond =
    last && last !== first ? ((last.done - first.done) * 1000) / (last.ms - first.ms) : (checked * 1000) / ms;
  results.fullAudit = {
    finished,
    ms,
    checked,
    accounts,
    perSecond: Math.round(perSecond),
    mismatches: row.mismatches,
    samples: samples.filter((_, i) => i % 20 === 0),
  };
  log(`full audit: ${checked} accounts in ${ms} ms (${finished ? 'finished' : 'stopped'}), ${Math.round(perSecond)}/s`);
  rows.push([
    `full audit (${finished ? 'all' : `first ${checked.toLocaleString()}`} of ${accounts.toLocaleString()})`,
    `${checked.toLocaleString()} in ${(ms / 1000).toFixed(1)} s, ${row.mismatches} mismatches`,
    `${Math.round(perSecond).toLocaleString()} accounts/s`,
    '-',
  ]);
}

/**
 * evictIdle until a call evicts nothing: one call takes at most 10,000 users per index key (dueMembers'
 * page), which on one Redis server (one index key) is 10,000 accounts a call.
 */
async function evictAllIdle(ctx: AppContext): Promise<{ evicted: number; busy: number; calls: number[] }> {
  const calls: number[] = [];
  for (;;) {
    const r = await ctx.accounts.evictIdle(1);
    if (r.evicted === 0) return { evicted: calls.reduce((a, b) => a + b, 0), busy: r.busy, calls };
    calls.push(r.evicted);
  }
}

/**
 * Bytes of Redis per active account (loaded through AccountService.load, then made lasting and listed
 * in the activity index as a persisted change leaves it), and per account after evictIdle.
 */
async function accountMemory(ctx: AppContext, accounts: number): Promise<void> {
  await sleep(5);
  await evictAllIdle(ctx); // start from no account in Redis
  const users = range(1, Math.min(MEMORY_ACCOUNTS, accounts)).map(userId);
  const before = await usedMemory(ctx);
  const t = Date.now();
  await pool(users, 64, async (u) => {
    await ctx.accounts.load(u);
    // As after a change that was persisted: lasting, and listed by its last change (what eviction reads).
    await ctx.redis.persist(ctx.keys.account(u));
    await ctx.redis.zadd(ctx.keys.activityIndex(u), Date.now() - 1_000, u);
  });
  const loadMs = Date.now() - t;
  const loaded = await usedMemory(ctx);
  await sleep(5);
  const t2 = Date.now();
  const evicted = await evictAllIdle(ctx);
  const evictMs = Date.now() - t2;
  const after = await usedMemory(ctx);
  const active = (loaded - before) / users.length;
  const idle = (after - before) / users.length;
  results.accountMemory = { accounts: users.length, before, loaded, after, active, idle, loadMs, evictMs, evicted };
  log(`memory: ${round(active)} B per active account, ${round(idle)} B per evicted one (${evicted.evicted} evicted)`);
  rows.push([
    `Redis per active account (${users.length.toLocaleString()} loaded)`,
    `+${loaded - before} B used_memory`,
    `${Math.round(active)} B`,
    '-',
  ]);
  rows.push([
    `Redis per idle account after evictIdle`,
    `${evicted.evicted} evicted by ${evicted.calls.length} calls in ${evictMs} ms, ${after - before} B left`,
    `${round(idle)} B`,
    '≈ 0',
  ]);
}

/**
 * Every account present in Redis, loaded by the service's init script (what AccountService.load runs
 * once it has read MySQL; a million MySQL reads would only slow the bench down), lasting and listed in
 * the activity index as an account with a persisted change is.
 */
async function loadAllIntoRedis(ctx: AppContext, accounts: number): Promise<number> {
  const n = Math.min(accounts, num('BENCH_REDIS_ACCOUNTS', accounts));
  const now = new Date();
  const quotaExpiresAt = ctx.accounts.quotaExpiry(now);
  const period = new BusinessCalendar(ctx.config.businessTz).period(now);
  const t = Date.now();
  for (let from = 1; from <= n; from += 10_000) {
    // Each group sent in one tick, which the client's auto-pipelining writes together. The accounts first:
    // a script the server does not have yet is sent again after the commands queued with it.
    const users = Array.from({ length: Math.min(n + 1, from + 10_000) - from }, (_, k) => userId(from + k));
    // init-account-2.lua's layout (Scripts.initAccount): balance, overdraft, quota expiry, load TTL, no
    // further fields; then lasting and in the activity index, as after a persisted change.
    const { redis: r, keys } = ctx;
    await Promise.all(
      users.map((u) =>
        r.initAccountScript(keys.account(u), keys.quota(u, period), '100000000', '0', quotaExpiresAt, 600_000, 0),
      ),
    );
    await Promise.all(
      users.flatMap((u) => [r.persist(keys.account(u)), r.zadd(keys.activityIndex(u), now.getTime(), u)]),
    );
  }
  log(`${n.toLocaleString()} accounts in Redis (${Date.now() - t} ms, used_memory ${await usedMemory(ctx)})`);
  return n;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/** Sweep and expiry with every account in Redis and 100 journal entries / 100 due holds: median of 5. */
async function sweepAndExpiry(ctx: AppContext, accounts: number): Promise<void> {
  const inRedis = await loadAllIntoRedis(ctx, accounts);
  const users = range(1, Math.min(100, accounts)).map(userId);
  const idle = [];
  for (let i = 0; i < 5; i++) idle.push(await timed(() => ctx.persistence.sweep(60_000)));
  await pool(users, 16, (u) =>
    ctx.billing.deduct({ requestId: `sweep-${u}`, userId: u, serviceName: 'passport', count: 1 }),
  );
  await ctx.persistence.drainBuffer();
  await sleep(5);
  const due: number[] = [];
  let reenqueued = 0;
  for (let i = 0; i < 5; i++) {
    due.push(await timed(async () => (reenqueued = await ctx.persistence.sweep(0))));
  }
  const expiry: number[] = [];
  let expired = 0;
  for (let i = 0; i < 5; i++) {
    await pool(users, 16, (u) =>
      ctx.reservations.reserve({
        requestId: `hold-${i}-${u}`,
        userId: u,
        serviceName: 'payment',
        count: 1,
        ttlMs: 1000,
      }),
    );
    await sleep(1100);
    expiry.push(await timed(async () => (expired = await ctx.reservations.expireDue())));
  }
  const idleExpiry = await timed(() => ctx.reservations.expireDue());
  results.sweepExpiry = {
    accountsInRedis: inRedis,
    sweepNothingDueMs: idle,
    sweepMs: due,
    reenqueued,
    expiryMs: expiry,
    expired,
    expiryNothingDueMs: idleExpiry,
  };
  log(
    `sweep ${median(due).toFixed(1)} ms (${reenqueued} re-enqueued), ` +
      `expiry ${median(expiry).toFixed(1)} ms (${expired})`,
  );
  const with1M = `${inRedis.toLocaleString()} accounts in Redis`;
  rows.push([
    `sweep, ${with1M}, 100 due entries (median of 5)`,
    `${reenqueued} re-enqueued; none due: ${median(idle).toFixed(1)} ms`,
    `${median(due).toFixed(1)} ms`,
    '-',
  ]);
  rows.push([
    `expiry, ${with1M}, 100 due holds (median of 5)`,
    `${expired} expired; none due: ${idleExpiry.toFixed(1)} ms`,
    `${median(expiry).toFixed(1)} ms`,
    '-',
  ]);
}

/**
 * Persists every queued persist-changes job with the service's persist (no worker runs in the bench)
 * and removes it, so that journals and jobs leave Redis and what remains is what a request leaves.
 */
async function persistQueued(ctx: AppContext): Promise<number> {
  await ctx.persistence.drainBuffer();
  const queue = ctx.queues.queueOf('persist-changes');
  let n = 0;
  for (;;) {
    const jobs = (await queue.getJobs(['waiting', 'prioritized', 'delayed', 'wait'], 0, 99)).filter(
      (j) => j?.name === 'persist-changes',
    );
    if (jobs.length === 0) return n;
    for (const job of jobs) {
      await ctx.persistence.persist((job.data as { changes: LedgerChange[] }).changes);
      await job.remove();
      n++;
    }
  }
}

/**
 * Redis bytes per remembered request: `deducts` deducts (distinct request ids) over `users` users
 * through BillingService.deduct, their changes persisted and jobs removed, used_memory after minus
 * before, divided by the requests. Re-runnable whatever the idempotency layout.
 */
/**
 * Part of MEMORY STATS: keys, and the main keyspace table (it doubles as the key count passes a power of
 * two, a step that lands on whatever measurement crosses it).
 */
async function keyspaceStats(ctx: AppContext): Promise<{ keys: number; mainTable: number }> {
  const flat = (await ctx.redis.call('MEMORY', 'STATS')) as unknown[];
  const stat = (list: unknown[], name: string) => list[list.indexOf(name) + 1];
  const db0 = (stat(flat, 'db.0') ?? []) as unknown[];
  return { keys: Number(stat(flat, 'keys.count')), mainTable: Number(stat(db0, 'overhead.hashtable.main') ?? 0) };
}

async function idempotencyMemory(ctx: AppContext, deducts: number, users: number, tag = 'idem') {
  await persistQueued(ctx);
  const statsBefore = await keyspaceStats(ctx);
  const before = await usedMemory(ctx);
  const t = Date.now();
  const ids = range(0, deducts - 1);
  await pool(ids, 64, (i) =>
    ctx.billing.deduct({
      requestId: `${tag}-${i}`,
      userId: userId(1 + (i % users)),
      serviceName: 'passport',
      count: 1,
    }),
  );
  const deductMs = Date.now() - t;
  const t2 = Date.now();
  const jobs = await persistQueued(ctx);
  const persistMs = Date.now() - t2;
  const after = await usedMemory(ctx);
  const statsAfter = await keyspaceStats(ctx);
  const mainTableGrowth = statsAfter.mainTable - statsBefore.mainTable;
  return {
    deducts,
    users,
    before,
    after,
    bytesPerRequest: (after - before) / deducts,
    keysAdded: statsAfter.keys - statsBefore.keys,
    mainTableGrowth,
    bytesPerRequestWithoutTableGrowth: (after - before - mainTableGrowth) / deducts,
    deductMs,
    persistJobs: jobs,
    persistMs,
  };
}

async function requestMemory(ctx: AppContext, accounts: number): Promise<void> {
  if (SMALL_DEDUCTS > 0) {
    const r = await idempotencyMemory(ctx, SMALL_DEDUCTS, Math.min(1000, accounts));
    results.idempotencyMemory = r;
    log(
      `idempotency: ${round(r.bytesPerRequest)} B per request (${r.deducts} deducts in ${r.deductMs} ms; ` +
        `${r.keysAdded} keys added, main table +${r.mainTableGrowth} B)`,
    );
    rows.push([
      `Redis per remembered request (${r.deducts.toLocaleString()} deducts, ${r.users} users, persisted)`,
      `+${r.after - r.before} B used_memory, of which main key table +${r.mainTableGrowth} B; ` +
        `${Math.round((r.deducts * 1000) / r.deductMs)} deducts/s`,
      `${round(r.bytesPerRequest)} B (${round(r.bytesPerRequestWithoutTableGrowth)} B without)`,
      '≤ 64 B',
    ]);
    save();
  }
  if (DEDUCTS > 0) await manyDeducts(ctx, DEDUCTS, Math.min(DEDUCT_USERS, accounts));
}

/**
 * Redis bytes per remembered request at DEDUCTS (10,000,000) deducts within one idempotency window.
 * Fast enough for 10M on two cores: each deduct goes through the typed Scripts wrapper the service
 * uses (src/redis/scripts.ts: the same digest, record id, journaled change and deduct-8.lua), many in
 * flight on one connection (ioredis auto-pipelining), without BillingService's persistence buffer.
 * The journal is drained in chunks as the persistence does after its MySQL commit (ack-changes-2.lua),
 * but the changes are NOT written to MySQL: what is measured is the Redis memory of remembered
 * requests and account state, not MySQL. Request ids are all distinct; the run must stay inside one
 * window (floor(now / 24 h)), which is checked and reported (real clock, never faked).
 */
async function manyDeducts(ctx: AppContext, deducts: number, users: number): Promise<void> {
  await persistQueued(ctx);
  const scripts = new Scripts(ctx.redis, ctx.keys, { load: (u, now) => ctx.accounts.load(u, now) }, new Metrics());
  const calendar = new BusinessCalendar(ctx.config.businessTz);
  const service = ctx.catalogue.get('passport');
  const windowMs = ctx.config.redis.idempotencyTtlMs;
  const statsBefore = await keyspaceStats(ctx);
  const before = await usedMemory(ctx);
  const t0 = Date.now();
  const firstWindow = Math.floor(t0 / windowMs);
  const samples: { deducts: number; seconds: number; usedMemory: number; bytesPerRequest: number }[] = [];
  let acked = 0;
  let duplicates = 0;
  const days = new Set<string>();
  for (let from = 0; from < deducts; from += DEDUCT_CHUNK) {
    const to = Math.min(deducts, from + DEDUCT_CHUNK);
    const journaled = new Map<string, string[]>();
    // The business month and day once a chunk (a chunk takes seconds; the run checks it stayed in one
    // day below), which spares the per-call time-zone formatting BillingService does.
    const chunkStart = new Date();
    const period = calendar.period(chunkStart);
    const day = calendar.day(chunkStart);
    const quotaExpiresAt = ctx.accounts.quotaExpiry(chunkStart);
    days.add(day);
    let next = from;
    const worker = async () => {
      while (next < to) {
        const i = next++;
        const user = userId(1 + (i % users));
        const now = new Date();
        const r = await scripts.deduct({
          userId: user,
          period,
          date: day,
          requestId: `many-${i}`,
          service,
          count: 1,
          idempotencyTtlMs: windowMs,
          quotaExpiresAt,
          now,
        });
        if (r.duplicate) duplicates++;
        if (!r.journaled) continue;
        const ids = journaled.get(user);
        if (ids) ids.push(r.journaled.id);
        else journaled.set(user, [r.journaled.id]);
      }
    };
    await Promise.all(Array.from({ length: DEDUCT_CONCURRENCY }, worker));
    // As the persistence acknowledges a job's changes once MySQL has them (here: without MySQL).
    await pool([...journaled], 32, async ([user, ids]) => {
      for (let k = 0; k < ids.length; k += 500) {
        // Not `acked += await ...`: that reads `acked` before the await and loses concurrent additions.
        const removed = await scripts.ackChangesOfUsers(new Map([[user, ids.slice(k, k + 500)]]));
        acked += removed;
      }
    });
    if (to % 1_000_000 === 0 || to === deducts) {
      const used = await usedMemory(ctx);
      const seconds = round((Date.now() - t0) / 1000);
      samples.push({ deducts: to, seconds, usedMemory: used, bytesPerRequest: round((used - before) / to) });
      log(`${to.toLocaleString()} deducts in ${seconds} s: ${round((used - before) / to)} B per request`);
      save({ manyDeducts: { deducts, users, before, samples, running: true } });
    }
  }
  const ms = Date.now() - t0;
  const lastWindow = Math.floor(Date.now() / windowMs);
  // Nothing may be left in the journals: what stays in Redis is remembered requests and account state.
  const journalLeft = (
    await Promise.all(range(1, users).map((n) => ctx.redis.hlen(ctx.keys.pending(userId(n)))))
  ).reduce((a, b) => a + b, 0);
  const after = await usedMemory(ctx);
  const statsAfter = await keyspaceStats(ctx);
  const mainTableGrowth = statsAfter.mainTable - statsBefore.mainTable;
  const r = {
    deducts,
    users,
    concurrency: DEDUCT_CONCURRENCY,
    oneWindow: firstWindow === lastWindow,
    businessDays: [...days],
    duplicates,
    acked,
    journalLeft,
    before,
    after,
    bytesPerRequest: (after - before) / deducts,
    keysAdded: statsAfter.keys - statsBefore.keys,
    mainTableGrowth,
    bytesPerRequestWithoutTableGrowth: (after - before - mainTableGrowth) / deducts,
    ms,
    perSecond: Math.round((deducts * 1000) / ms),
    samples,
  };
  results.manyDeducts = r;
  log(`${deducts} deducts in ${ms} ms: ${round(r.bytesPerRequest)} B per request (one window: ${r.oneWindow})`);
  rows.push([
    `Redis per remembered request (${deducts.toLocaleString()} deducts, ${users.toLocaleString()} users)`,
    `+${after - before} B; ${r.perSecond.toLocaleString()} deducts/s (${(ms / 60_000).toFixed(1)} min), ` +
      `${r.oneWindow ? 'one window' : 'CROSSED A WINDOW'}, journal acked, not persisted`,
    `${round(r.bytesPerRequest)} B (${round(r.bytesPerRequestWithoutTableGrowth)} B without)`,
    '≤ 64 B',
  ]);
}

const TOKEN = 'bench-token';
const children: ChildProcess[] = [];

/** A server of its own (`node --import tsx script`), resolved once it says it is ready. */
function startProcess(script: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env },
    // The API says it is ready on the IPC channel (src/main/processes.ts); the bare server on stdout.
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (/ready/.test(d.toString())) resolve(child);
    });
    child.on('message', (m: { ready?: boolean }) => {
      if (m.ready) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

interface Latency {
  requests: number;
  non2xx: number;
  errors: number;
  /** send slots that passed while every connection was busy (bench/wrk/paced.lua) */
  missed: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * wrk at a fixed `rate` (bench/wrk/paced.lua: one thread, 16 connections), GETting the paths of
 * `pathsFile` in turn from `base`, for `seconds`; driven as bench/run.ts drives it.
 */
function pacedWrk(base: string, pathsFile: string, seconds: number, rate: number): Promise<Latency> {
  const args = ['-t', '1', '-c', '16', '-d', `${seconds}s`, '-s', 'bench/wrk/paced.lua', base, '--'];
  args.push(`token=${TOKEN}`, `rate=${rate}`, `paths=${pathsFile}`);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      const r = JSON.parse(out.trim().split('\n').pop()!) as Latency;
      const ms = (x: number) => round(x, 2);
      resolve({ ...r, p50: ms(r.p50), p90: ms(r.p90), p99: ms(r.p99), max: ms(r.max) });
    });
  });
}

/**
 * Statistics and record reads over HTTP: the API role as its own process (src/main/api.ts, on the
 * bench's Redis and MariaDB) and the bare-route control (bench/bare-server.ts: the same GETs answered
 * with a constant) side by side in this run. Each endpoint in turn at READ_RATE for READ_SECONDS,
 * the control right before it with the same paths; users on a fixed pseudo-random walk over all
 * accounts (Knuth's multiplicative hash), the same every run.
 */
async function reads(dir: string, env: Record<string, string>, businessTz: string, accounts: number) {
  const [apiPort, grpcPort, barePort] = [await freePort(), await freePort(), await freePort()];
  const api = await startProcess('src/main/api.ts', {
    ...env,
    PORT: String(apiPort),
    GRPC_PORT: String(grpcPort),
    HOST: '127.0.0.1',
    MIGRATE_ON_START: 'false',
  });
  const bare = await startProcess('bench/bare-server.ts', { PORT: String(barePort), GATEWAY_TOKEN: TOKEN });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const bareUrl = `http://127.0.0.1:${barePort}`;
  try {
    const user = (i: number) => userId(1 + (((i * 2654435761) % 2 ** 32) % accounts));
    const calendar = new BusinessCalendar(businessTz);
    const today = calendar.day(new Date());
    const from = calendar.addDays(today, -29);
    const endpoints: Record<string, (u: string) => string> = {
      'records (page 1 of 20, with total)': (u) => `/api/v1/billing/records?user_id=${u}&page=1&page_size=20`,
      'records (one service)': (u) => `/api/v1/billing/records?user_id=${u}&service_name=payment&page_size=20`,
      'stats/today': (u) => `/api/v1/billing/stats/today?user_id=${u}`,
      'stats/month': (u) => `/api/v1/billing/stats/month?user_id=${u}`,
      'stats/summary': (u) => `/api/v1/billing/stats/summary?user_id=${u}`,
      'stats/daily (30 days)': (u) => `/api/v1/billing/stats/daily?user_id=${u}&from=${from}&to=${today}`,
    };
    // Enough distinct users per endpoint that no run asks for one twice.
    const perFile = READ_SECONDS * READ_RATE + 100;
    let files = 0;
    const paths = (path: (u: string) => string) => {
      const file = join(dir, `paths-${files}.txt`);
      const offset = perFile * files++;
      writeFileSync(file, Array.from({ length: perFile }, (_, i) => path(user(offset + i))).join('\n') + '\n');
      return file;
    };
    const out: Record<string, { control: Latency; api: Latency }> = {};
    for (const [name, path] of Object.entries(endpoints)) {
      // Warm-up of both servers on this route (JIT, pools), 2 s on users of its own.
      const warm = paths(path);
      await pacedWrk(bareUrl, warm, 2, READ_RATE);
      await pacedWrk(apiUrl, warm, 2, READ_RATE);
      const file = paths(path);
      const control = await pacedWrk(bareUrl, file, READ_SECONDS, READ_RATE);
      const r = await pacedWrk(apiUrl, file, READ_SECONDS, READ_RATE);
      out[name] = { control, api: r };
      log(`${name}: p50 ${r.p50} ms, p99 ${r.p99} ms (control p99 ${control.p99} ms), ${r.non2xx} non-2xx`);
      rows.push([
        `GET ${name}, HTTP, ${READ_RATE}/s × ${READ_SECONDS} s`,
        `p50 ${r.p50} ms, max ${r.max} ms, ${r.non2xx + r.errors} errors, ${r.missed} missed slots; ` +
          `control p50 ${control.p50} ms`,
        `p99 ${r.p99} ms (control ${control.p99})`,
        'p99 ≤ 20 ms',
      ]);
    }
    results.reads = { rate: READ_RATE, seconds: READ_SECONDS, endpoints: out };
  } finally {
    await Promise.all([stopProcess(api), stopProcess(bare)]);
  }
}

let resultsFile = '';

/** Writes what is measured so far (after each step too: a run stopped midway keeps its figures). */
function save(extra: Record<string, unknown> = {}): void {
  mkdirSync('bench/results', { recursive: true });
  resultsFile ||= `bench/results/scale-${String(results.at).replace(/[:.]/g, '-')}.json`;
  const table = rows.map(([what, measured, figure, target]) => ({ what, measured, figure, target }));
  writeFileSync(resultsFile, JSON.stringify({ ...results, ...extra, rows: table }, null, 2));
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  ensurePackages(log);
  const dir = mkdtempSync(join(tmpdir(), 'billing-bench-scale-'));
  log(`servers in ${dir}`);
  const [redisServer, mariadb] = await Promise.all([
    startRedis({ dir: join(dir, 'redis'), aof: false }),
    startMariaDb({ dir: join(dir, 'mariadb'), database: 'bench', bufferPool: BUFFER_POOL, fast: true }),
  ]);
  let ctx: AppContext | null = null;
  const conns = await Promise.all([1, 2].map(() => mysql.createConnection({ uri: mariadb.url, timezone: 'Z' })));
  const conn = conns[0];
  try {
    const migrateDb = createDatabase(mariadb.url, 2);
    await migrateLatest(migrateDb);
    await migrateDb.destroy();
    // Bulk loading: a larger redo log (fewer checkpoints; dynamic since MariaDB 10.9) and no unique
    // checks deferred to the change buffer. Throw-away server: durability is not wanted here.
    const root = await mysql.createConnection({ socketPath: join(dir, 'mariadb', 'mysqld.sock'), user: 'root' });
    await root.query('SET GLOBAL innodb_log_file_size = 2147483648').catch((e: Error) => log(`redo log: ${e.message}`));
    await root.end();
    for (const c of conns) await c.query('SET SESSION unique_checks = 0, foreign_key_checks = 0');

    const base = new Date();
    log(`generating ${ACCOUNTS.toLocaleString()} accounts × ${ENTRIES} ledger entries and records...`);
    const gen = await generate(conns, base);
    await conn.query('SET SESSION unique_checks = 1, foreign_key_checks = 1');
    await conn.query('ANALYZE TABLE accounts, ledger_entries, consumption_records, usage_daily');
    await conns[1].end();
    // A bulk load leaves InnoDB flushing and purging for minutes, which a service that gathered its
    // rows over months does not have: up to BENCH_SETTLE_SECONDS for it to settle before measuring.
    const tSettle = Date.now();
    const dirty = async () =>
      Number(
        (
          (await conn.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")) as unknown as [
            { Value: string }[],
          ]
        )[0][0].Value,
      );
    while ((await dirty()) > 1000 && Date.now() - tSettle < num('BENCH_SETTLE_SECONDS', 120) * 1000) await sleep(1000);
    results.settle = { seconds: round((Date.now() - tSettle) / 1000), dirtyPagesLeft: await dirty() };
    log(`InnoDB settled for ${JSON.stringify(results.settle)}`);
    results.generated = { ...gen, entriesPerAccount: ENTRIES, requestedAccounts: ACCOUNTS };
    log(
      `generated in ${gen.seconds} s: ${gen.accounts} accounts, ${gen.ledgerEntries} entries, ` +
        `${gen.dailyRows} daily rows`,
    );
    rows.push([
      'generation (accounts, ledger, records, usage_daily)',
      `${gen.accounts.toLocaleString()} acc, ${gen.ledgerEntries.toLocaleString()} entries+records`,
      `${gen.seconds} s`,
      '≤ 900 s',
    ]);
    const accounts = gen.accounts;

    const env = {
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      REDIS_URL: redisServer.url,
      DATABASE_URL: mariadb.url,
      REDIS_KEY_PREFIX: 'bench',
      QUEUE_PREFIX: '{bench}',
      DATABASE_POOL_MAX: '20',
      GATEWAY_TOKEN: TOKEN,
      ADMIN_TOKEN: 'bench-admin',
    };
    const config = loadConfig(env);
    ctx = createContext(config, { logger: createLogger('warn') });

    // The machine may be shared: its load average (1 min) at each step's start and end goes with the figures.
    const steps: Record<string, { seconds: number; loadavg: [number, number] }> = {};
    const only = process.env.BENCH_STEPS?.split(',').map((x) => x.trim());
    const step = async (name: string, fn: () => Promise<void>) => {
      if (only && !only.includes(name)) return;
      const [t, before] = [Date.now(), round(loadavg()[0], 2)];
      await fn();
      steps[name] = { seconds: round((Date.now() - t) / 1000), loadavg: [before, round(loadavg()[0], 2)] };
      save();
    };
    results.steps = steps;
    const c = ctx;
    await step('reconciliation', () => reconciliationRuns(c, conn, accounts));
    await step('full audit', () => fullAudit(c, accounts));
    await step('account memory', () => accountMemory(c, accounts));
    await step('sweep and expiry', () => sweepAndExpiry(c, accounts));
    await step('reads', () => reads(dir, env, c.config.businessTz, accounts));
    await step('request memory', () => requestMemory(c, accounts));
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await ctx?.close().catch(() => undefined);
    await Promise.all(conns.map((c) => c.end().catch(() => undefined)));
    await Promise.all([redisServer.stop(), mariadb.stop()]);
    if (process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  }

  const width = [62, 66, 18, 12];
  const line = (cols: string[]) => cols.map((c, i) => c.padEnd(width[i])).join(' | ');
  console.log('\n' + line(['measure', 'measured', 'figure', 'target']));
  console.log(width.map((w) => '-'.repeat(w)).join('-|-'));
  for (const r of rows) console.log(line(r));
  save();
  console.log(`\nwritten to ${resultsFile}`);
}

await main();
