import type { Db } from '../repositories/database.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Scripts } from '../redis/scripts.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { PersistenceService } from './persistence.service.js';
import type { LiveGrant } from './account.service.js';
import type { GrantChange } from '../lib/ledger-change.js';
import { payloadPrint } from '../redis/idempotency.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, type Micros } from '../lib/money.js';

/** How long a grant id is remembered in Redis (then MySQL answers a replay). */
const GRANT_MARKER_TTL_MS = 7 * 86_400_000;
/** The most grants one user holds at once: every paid call reads them all. */
export const MAX_GRANTS_PER_USER = 50;
/** Users whose grants an expiry run ends, at most. */
const EXPIRY_BATCH = 1_000;

export interface GrantInput {
  userId: string;
  grantId: string;
  amount: Micros;
  category: 'promotional' | 'paid';
  priority: number;
  expiresAt: Date | null;
  note: string;
}

export interface GrantView {
  grantId: string;
  userId: string;
  category: string;
  priority: number;
  amount: string;
  remaining: string;
  expiresAt: string | null;
  createdAt: string;
  status: 'active' | 'expired' | 'voided';
}

interface GrantRow {
  grant_id: string;
  category: string;
  priority: number;
  amount: string;
  remaining: string;
  expires_at: Date | null;
  created_at: Date;
  status: string;
  note: string | null;
}

/** What GrantService is built from. */
export interface GrantServiceDeps {
  db: Db;
  redis: RedisClient;
  keys: RedisKeys;
  scripts: Scripts;
  persistence: PersistenceService;
  clock: Clock;
  logger: Logger;
}

/**
 * Credit grants (SPEC 14): given, listed, voided and expired. Spending them is the pricing scripts'
 * work (src/redis/commands/includes/grants.lua); every movement is a journaled change booked in
 * grant_entries.
 */
export class GrantService {
  private readonly d: GrantServiceDeps;

  constructor(deps: GrantServiceDeps) {
    this.d = deps;
  }

  async create(input: GrantInput): Promise<GrantView & { duplicate: boolean }> {
    const now = this.d.clock.now();
    if (input.expiresAt && input.expiresAt.getTime() <= now.getTime()) {
      throw new AppError('VALIDATION_FAILED', 'expires_at must be in the future', [
        { field: 'expires_at', message: 'must be in the future' },
      ]);
    }
    const fingerprint = payloadPrint(
      [input.amount, input.category, input.priority, input.expiresAt?.toISOString() ?? ''].join('|'),
    );
    const stored = await this.row(input.userId, input.grantId);
    if (stored) {
      const same =
        String(stored.amount) === input.amount.toString() &&
        stored.category === input.category &&
        Number(stored.priority) === input.priority &&
        (stored.expires_at ? new Date(stored.expires_at).getTime() : null) === (input.expiresAt?.getTime() ?? null);
      if (!same) {
        throw new AppError('REQUEST_ID_REUSED', `grant_id ${input.grantId} was used before with a different payload`);
      }
      return this.firstAnswer(input, new Date(stored.created_at), true);
    }
    const change: GrantChange = {
      kind: 'grant',
      id: input.grantId,
      userId: input.userId,
      amount: input.amount.toString(),
      category: input.category,
      priority: String(input.priority),
      expiresAt: input.expiresAt?.toISOString() ?? '',
      note: input.note,
      at: now.toISOString(),
    };
    const r = await this.d.scripts.createGrant({
      change,
      markerTtlMs: GRANT_MARKER_TTL_MS,
      fingerprint,
      maxGrants: MAX_GRANTS_PER_USER,
      now,
    });
    if (r.journaled) {
      this.d.persistence.enqueue(r.journaled);
      return this.firstAnswer(input, now, false);
    }
    // A replay while the grant is not in MySQL yet: its creation time is the live grant's.
    const live = (await this.live(input.userId)).get(input.grantId);
    return this.firstAnswer(input, live ? new Date(Number(live.at)) : now, true);
  }

  /** A grant's answer as first given (a replay answers the same, with duplicate: true). */
  private firstAnswer(input: GrantInput, createdAt: Date, duplicate: boolean): GrantView & { duplicate: boolean } {
    return {
      grantId: input.grantId,
      userId: input.userId,
      category: input.category,
      priority: input.priority,
      amount: formatMoney(input.amount),
      remaining: formatMoney(input.amount),
      expiresAt: input.expiresAt?.toISOString() ?? null,
      createdAt: createdAt.toISOString(),
      status: 'active',
      duplicate,
    };
  }

  /** The user's grants, newest first: MySQL's rows with Redis's live remaining. */
  async list(userId: string): Promise<GrantView[]> {
    const rows: GrantRow[] = await this.d
      .db('credit_grants')
      .where({ user_id: userId })
      .andWhere('category', '<>', '')
      .orderBy('created_at', 'desc')
      .limit(200)
      .select('grant_id', 'category', 'priority', 'amount', 'remaining', 'expires_at', 'created_at', 'status', 'note');
    const live = await this.live(userId);
    const views = await Promise.all(rows.map((r) => this.view(userId, r, live)));
    // Given in Redis, not yet in MySQL (persisted in a moment).
    for (const g of live.values()) {
      if (!rows.some((r) => r.grant_id === g.id)) {
        views.unshift({
          grantId: g.id,
          userId,
          category: g.cat,
          priority: Number(g.prio),
          amount: formatMoney(BigInt(g.rem)),
          remaining: formatMoney(BigInt(g.rem)),
          expiresAt: g.exp ? new Date(Number(g.exp)).toISOString() : null,
          createdAt: new Date(Number(g.at)).toISOString(),
          status: 'active',
        });
      }
    }
    return views;
  }

  /** Voids a grant: what is left of it leaves now (or once the reservations holding part of it end). */
  async void(userId: string, grantId: string): Promise<{ grantId: string; voided: string; pending: boolean }> {
    const now = this.d.clock.now();
    const r = await this.d.scripts.endGrants({ userId, mode: 'void', grantId, now });
    // Given and ended already (voided or expired): its creation's marker, read in the script's step, says so.
    if (r.status === 'ended') return { grantId, voided: formatMoney(0n), pending: false };
    if (r.status === 'missing') {
      // Not live and not marked: never given, or ended before its marker went. Only an ended row counts:
      // an active one is a grant created after the script ran (the account is loaded, so a live grant
      // would have been seen), and this void then answers as if it came first.
      const row = await this.row(userId, grantId);
      if (!row || row.status === 'active') throw new AppError('NOT_FOUND', `grant ${grantId} of ${userId} not found`);
      return { grantId, voided: formatMoney(0n), pending: false };
    }
    for (const change of r.ended) this.d.persistence.enqueue(change);
    if (r.status === 'held') {
      // The expiry job ends it once its holds are gone, also after the account left Redis and came back.
      // Upserted: the grant may not be in MySQL yet (its row then starts as the placeholder it fills in).
      await this.d
        .db('credit_grants')
        .insert({
          user_id: userId,
          grant_id: grantId,
          category: '',
          priority: 0,
          amount: 0,
          remaining: 0,
          status: 'voiding',
          created_at: now,
        })
        .onConflict(['user_id', 'grant_id'])
        .merge({ status: 'voiding' });
    }
    return { grantId, voided: formatMoney(r.voided), pending: r.status === 'held' };
  }

  /**
   * Ends every grant past its expiry (and voided grants whose holds are gone). The scripts never spend
   * a grant past its expiry whatever this job's delay; this job books the remainder leaving. Finds the
   * users in MySQL (grants given moments ago and not yet persisted come on the next run).
   */
  async expireDue(): Promise<{ users: number; ended: number }> {
    const now = this.d.clock.now();
    const users: string[] = await this.d
      .db('credit_grants')
      .where((q) => q.where('status', 'active').andWhere('expires_at', '<=', now))
      .orWhere('status', 'voiding')
      .distinct('user_id')
      .limit(EXPIRY_BATCH)
      .pluck('user_id');
    let ended = 0;
    for (const userId of users) {
      const r = await this.d.scripts.endGrants({ userId, mode: 'expire', now });
      for (const change of r.ended) this.d.persistence.enqueue(change);
      ended += r.ended.length;
    }
    await this.d.persistence.drainBuffer();
    if (ended > 0) this.d.logger.info({ users: users.length, ended }, 'credit grants ended');
    return { users: users.length, ended };
  }

  /** The grants as the account hash holds them (an account not in Redis: none live). */
  async live(userId: string): Promise<Map<string, LiveGrant>> {
    const json = await this.d.redis.hget(this.d.keys.account(userId), 'g');
    const list = json ? (JSON.parse(json) as LiveGrant[]) : [];
    return new Map(list.map((g) => [g.id, g]));
  }

  private async row(userId: string, grantId: string): Promise<GrantRow | undefined> {
    return this.d
      .db('credit_grants')
      .where({ user_id: userId, grant_id: grantId })
      .andWhere('category', '<>', '')
      .first('grant_id', 'category', 'priority', 'amount', 'remaining', 'expires_at', 'created_at', 'status', 'note');
  }

  private async view(userId: string, r: GrantRow, live?: Map<string, LiveGrant>): Promise<GrantView> {
    const g = (live ?? (await this.live(userId))).get(r.grant_id);
    const expired = r.expires_at !== null && new Date(r.expires_at).getTime() <= this.d.clock.now().getTime();
    const status: GrantView['status'] =
      r.status === 'voided' || r.status === 'voiding' || g?.void === '1'
        ? 'voided'
        : r.status === 'expired' || expired
          ? 'expired'
          : 'active';
    return {
      grantId: r.grant_id,
      userId,
      category: r.category,
      priority: Number(r.priority),
      amount: formatMoney(BigInt(r.amount)),
      remaining: formatMoney(BigInt(g ? g.rem : r.remaining)),
      expiresAt: r.expires_at ? new Date(r.expires_at).toISOString() : null,
      createdAt: new Date(r.created_at).toISOString(),
      status,
    };
  }
}
