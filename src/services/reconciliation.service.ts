import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Scripts } from '../redis/scripts.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { AccountRepository } from '../repositories/account.repository.js';
import type { RechargeRepository } from '../repositories/recharge.repository.js';
import type { ReconciliationRepository, RunCounts } from '../repositories/reconciliation.repository.js';
import type { CatalogueService } from './catalogue.service.js';
import { grantsField, type AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { RechargeService } from './recharge.service.js';
import type { Metrics } from '../lib/metrics.js';

export interface ReconcileOptions {
  /** journal entries older than this are re-enqueued */
  sweepAfterMs: number;
  /** recharge orders pending longer than this are asked of the payment service */
  pendingCheckAfterMs: number;
  /** how often runs are scheduled, and within what time every account must have been audited */
  everyMs: number;
  auditPeriodMs: number;
}

export type Progress = (phase: string, done: number) => void;

export interface RunSummary extends RunCounts {
  id: number;
  status: 'ok' | 'failed';
  durationMs: number;
}

/** Changes stamped this long before the previous run began are looked at again (late commits). */
const CHANGE_MARGIN_MS = 2 * 60_000;
/** Accounts whose Redis state is compared with MySQL at once. */
const REDIS_CHECKS_AT_ONCE = 16;
/** Accounts handled per MySQL round trip. */
const PAGE = 500;

export interface RunOptions {
  /** every account, its whole ledger summed (on demand), instead of what changed plus an audit slice */
  full?: boolean;
  /** the run recorded by createRun when it was asked for (else a new one is recorded) */
  runId?: number;
}

/** What ReconciliationService is built from (named, so that adding one is no positional shuffle). */
export interface ReconciliationServiceDeps {
  scripts: Scripts;
  redis: RedisClient;
  keys: RedisKeys;
  runs: ReconciliationRepository;
  accountsRepo: AccountRepository;
  orders: RechargeRepository;
  catalogue: CatalogueService;
  accounts: AccountService;
  persistence: PersistenceService;
  recharges: RechargeService;
  calendar: BusinessCalendar;
  clock: Clock;
  opts: ReconcileOptions;
  logger: Logger;
  metrics: Metrics;
}

/**
 * Keeps Redis, MySQL and the payment service in agreement, and records what it found and did. A run
 * costs what changed since the last one, not what exists (SPEC 16):
 *  1. journal entries never persisted are re-enqueued;
 *  2. the accounts changed since the previous run (accounts.changed_at, stamped by every persist) are
 *     checked against only the ledger entries added since their last verified one (running
 *     balances), plus a rolling audit slice of all accounts (whole ledger summed) sized so that every
 *     account is audited within `auditPeriodMs`; a MySQL balance off its ledger is set to the ledger;
 *  3. the same accounts in Redis are compared with MySQL (balance, this month's free quota used) and
 *     set to MySQL's values where they differ, but only while the account is quiescent (see
 *     repair-account-5.lua), so a change on its way is never mistaken for drift;
 *  4. recharge orders pending too long are asked of the payment service (a lost callback).
 * A full audit (`full`) does 2 and 3 for every account, with progress in its run row.
 */
export class ReconciliationService {
  private readonly scripts: Scripts;
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly runs: ReconciliationRepository;
  private readonly accountsRepo: AccountRepository;
  private readonly orders: RechargeRepository;
  private readonly catalogue: CatalogueService;
  private readonly accounts: AccountService;
  private readonly persistence: PersistenceService;
  private readonly recharges: RechargeService;
  private readonly calendar: BusinessCalendar;
  private readonly clock: Clock;
  private readonly opts: ReconcileOptions;
  private readonly logger: Logger;
  private readonly metrics: Metrics;

  constructor(deps: ReconciliationServiceDeps) {
    this.scripts = deps.scripts;
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.runs = deps.runs;
    this.accountsRepo = deps.accountsRepo;
    this.orders = deps.orders;
    this.catalogue = deps.catalogue;
    this.accounts = deps.accounts;
    this.persistence = deps.persistence;
    this.recharges = deps.recharges;
    this.calendar = deps.calendar;
    this.clock = deps.clock;
    this.opts = deps.opts;
    this.logger = deps.logger;
    this.metrics = deps.metrics;
  }

  /** Records a run about to be queued, so that whoever asked for it can be answered its id at once. */
  async createRun(trigger: 'schedule' | 'manual', full = false): Promise<number> {
    return this.runs.startRun(full ? `${trigger}-full` : trigger, this.clock.now());
  }

  /** A run recorded by createRun that will not run after all (a duplicate request's). */
  async dropRun(runId: number): Promise<void> {
    await this.runs.deleteRun(runId);
  }

  /** Runs now, as the run `options.runId` (from createRun) or as a new one. */
  async run(
    trigger: 'schedule' | 'manual',
    progress: Progress = () => undefined,
    options: RunOptions = {},
  ): Promise<RunSummary> {
    const started = this.clock.now();
    const t0 = Date.now();
    const id = options.runId ?? (await this.runs.startRun(options.full ? `${trigger}-full` : trigger, started));
    const c: RunCounts = {
      users_checked: 0,
      users_in_flight: 0,
      mismatches: 0,
      repairs: 0,
      reenqueued: 0,
      orders_checked: 0,
      orders_completed: 0,
      orders_closed: 0,
    };
    try {
      c.reenqueued = await this.persistence.sweep(this.opts.sweepAfterMs);
      progress('journal', c.reenqueued);
      const mysqlNow = await this.runs.now();
      if (options.full) {
        await this.fullAudit(id, c, progress);
      } else {
        await this.changedAccounts(id, c, progress);
        await this.auditSlice(id, c);
      }
      await this.runs.setState('changes_since', new Date(mysqlNow.getTime() - CHANGE_MARGIN_MS).toISOString());
      await this.pendingOrders(id, c, progress);
      const summary: RunSummary = { id, status: 'ok', durationMs: Date.now() - t0, ...c };
      await this.runs.finishRun(id, 'ok', c, this.clock.now(), summary.durationMs);
      this.logger.info(summary, 'reconciliation run finished');
      return summary;
    } catch (err) {
      await this.runs.finishRun(id, 'failed', c, this.clock.now(), Date.now() - t0, (err as Error).message);
      throw err;
    }
  }

  /** Accounts persisted since the previous run (and a margin for late commits). */
  private async changedAccounts(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    const mark = await this.runs.state('changes_since');
    const since = mark ? new Date(mark) : new Date(0);
    let after: { at: Date; userId: string } | null = null;
    for (;;) {
      const page = await this.runs.changedSince(since, after, PAGE);
      if (page.length === 0) break;
      const last = page[page.length - 1];
      after = { at: new Date(last.changed_at), userId: last.user_id };
      await this.checkAccounts(
        runId,
        c,
        page.map((p) => p.user_id),
        'since-audit',
      );
      progress('accounts', c.users_checked);
      if (page.length < PAGE) break;
    }
  }

  /** The next slice of all accounts, whole ledger summed, so that every account is audited in time. */
  private async auditSlice(runId: number, c: RunCounts): Promise<void> {
    const total = await this.runs.estimatedAccounts();
    const size = Math.min(10_000, Math.max(1, Math.ceil((total * this.opts.everyMs) / this.opts.auditPeriodMs)));
    const cursor = (await this.runs.state('audit_cursor')) ?? '';
    const users = await this.runs.accountsAfter(cursor, size);
    await this.checkAccounts(runId, c, users, 'whole-ledger');
    await this.runs.setState('audit_cursor', users.length < size ? '' : users[users.length - 1]);
  }

  private async fullAudit(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    let after = '';
    for (;;) {
      const users = await this.runs.accountsAfter(after, PAGE);
      if (users.length === 0) break;
      after = users[users.length - 1];
      await this.checkAccounts(runId, c, users, 'whole-ledger');
      await this.runs.progress(runId, c);
      progress('accounts', c.users_checked);
    }
  }

  /** MySQL against its own ledger first, then Redis against a MySQL that is right. */
  private async checkAccounts(
    runId: number,
    c: RunCounts,
    userIds: string[],
    ledger: 'since-audit' | 'whole-ledger',
  ): Promise<void> {
    const offLedger =
      ledger === 'since-audit'
        ? await this.sinceAudit(userIds)
        : (await this.runs.ledgerMismatches(userIds)).map((m) => m.user_id);
    for (const userId of offLedger) {
      const fixed = await this.runs.repairBalanceFromLedger(userId);
      if (!fixed) continue; // a persist was committing; they agree now
      c.mismatches++;
      c.repairs++;
      this.metrics.reconciliationMismatches.inc({ kind: 'ledger_vs_balance' });
      await this.runs.addRepair(runId, {
        user_id: userId,
        kind: 'ledger_vs_balance',
        subject: 'mysql_balance',
        before_value: fixed.before,
        after_value: fixed.after,
        repaired: true,
        note: 'MySQL balance set to the ledger sum',
      });
      this.logger.warn({ userId, ...fixed }, 'reconciliation repaired a MySQL balance from its ledger');
    }
    const period = this.calendar.period(this.clock.now());
    // A few accounts at a time: each is a snapshot, two MySQL reads and a repair script, round trips
    // that overlap well (each account's check is atomic on its own; see repair-account-5.lua).
    let next = 0;
    const lane = async () => {
      while (next < userIds.length) await this.redisAgainstMysql(runId, c, userIds[next++], period);
    };
    await Promise.all(Array.from({ length: Math.min(REDIS_CHECKS_AT_ONCE, userIds.length) }, lane));
  }

  /** Incremental ledger check; marks what agrees as verified. Returns the users off their ledger. */
  private async sinceAudit(userIds: string[]): Promise<string[]> {
    const checks = await this.runs.ledgerSinceAudit(userIds);
    await this.runs.markAudited(
      checks
        .filter((k) => k.ok && k.lastId !== null)
        .map((k) => ({ userId: k.userId, lastId: k.lastId!, balance: k.balance })),
    );
    return checks.filter((k) => !k.ok).map((k) => k.userId);
  }

  private async redisAgainstMysql(runId: number, c: RunCounts, userId: string, period: string): Promise<void> {
    const now = this.clock.now();
    c.users_checked++;
    const snapshot = await this.scripts.accountSnapshot(userId);
    if (!snapshot.exists) return; // not in Redis: its next call loads it from MySQL
    if (snapshot.pending > 0 || snapshot.openHolds > 0) {
      c.users_in_flight++;
      return;
    }
    const [row, usage, grants] = await Promise.all([
      this.accountsRepo.findWithLedgerBalance(userId),
      this.accountsRepo.quotaUsage(userId, period),
      this.accountsRepo.liveGrants(userId),
    ]);
    if (row && BigInt(row.balance) !== BigInt(row.ledger_balance)) {
      // MySQL itself is off its ledger (another run may be repairing it): never copy that into Redis.
      c.users_in_flight++;
      return;
    }
    const used = new Map(usage.map((u) => [u.service_name, u.used]));
    const repairs = await this.scripts.repairAccount({
      userId,
      period,
      version: snapshot.version,
      balance: row?.balance ?? '0',
      grants: grantsField(grants),
      quotaExpiresAt: this.accounts.quotaExpiry(now),
      used: this.catalogue.services.map((s) => [s.name, used.get(s.name) ?? '0']),
    });
    if (!repairs) {
      c.users_in_flight++;
      return;
    }
    for (const { field, before, after } of repairs) {
      c.mismatches++;
      c.repairs++;
      this.metrics.reconciliationMismatches.inc({ kind: 'redis_vs_mysql' });
      await this.runs.addRepair(runId, {
        user_id: userId,
        kind: 'redis_vs_mysql',
        subject: field,
        before_value: before,
        after_value: after,
        repaired: true,
        note: 'Redis set to MySQL',
      });
      this.logger.warn({ userId, field, redis: before, mysql: after }, 'reconciliation repaired Redis drift');
    }
  }

  private async pendingOrders(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    const now = this.clock.now();
    const cutoff = new Date(now.getTime() - this.opts.pendingCheckAfterMs);
    for (const order of await this.orders.pendingDue(cutoff, now, 1000)) {
      c.orders_checked++;
      // Asked now: not again before the next period, whatever the answer, so the queue moves on.
      await this.orders.deferCheck(order.order_id, new Date(now.getTime() + this.opts.pendingCheckAfterMs));
      let status: string;
      try {
        status = await this.recharges.syncWithPaymentService(order);
      } catch (err) {
        this.logger.warn(
          { orderId: order.order_id, err: (err as Error).message },
          'GetPayment failed; next run will ask again',
        );
        continue;
      }
      if (status === 'SUCCESS' || status === 'CLOSED' || status === 'FAILED' || status === 'MISMATCH') {
        c.mismatches++;
        this.metrics.reconciliationMismatches.inc({ kind: 'pending_order' });
        if (status === 'SUCCESS') c.orders_completed++;
        if (status === 'CLOSED' || status === 'FAILED') c.orders_closed++;
        c.repairs += status === 'MISMATCH' ? 0 : 1;
        await this.runs.addRepair(runId, {
          user_id: order.user_id,
          kind: 'pending_order',
          subject: order.order_id,
          before_value: 'pending',
          after_value: {
            SUCCESS: 'paid (credit queued)',
            MISMATCH: 'flagged for review',
            FAILED: 'failed',
            CLOSED: 'closed',
          }[status],
          repaired: status !== 'MISMATCH',
          note: `payment service says ${status}`,
        });
      }
      progress('orders', c.orders_checked);
    }
  }
}
