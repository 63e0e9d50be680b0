import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Scripts } from '../redis/scripts.js';
import { dueMembers } from '../redis/indexes.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { JobQueues } from '../jobs/queues.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';
import { newId } from '../lib/ids.js';

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

/** What ReservationService is built from (named, so that adding one is no positional shuffle). */
export interface ReservationServiceDeps {
  scripts: Scripts;
  redis: RedisClient;
  keys: RedisKeys;
  catalogue: CatalogueService;
  accounts: AccountService;
  persistence: PersistenceService;
  queues: JobQueues;
  calendar: BusinessCalendar;
  clock: Clock;
  opts: ReservationOptions;
  logger: Logger;
}

/**
 * Holds for calls whose cost is known only afterwards. A hold takes free quota and moves balance into
 * `held`; commit charges what was used and returns the rest; release returns all; an expired hold is
 * returned by the expiry job (or by a commit that comes too late). Each is one Lua state transition
 * from 'held', so the money comes back exactly once.
 */
export class ReservationService {
  private readonly scripts: Scripts;
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly catalogue: CatalogueService;
  private readonly accounts: AccountService;
  private readonly persistence: PersistenceService;
  private readonly queues: JobQueues;
  private readonly calendar: BusinessCalendar;
  private readonly clock: Clock;
  private readonly opts: ReservationOptions;
  private readonly logger: Logger;

  constructor(deps: ReservationServiceDeps) {
    this.scripts = deps.scripts;
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.catalogue = deps.catalogue;
    this.accounts = deps.accounts;
    this.persistence = deps.persistence;
    this.queues = deps.queues;
    this.calendar = deps.calendar;
    this.clock = deps.clock;
    this.opts = deps.opts;
    this.logger = deps.logger;
  }

  async reserve(input: ReserveInput) {
    const service = this.catalogue.get(input.serviceName);
    const ttlMs = input.ttlMs ?? this.opts.defaultTtlMs;
    if (ttlMs < 1000 || ttlMs > this.opts.maxTtlMs) {
      throw new AppError('VALIDATION_FAILED', 'invalid ttl_seconds', [
        { field: 'ttl_seconds', message: `must be from 1 to ${this.opts.maxTtlMs / 1000}` },
      ]);
    }
    const now = this.clock.now();
    const period = this.calendar.period(now);
    const { userId, requestId, count } = input;
    const r = await this.scripts.reserve({
      userId,
      period,
      day: this.calendar.day(now).slice(8),
      requestId,
      service,
      count,
      reservationId: reservationId(userId, period, now),
      ttlMs,
      idempotencyTtlMs: this.opts.idempotencyTtlMs,
      quotaExpiresAt: this.accounts.quotaExpiry(now),
      keepMs: ttlMs + KEEP_AFTER_EXPIRY_MS,
      now,
    });
    if (!r.duplicate) {
      // Timely expiry; the periodic sweep covers a job lost here.
      await this.queues
        .add(
          'expire-reservation',
          { userId, reservationId: r.reservationId },
          { delay: ttlMs, jobId: `exp-${r.reservationId}` },
        )
        .catch((err: Error) =>
          this.logger.warn(
            { err: err.message, reservationId: r.reservationId },
            'expiry job not queued; the sweep will expire the hold',
          ),
        );
    }
    return {
      reservationId: r.reservationId,
      requestId,
      status: 'held' as const,
      expiresAt: new Date(r.expiresAt).toISOString(),
      freeCount: r.free,
      paidCount: r.paid,
      heldAmount: formatMoney(r.amount),
      balance: formatMoney(r.available),
      duplicate: r.duplicate,
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
    const day = this.calendar.day(now);
    const change = { kind: 'deduction' as const, id: recordId, userId, day, at: now.toISOString() };
    const r = await this.scripts.commitReservation({ userId, period, reservationId: id, count, recordId, change, now });
    if (r.journaled) this.persistence.enqueue(r.journaled);
    return {
      reservationId: id,
      status: 'committed' as const,
      recordId: r.recordId,
      count,
      freeCount: r.free,
      paidCount: r.paid,
      amount: formatMoney(r.amount),
      releasedAmount: formatMoney(r.released),
      balance: formatMoney(r.available),
      duplicate: r.duplicate,
    };
  }

  /** Returns the whole hold. `as` 'expired' is the expiry job's call: a no-op before the hold's time. */
  async release(id: string, as: 'released' | 'expired' = 'released') {
    const { userId, period } = this.locate(id);
    const r = await this.scripts.releaseReservation({ userId, period, reservationId: id, as, now: this.clock.now() });
    return {
      reservationId: id,
      status: as,
      outcome: r.outcome,
      releasedAmount: formatMoney(r.released),
      balance: formatMoney(r.available),
      duplicate: r.outcome !== 'ok',
    };
  }

  /**
   * Expires every hold past its time (the scheduled sweep, behind each hold's own delayed job). Reads
   * the holds index (users by their earliest hold expiry), kept by the scripts that open and close
   * holds: its cost is the index keys and the due holds, not the keyspace. Returns how many it expired.
   */
  async expireDue(): Promise<number> {
    const now = this.clock.now().getTime();
    let expired = 0;
    const indexKeys = this.keys.indexTags().map((t) => this.keys.holdsIndexOf(t));
    for await (const { members: users } of dueMembers(this.redis, indexKeys, now)) {
      for (const userId of users) {
        // In the order they expired, ties by request id (the hash keeps no order): each return's events say
        // what was available at that point, as if each had been released at its time.
        const due = Object.entries(await this.redis.hgetall(this.keys.holds(userId)))
          .map(([id, exp]) => ({ id, exp: Number(exp), requestId: '' }))
          .filter((hold) => hold.exp <= now);
        if (due.length > 1) {
          const ids = await Promise.all(due.map((d) => this.redis.hget(this.keys.reservation(userId, d.id), 'req')));
          due.forEach((d, i) => (d.requestId = ids[i] ?? ''));
          due.sort((x, y) => x.exp - y.exp || (x.requestId < y.requestId ? -1 : x.requestId > y.requestId ? 1 : 0));
        }
        for (const { id } of due) {
          const r = await this.release(id, 'expired');
          if (r.outcome === 'ok') expired++;
        }
      }
    }
    if (expired > 0) this.logger.info({ expired }, 'expired holds');
    return expired;
  }
}
