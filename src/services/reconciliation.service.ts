import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import { scanKeys } from '../redis/scan.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { AccountRepository } from '../repositories/account.repository.js';
import type { RechargeRepository } from '../repositories/recharge.repository.js';
import type { ReconciliationRepository, RunCounts } from '../repositories/reconciliation.repository.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { RechargeService } from './recharge.service.js';
import type { Metrics } from '../lib/metrics.js';

export interface ReconcileOptions {
  /** journal entries older than this are re-enqueued */
  sweepAfterMs: number;
  /** recharge orders pending longer than this are asked of the payment service */
  pendingCheckAfterMs: number;
}

export type Progress = (phase: string, done: number) => void;

export interface RunSummary extends RunCounts {
  id: number;
  status: 'ok' | 'failed';
  durationMs: number;
}

/**
 * Keeps Redis, MySQL and the payment service in agreement, and records what it found and did:
 *  1. journal entries never persisted are re-enqueued;
 *  2. every MySQL balance is compared with the sum of its ledger and set to it where they differ;
 *  3. every account in Redis is compared with MySQL (balance, this month's free quota used) and set to
 *     MySQL's values where they differ, but only while the account is quiescent (see
 *     repair-account-4.lua), so a change on its way is never mistaken for drift;
 *  4. recharge orders pending too long are asked of the payment service (a lost callback).
 */
export class ReconciliationService {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly runs: ReconciliationRepository,
    private readonly accountsRepo: AccountRepository,
    private readonly orders: RechargeRepository,
    private readonly catalogue: CatalogueService,
    private readonly accounts: AccountService,
    private readonly persistence: PersistenceService,
    private readonly recharges: RechargeService,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    private readonly opts: ReconcileOptions,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Records a run about to be queued, so that whoever asked for it can be answered its id at once. */
  async createRun(trigger: 'schedule' | 'manual'): Promise<number> {
    return this.runs.startRun(trigger, this.clock.now());
  }

  /** Runs now, as the run `runId` (from createRun) or as a new one. */
  async run(trigger: 'schedule' | 'manual', progress: Progress = () => undefined, runId?: number): Promise<RunSummary> {
    const started = this.clock.now();
    const t0 = Date.now();
    const id = runId ?? (await this.runs.startRun(trigger, started));
    const c: RunCounts = { users_checked: 0, users_in_flight: 0, mismatches: 0, repairs: 0, reenqueued: 0, orders_checked: 0, orders_completed: 0, orders_closed: 0 };
    try {
      c.reenqueued = await this.persistence.sweep(this.opts.sweepAfterMs);
      progress('journal', c.reenqueued);
      // MySQL against its own ledger first: Redis is then compared with a MySQL that is right.
      await this.ledgerAgainstBalances(id, c, progress);
      await this.redisAgainstMysql(id, c, progress);
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

  private async redisAgainstMysql(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    const now = this.clock.now();
    const period = this.calendar.period(now);
    const services = this.catalogue.services.map((s) => s.name);
    for await (const keys of scanKeys(this.redis, this.keys.accountPattern())) {
      for (const key of keys) {
        const userId = this.keys.userOf(key);
        if (!userId) continue;
        c.users_checked++;
        const pending = this.keys.pending(userId);
        const holds = this.keys.holds(userId);
        const [, version, , journal, open] = await this.redis.accountSnapshotScript(key, pending, holds);
        if (journal !== '0' || open !== '0') {
          c.users_in_flight++;
          continue;
        }
        const [row, usage] = await Promise.all([this.accountsRepo.findWithLedgerSum(userId), this.accountsRepo.quotaUsage(userId, period)]);
        if (row && BigInt(row.balance) !== BigInt(row.ledger_sum)) {
          // MySQL itself is off its ledger (another run may be repairing it): never copy that into Redis.
          c.users_in_flight++;
          continue;
        }
        const used = new Map(usage.map((u) => [u.service_name, u.used]));
        const pairs = services.flatMap((s) => [s, used.get(s) ?? '0']);
        const r = await this.redis.repairAccountScript(key, this.keys.quota(userId, period), pending, holds, version, row?.balance ?? '0', this.accounts.quotaExpiry(now), ...pairs);
        if (r[0] === 'changed') {
          c.users_in_flight++;
          continue;
        }
        for (let i = 1; i < r.length; i += 3) {
          c.mismatches++;
          c.repairs++;
          this.metrics.reconciliationMismatches.inc({ kind: 'redis_vs_mysql' });
          await this.runs.addRepair(runId, { user_id: userId, kind: 'redis_vs_mysql', subject: r[i], before_value: r[i + 1], after_value: r[i + 2], repaired: true, note: 'Redis set to MySQL' });
          this.logger.warn({ userId, field: r[i], redis: r[i + 1], mysql: r[i + 2] }, 'reconciliation repaired Redis drift');
        }
        if (c.users_checked % 500 === 0) progress('accounts', c.users_checked);
      }
    }
    progress('accounts', c.users_checked);
  }

  private async ledgerAgainstBalances(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    let after = '';
    let seen = 0;
    for (;;) {
      const { page, mismatches } = await this.runs.ledgerMismatches(after, 1000);
      if (page.length === 0) break;
      after = page[page.length - 1];
      seen += page.length;
      for (const m of mismatches) {
        const fixed = await this.runs.repairBalanceFromLedger(m.user_id);
        if (!fixed) continue; // a persist was committing; they agree now
        c.mismatches++;
        c.repairs++;
        this.metrics.reconciliationMismatches.inc({ kind: 'ledger_vs_balance' });
        await this.runs.addRepair(runId, { user_id: m.user_id, kind: 'ledger_vs_balance', subject: 'mysql_balance', before_value: fixed.before, after_value: fixed.after, repaired: true, note: 'MySQL balance set to the ledger sum' });
        this.logger.warn({ userId: m.user_id, ...fixed }, 'reconciliation repaired a MySQL balance from its ledger');
      }
      progress('ledger', seen);
    }
  }

  private async pendingOrders(runId: number, c: RunCounts, progress: Progress): Promise<void> {
    const cutoff = new Date(this.clock.now().getTime() - this.opts.pendingCheckAfterMs);
    for (const order of await this.orders.pendingBefore(cutoff, 1000)) {
      c.orders_checked++;
      let status: string;
      try {
        status = await this.recharges.syncWithPaymentService(order);
      } catch (err) {
        this.logger.warn({ orderId: order.order_id, err: (err as Error).message }, 'GetPayment failed; next run will ask again');
        continue;
      }
      if (status === 'SUCCESS' || status === 'CLOSED' || status === 'FAILED' || status === 'MISMATCH') {
        c.mismatches++;
        this.metrics.reconciliationMismatches.inc({ kind: 'pending_order' });
        if (status === 'SUCCESS') c.orders_completed++;
        if (status === 'CLOSED' || status === 'FAILED') c.orders_closed++;
        c.repairs += status === 'MISMATCH' ? 0 : 1;
        await this.runs.addRepair(runId, {
          user_id: order.user_id, kind: 'pending_order', subject: order.order_id, before_value: 'pending',
          after_value: status === 'SUCCESS' ? 'paid (credit queued)' : status === 'MISMATCH' ? 'flagged for review' : 'closed',
          repaired: status !== 'MISMATCH', note: `payment service says ${status}`,
        });
      }
      progress('orders', c.orders_checked);
    }
  }
}
