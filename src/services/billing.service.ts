import type { Scripts } from '../redis/scripts.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import { formatMoney } from '../lib/money.js';

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
  reason: 'free' | 'balance' | 'insufficient_balance' | 'insufficient_quota' | 'limit_reached';
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

/** What BillingService is built from (named, so that adding one is no positional shuffle). */
export interface BillingServiceDeps {
  scripts: Scripts;
  catalogue: CatalogueService;
  accounts: AccountService;
  persistence: PersistenceService;
  calendar: BusinessCalendar;
  clock: Clock;
  idempotencyTtlMs: number;
}

/** The gateway's hot path: one Lua script per call, answered from Redis. */
export class BillingService {
  private readonly scripts: Scripts;
  private readonly catalogue: CatalogueService;
  private readonly accounts: AccountService;
  private readonly persistence: PersistenceService;
  private readonly calendar: BusinessCalendar;
  private readonly clock: Clock;
  private readonly idempotencyTtlMs: number;

  constructor(deps: BillingServiceDeps) {
    this.scripts = deps.scripts;
    this.catalogue = deps.catalogue;
    this.accounts = deps.accounts;
    this.persistence = deps.persistence;
    this.calendar = deps.calendar;
    this.clock = deps.clock;
    this.idempotencyTtlMs = deps.idempotencyTtlMs;
  }

  async check({ userId, serviceName, count }: CheckInput): Promise<CheckResult> {
    const service = this.catalogue.get(serviceName);
    const now = this.clock.now();
    const day = this.calendar.day(now).slice(8);
    const r = await this.scripts.check({ userId, period: this.calendar.period(now), day, service, count, now });
    return { allowed: r.allowed, reason: r.reason, freeRemaining: r.freeLeft, balance: formatMoney(r.available) };
  }

  async deduct({ requestId, userId, serviceName, count }: DeductInput): Promise<DeductResult> {
    const service = this.catalogue.get(serviceName);
    const now = this.clock.now();
    const r = await this.scripts.deduct({
      userId,
      period: this.calendar.period(now),
      date: this.calendar.day(now),
      requestId,
      service,
      count,
      idempotencyTtlMs: this.idempotencyTtlMs,
      quotaExpiresAt: this.accounts.quotaExpiry(now),
      now,
    });
    if (r.journaled) this.persistence.enqueue(r.journaled);
    return {
      success: true,
      recordId: r.recordId,
      requestId,
      freeCount: r.free,
      paidCount: r.paid,
      amount: formatMoney(r.amount),
      balance: formatMoney(r.available),
      duplicate: r.duplicate,
    };
  }
}
