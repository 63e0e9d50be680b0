/*
 * `npm run bench:scale` (issue #18, SPEC 16): maintenance and reads at a million accounts, measured
 * with the service's own code (createContext, the services called in-process; no HTTP).
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
 * (6) Redis bytes per remembered request, (7) statistics and record reads at a fixed rate.
 * A table on stdout, JSON under bench/results/scale-*.json.
 *
 * Env: BENCH_ACCOUNTS (1000000), BENCH_ENTRIES_PER_ACCOUNT (20), BENCH_GENERATE_SECONDS (900),
 * BENCH_AUDIT_SECONDS (300), BENCH_MEMORY_ACCOUNTS (100000), BENCH_REDIS_ACCOUNTS (all accounts),
 * BENCH_DEDUCTS (200000), BENCH_READ_SECONDS (20), BENCH_READ_RATE (100), BENCH_BUFFER_POOL (4G),
 * BENCH_SETTLE_SECONDS (120), BENCH_KEEP=1 keeps the servers' folder.
 */
import { ReconciliationRepository } from '../src/repositories/reconciliation.repository.js';
import { BusinessCalendar } from '../src/lib/clock.js';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { startRedis, startMariaDb, ensurePackages } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { loadConfig } from '../src/config/config.js';
import { createContext, type AppContext } from '../src/context.js';
import { createLogger } from '../src/lib/logger.js';
import type { LedgerChange } from '../src/lib/ledger-change.js';

const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const ACCOUNTS = num('BENCH_ACCOUNTS', 1_000_000);
const ENTRIES = num('BENCH_ENTRIES_PER_ACCOUNT', 20);
const GENERATE_SECONDS = num('BENCH_GENERATE_SECONDS', 900);
const AUDIT_SECONDS = num('BENCH_AUDIT_SECONDS', 300);
const MEMORY_ACCOUNTS = num('BENCH_MEMORY_ACCOUNTS', 100_000);
const DEDUCTS = num('BENCH_DEDUCTS', 200_000);
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
 * once it has read MySQL; a million MySQL reads would only slow the bench down).
 */
async function loadAllIntoRedis(ctx: AppContext, accounts: number): Promise<number> {
  const n = Math.min(accounts, num('BENCH_REDIS_ACCOUNTS', accounts));
  const now = new Date();
  const quotaExpiresAt = ctx.accounts.quotaExpiry(now);
  const period = new BusinessCalendar(ctx.config.businessTz).period(now);
  const t = Date.now();
  for (let from = 1; from <= n; from += 10_000) {
    const p = ctx.redis.pipeline();
    for (let i = from; i < Math.min(n + 1, from + 10_000); i++) {
      const u = userId(i);
      p.initAccountScript(
        ctx.keys.account(u),
        ctx.keys.quota(u, period),
        ctx.keys.activityIndex(u),
        '100000000',
        '0',
        quotaExpiresAt,
        0,
        u,
        now.getTime(),
      );
    }
    await p.exec();
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
  const r = await idempotencyMemory(ctx, DEDUCTS, Math.min(1000, accounts));
  results.idempotencyMemory = r;
  log(
    `idempotency: ${round(r.bytesPerRequest)} B per request (${r.deducts} deducts in ${r.deductMs} ms; ` +
      `${r.keysAdded} keys added, main table +${r.mainTableGrowth} B)`,
  );
  rows.push([
    `Redis per remembered request (${r.deducts.toLocaleString()} deducts, ${r.users} users)`,
    `+${r.after - r.before} B used_memory, of which main key table +${r.mainTableGrowth} B; ` +
      `${Math.round((r.deducts * 1000) / r.deductMs)} deducts/s`,
    `${round(r.bytesPerRequest)} B (${round(r.bytesPerRequestWithoutTableGrowth)} B without)`,
    '≤ 64 B',
  ]);
}

interface Latency {
  calls: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Calls `call` at a fixed rate for `seconds` (open loop: latency counts from each call's scheduled
 * start, so a slow answer does not hide the calls queued behind it).
 */
async function paced(seconds: number, rate: number, call: (i: number) => Promise<unknown>): Promise<Latency> {
  const total = seconds * rate;
  const lat: number[] = [];
  let errors = 0;
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const at = t0 + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 0) await sleep(wait);
    inflight.push(
      call(i).then(
        () => void lat.push(performance.now() - at),
        () => void (errors++, lat.push(performance.now() - at)),
      ),
    );
  }
  await Promise.all(inflight);
  lat.sort((a, b) => a - b);
  const q = (p: number) => round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))], 2);
  return { calls: total, errors, p50: q(0.5), p99: q(0.99), max: round(lat[lat.length - 1], 2) };
}

async function reads(ctx: AppContext, accounts: number): Promise<void> {
  // A fixed pseudo-random walk over all accounts (Knuth's multiplicative hash), the same every run.
  const user = (i: number) => userId(1 + (((i * 2654435761) % 2 ** 32) % accounts));
  const today = new BusinessCalendar(ctx.config.businessTz).day(new Date());
  const from = new BusinessCalendar(ctx.config.businessTz).addDays(today, -29);
  const calls: Record<string, (i: number) => Promise<unknown>> = {
    'control: SELECT 1 through the same pool': () => ctx.db.raw('SELECT 1'),
    'records (page 1 of 20, with total)': (i) => ctx.usage.records({ userId: user(i), page: 1, pageSize: 20 }),
    'records (one service)': (i) =>
      ctx.usage.records({ userId: user(i), serviceName: 'payment', page: 1, pageSize: 20 }),
    'stats today': (i) => ctx.usage.today(user(i)),
    'stats month': (i) => ctx.usage.month(user(i)),
    'stats summary': (i) => ctx.usage.summary(user(i)),
    'stats daily (30 days)': (i) => ctx.usage.daily(user(i), undefined, from, today),
  };
  const out: Record<string, Latency> = {};
  for (const [name, call] of Object.entries(calls)) {
    const r = await paced(READ_SECONDS, READ_RATE, call);
    out[name] = r;
    log(`${name}: p50 ${r.p50} ms, p99 ${r.p99} ms, ${r.errors} errors`);
    rows.push([
      `${name}, in-process, ${READ_RATE}/s × ${READ_SECONDS} s`,
      `p50 ${r.p50} ms, max ${r.max} ms, ${r.errors} errors`,
      `p99 ${r.p99} ms`,
      name.startsWith('control') ? '(floor)' : 'p99 ≤ 20 ms',
    ]);
  }
  results.reads = out;
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
    };
    const config = loadConfig(env);
    ctx = createContext(config, { logger: createLogger('warn') });

    // The machine may be shared: its load average (1 min) at each step's start and end goes with the figures.
    const steps: Record<string, { seconds: number; loadavg: [number, number] }> = {};
    const step = async (name: string, fn: () => Promise<void>) => {
      const [t, before] = [Date.now(), round(loadavg()[0], 2)];
      await fn();
      steps[name] = { seconds: round((Date.now() - t) / 1000), loadavg: [before, round(loadavg()[0], 2)] };
    };
    results.steps = steps;
    const c = ctx;
    await step('reconciliation', () => reconciliationRuns(c, conn, accounts));
    await step('full audit', () => fullAudit(c, accounts));
    await step('account memory', () => accountMemory(c, accounts));
    await step('sweep and expiry', () => sweepAndExpiry(c, accounts));
    await step('request memory', () => requestMemory(c, accounts));
    await step('reads', () => reads(c, accounts));
  } finally {
    await ctx?.close().catch(() => undefined);
    await Promise.all(conns.map((c) => c.end().catch(() => undefined)));
    await Promise.all([redisServer.stop(), mariadb.stop()]);
    if (process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  }

  results.rows = rows.map(([what, measured, figure, target]) => ({ what, measured, figure, target }));
  const width = [62, 66, 18, 12];
  const line = (cols: string[]) => cols.map((c, i) => c.padEnd(width[i])).join(' | ');
  console.log('\n' + line(['measure', 'measured', 'figure', 'target']));
  console.log(width.map((w) => '-'.repeat(w)).join('-|-'));
  for (const r of rows) console.log(line(r));
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/scale-${String(results.at).replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify(results, null, 2));
  console.log(`\nwritten to ${file}`);
}

await main();
