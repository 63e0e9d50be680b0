import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { DeductionChange } from '../lib/ledger-change.js';
import { refusalError } from './refusals.js';
import { formatMoney } from '../lib/money.js';
import { newId } from '../lib/ids.js';
import type { Metrics } from '../lib/metrics.js';

export interface CheckInput {
  userId: string;
  serviceName: string;
  count: number;
}

export interface DeductInput extends CheckInput {
  requestId: string;
}

export interface CheckResult {
  allowed: boolean;
  reason: 'free' | 'balance' | 'insufficient_balance' | 'insufficient_quota';
  freeRemaining: number;
  balance: string;
}

export interface DeductResult {
  success: true;
  recordId: string;
  requestId: string;
  freeCount: number;
  paidCount: number;
  amount: string;
  balance: string;
  duplicate: boolean;
}

/** The gateway's hot path: one Lua script per call, answered from Redis. */
export class BillingService {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly catalogue: CatalogueService,
    private readonly accounts: AccountService,
    private readonly persistence: PersistenceService,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    private readonly idempotencyTtlMs: number,
    private readonly metrics: Metrics,
  ) {}

  /** Runs a script; if the account is not in Redis yet, loads it and runs the script once more. */
  private async withAccount(userId: string, now: Date, run: () => Promise<string[]>): Promise<string[]> {
    const r = await run();
    if (r[0] !== 'init') return r;
    await this.accounts.load(userId, now);
    return run();
  }

  async check({ userId, serviceName, count }: CheckInput): Promise<CheckResult> {
    const svc = this.catalogue.get(serviceName);
    const now = this.clock.now();
    const period = this.calendar.period(now);
    const r = await this.withAccount(userId, now, () =>
      this.redis.checkScript(this.keys.account(userId), this.keys.quota(userId, period), svc.name, count, svc.freeQuota, svc.priceArg),
    );
    this.metrics.outcomes.inc({ op: 'check', outcome: r[2] });
    return { allowed: r[1] === '1', reason: r[2] as CheckResult['reason'], freeRemaining: Number(r[3]), balance: formatMoney(BigInt(r[4])) };
  }

  async deduct({ requestId, userId, serviceName, count }: DeductInput): Promise<DeductResult> {
    const svc = this.catalogue.get(serviceName);
    const now = this.clock.now();
    const period = this.calendar.period(now);
    const recordId = newId('rec_', now);
    const change = {
      kind: 'deduction',
      id: recordId,
      userId,
      requestId,
      service: svc.name,
      count: String(count),
      unitPrice: svc.priceArg,
      period,
      day: this.calendar.day(now),
      at: now.toISOString(),
    };
    const r = await this.withAccount(userId, now, () =>
      this.redis.deductScript(
        this.keys.account(userId),
        this.keys.quota(userId, period),
        this.keys.request(userId, requestId),
        this.keys.pending(userId),
        `deduct|${svc.name}|${count}`,
        svc.name,
        count,
        svc.freeQuota,
        svc.priceArg,
        recordId,
        JSON.stringify(change),
        this.idempotencyTtlMs,
        this.accounts.quotaExpiry(now),
      ),
    );
    const [status, rec, free, paid, amount, available] = r;
    this.metrics.outcomes.inc({ op: 'deduct', outcome: status });
    const refused = refusalError(status, svc.name, requestId, available, amount);
    if (refused) throw refused;
    if (status === 'ok') this.persistence.enqueue({ ...change, free, paid, amount } as DeductionChange);
    else if (status !== 'dup') throw new Error(`deduct script answered ${status}`);
    return {
      success: true,
      recordId: rec,
      requestId,
      freeCount: Number(free),
      paidCount: Number(paid),
      amount: formatMoney(BigInt(amount)),
      balance: formatMoney(BigInt(available)),
      duplicate: status === 'dup',
    };
  }
}
