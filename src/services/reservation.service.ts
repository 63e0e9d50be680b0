import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import { scanKeys } from '../redis/scan.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { JobQueues } from '../jobs/queues.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { DeductionChange } from '../lib/ledger-change.js';
import { AppError } from '../lib/errors.js';
import { refusalError } from './refusals.js';
import { formatMoney } from '../lib/money.js';
import { newId } from '../lib/ids.js';
import type { Metrics } from '../lib/metrics.js';

export interface ReserveInput {
  requestId: string;
  userId: string;
  serviceName: string;
  count: number;
  ttlMs?: number;
}

export interface ReservationOptions {
  defaultTtlMs: number;
  maxTtlMs: number;
  idempotencyTtlMs: number;
}

/** How long a finished reservation's answer is kept for idempotent repeats. */
const KEEP_AFTER_EXPIRY_MS = 7 * 86_400_000;

const USER_ID = /^[A-Za-z0-9_.:@-]{1,64}$/;

/**
 * The reservation id carries its user and month, so that /reservations/{id}/... finds the user's
 * keys (one Cluster slot) and the month's quota without a lookup.
 */
export function reservationId(userId: string, period: string, now: Date): string {
  return `rsv_${Buffer.from(userId).toString('base64url')}.${period}.${newId('', now)}`;
}

export function parseReservationId(id: string): { userId: string; period: string } | null {
  const m = /^rsv_([A-Za-z0-9_-]{2,88})\.(\d{6})\.([0-9a-f]{32})$/.exec(id);
  if (!m) return null;
  const userId = Buffer.from(m[1], 'base64url').toString();
  return USER_ID.test(userId) ? { userId, period: m[2] } : null;
}

/**
 * Holds for calls whose cost is known only afterwards. A hold takes free quota and moves balance into
 * `held`; commit charges what was used and returns the rest; release returns all; an expired hold is
 * returned by the expiry job (or by a commit that comes too late). Each is one Lua state transition
 * from 'held', so the money comes back exactly once.
 */
export class ReservationService {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly catalogue: CatalogueService,
    private readonly accounts: AccountService,
    private readonly persistence: PersistenceService,
    private readonly queues: JobQueues,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    private readonly opts: ReservationOptions,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  async reserve(input: ReserveInput) {
    const svc = this.catalogue.get(input.serviceName);
    const ttlMs = input.ttlMs ?? this.opts.defaultTtlMs;
    if (ttlMs < 1000 || ttlMs > this.opts.maxTtlMs) {
      throw new AppError('VALIDATION_FAILED', 'invalid ttl_seconds', [{ field: 'ttl_seconds', message: `must be from 1 to ${this.opts.maxTtlMs / 1000}` }]);
    }
    const now = this.clock.now();
    const period = this.calendar.period(now);
    const id = reservationId(input.userId, period, now);
    const { userId } = input;
    const run = () =>
      this.redis.reserveScript(
        this.keys.account(userId), this.keys.quota(userId, period), this.keys.request(userId, input.requestId),
        this.keys.reservation(userId, id), this.keys.holds(userId),
        `reserve|${svc.name}|${input.count}|${ttlMs}`, svc.name, input.count, svc.freeQuota, svc.priceArg,
        id, now.getTime() + ttlMs, this.opts.idempotencyTtlMs, this.accounts.quotaExpiry(now), input.requestId, period, ttlMs + KEEP_AFTER_EXPIRY_MS,
      );
    let r = await run();
    if (r[0] === 'init') {
      await this.accounts.load(userId, now);
      r = await run();
    }
    const [status, rsv, free, paid, amount, available, expiresAt] = r;
    this.metrics.outcomes.inc({ op: 'reserve', outcome: status });
    const refused = refusalError(status, svc.name, input.requestId, available, amount);
    if (refused) throw refused;
    if (status === 'ok') {
      // Timely expiry; the periodic sweep covers a job lost here.
      await this.queues
        .add('expire-reservation', { userId, reservationId: rsv }, { delay: ttlMs, jobId: `exp-${rsv}` })
        .catch((err: Error) => this.logger.warn({ err: err.message, reservationId: rsv }, 'expiry job not queued; the sweep will expire the hold'));
    } else if (status !== 'dup') {
      throw new Error(`reserve script answered ${status}`);
    }
    return {
      reservationId: rsv,
      requestId: input.requestId,
      status: 'held' as const,
      expiresAt: new Date(Number(expiresAt)).toISOString(),
      freeCount: Number(free),
      paidCount: Number(paid),
      heldAmount: formatMoney(BigInt(amount)),
      balance: formatMoney(BigInt(available)),
      duplicate: status === 'dup',
    };
  }

  private locate(id: string) {
    const where = parseReservationId(id);
    if (!where) throw new AppError('RESERVATION_NOT_FOUND', `reservation ${id} not found`);
    return where;
  }

  async commit(id: string, count: number) {
    const { userId, period } = this.locate(id);
    const now = this.clock.now();
    const recordId = newId('rec_', now);
    const change = { kind: 'deduction', id: recordId, userId, day: this.calendar.day(now), at: now.toISOString() };
    const r = await this.redis.commitReservationScript(
      this.keys.account(userId), this.keys.quota(userId, period), this.keys.reservation(userId, id), this.keys.holds(userId), this.keys.pending(userId),
      id, count, recordId, JSON.stringify(change), now.getTime(),
    );
    const [status, rec, free, paid, amount, released, available, json] = r;
    this.metrics.outcomes.inc({ op: 'commit', outcome: status });
    if (status === 'too_many') {
      throw new AppError('VALIDATION_FAILED', 'count exceeds what is held', [{ field: 'count', message: `must be at most ${rec}` }]);
    }
    if (status === 'reused') throw new AppError('REQUEST_ID_REUSED', `reservation ${id} was committed before with another count`);
    if (status !== 'ok' && status !== 'dup') throw new AppError('RESERVATION_NOT_FOUND', `reservation ${id} is ${status === 'missing' ? 'unknown' : status}`);
    if (status === 'ok' && json) this.persistence.enqueue(JSON.parse(json) as DeductionChange);
    return {
      reservationId: id,
      status: 'committed' as const,
      recordId: rec || null,
      count,
      freeCount: Number(free),
      paidCount: Number(paid),
      amount: formatMoney(BigInt(amount)),
      releasedAmount: formatMoney(BigInt(released)),
      balance: formatMoney(BigInt(available)),
      duplicate: status === 'dup',
    };
  }

  /** Returns the whole hold. `as` 'expired' is the expiry job's call: a no-op before the hold's time. */
  async release(id: string, as: 'released' | 'expired' = 'released') {
    const { userId, period } = this.locate(id);
    const r = await this.redis.releaseReservationScript(
      this.keys.account(userId), this.keys.quota(userId, period), this.keys.reservation(userId, id), this.keys.holds(userId),
      id, as, this.clock.now().getTime(),
    );
    const [status, released, available] = r;
    this.metrics.outcomes.inc({ op: as === 'released' ? 'release' : 'expire', outcome: status });
    if (as === 'released' && status !== 'ok' && status !== 'released') {
      throw new AppError('RESERVATION_NOT_FOUND', `reservation ${id} is ${status === 'missing' ? 'unknown' : status}`);
    }
    return { reservationId: id, status: as, outcome: status, releasedAmount: formatMoney(BigInt(released ?? '0')), balance: formatMoney(BigInt(available ?? '0')), duplicate: status !== 'ok' };
  }

  /** Expires every hold past its time (the scheduled sweep). Returns how many it expired. */
  async expireDue(): Promise<number> {
    const now = this.clock.now().getTime();
    let expired = 0;
    for await (const keys of scanKeys(this.redis, this.keys.holdsPattern())) {
      for (const key of keys) {
        for (const [id, exp] of Object.entries(await this.redis.hgetall(key))) {
          if (Number(exp) > now) continue;
          const r = await this.release(id, 'expired');
          if (r.outcome === 'ok') expired++;
        }
      }
    }
    if (expired > 0) this.logger.info({ expired }, 'expired holds');
    return expired;
  }
}
