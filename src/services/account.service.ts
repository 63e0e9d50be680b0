import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Scripts } from '../redis/scripts.js';
import type { AccountRepository, AccountSettings, LiveGrantRow } from '../repositories/account.repository.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import { formatMoney } from '../lib/money.js';
import { scanKeys } from '../redis/scan.js';
import { dueMembers, nextDue } from '../redis/indexes.js';

/** Accounts an eviction run asks of an index key at a time (each one script). */
const EVICT_PAGE = 1_000;

/** How long a month's quota hash outlives its month, for reconciliation of the month just ended. */
const QUOTA_KEEP_MS = 35 * 86_400_000;

/**
 * How long an account loaded from MySQL stays in Redis unless a change makes it lasting (PERSIST in
 * every changing script): reads and refused calls for ids never seen leave nothing lasting (SPEC 10.5,
 * 7.1), and a user who only checks is answered from Redis for this long before MySQL is read again.
 */
export const LOAD_TTL_MS = 5 * 60_000;

export interface AccountView {
  userId: string;
  balance: string;
  heldAmount: string;
  currency: string;
  /** spendable grants, in spending order: what is left of each and not held */
  grants: { grantId: string; category: string; remaining: string; expiresAt: string | null }[];
  quotas: { serviceName: string; totalQuota: number; usedQuota: number; remainingQuota: number; period: string }[];
}

/** A grant as the account hash holds it (field 'g': see src/redis/commands/includes/grants.lua). */
export interface LiveGrant {
  id: string;
  /** what is left, micro-units */
  rem: string;
  /** the part of rem that reservations hold */
  held: string;
  prio: string;
  /** unix ms, '' for never */
  exp: string;
  /** created, unix ms */
  at: string;
  cat: string;
  /** '1' once voided */
  void?: string;
}

/** The account-hash fields of a user's grants, prices and limits (see src/redis/commands/includes/quote.lua). */
export function accountFields(s: AccountSettings): [string, string][] {
  const fields: [string, string][] = [];
  const grants = grantsField(s.grants);
  if (grants !== '') fields.push(['g', grants]);
  for (const p of s.pricing) fields.push([`p:${p.service_name}`, `${p.free_quota ?? ''}|${p.unit_price ?? ''}`]);
  if (s.limits?.daily != null) fields.push(['lim_d', String(s.limits.daily)]);
  if (s.limits?.monthly != null) fields.push(['lim_m', String(s.limits.monthly)]);
  return fields;
}

/** MySQL's grants as the account hash's field 'g' holds them, in spending order ('' for none). */
export function grantsField(rows: LiveGrantRow[]): string {
  const grants = rows
    .map((g) => ({
      id: g.grant_id,
      rem: String(g.remaining),
      held: '0',
      prio: String(g.priority),
      exp: g.expires_at ? String(new Date(g.expires_at).getTime()) : '',
      at: String(new Date(g.created_at).getTime()),
      cat: g.category,
      ...(g.status === 'voiding' ? { void: '1' } : {}),
    }))
    .sort(grantOrder);
  return grants.length > 0 ? JSON.stringify(grants) : '';
}

/** The spending order of grants, as includes/grants.lua keeps it: priority, expiry (none last), age, id. */
function grantOrder(a: GrantOrderKey, b: GrantOrderKey): number {
  const exp = (g: GrantOrderKey) => (g.exp === '' ? Infinity : Number(g.exp));
  return (
    Number(a.prio) - Number(b.prio) ||
    exp(a) - exp(b) ||
    Number(a.at) - Number(b.at) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

interface GrantOrderKey {
  id: string;
  prio: string;
  exp: string;
  at: string;
}

/** What AccountService is built from (named, so that adding one is no positional shuffle). */
export interface AccountServiceDeps {
  scripts: Scripts;
  redis: RedisClient;
  keys: RedisKeys;
  accounts: AccountRepository;
  catalogue: CatalogueService;
  calendar: BusinessCalendar;
  clock: Clock;
  currency: string;
  /**
   * The alert fields an account loads with: thresholds and alarms derived from what is loaded
   * (EventService.loadFields); none when absent.
   */
  alertFields?: (
    userId: string,
    /** null: no account row (a new user) */
    balance: bigint | null,
    used: [string, string][],
    /** the user's own free quotas, where set (per-user pricing) */
    ownFree: Map<string, number>,
  ) => Promise<{ account: [string, string][]; quota: [string, string][] }>;
}

/**
 * A user's live account lives in Redis; MySQL is loaded into Redis the first time a user is seen
 * (a new user: zero balance, the month's free quota unused).
 */
export class AccountService {
  /** One MySQL load per user at a time in this process, however many first calls arrive together. */
  private readonly loading = new Map<string, Promise<void>>();

  private readonly scripts: Scripts;
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly accounts: AccountRepository;
  private readonly catalogue: CatalogueService;
  private readonly calendar: BusinessCalendar;
  private readonly clock: Clock;
  private readonly currency: string;
  private readonly alertFields: NonNullable<AccountServiceDeps['alertFields']>;

  constructor(deps: AccountServiceDeps) {
    this.alertFields = deps.alertFields ?? (async () => ({ account: [], quota: [] }));
    this.scripts = deps.scripts;
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.accounts = deps.accounts;
    this.catalogue = deps.catalogue;
    this.calendar = deps.calendar;
    this.clock = deps.clock;
    this.currency = deps.currency;
  }

  quotaExpiry(now: Date): number {
    return this.calendar.nextPeriodStart(now).getTime() + QUOTA_KEEP_MS;
  }

  /**
   * Loads the account into Redis unless it is there (race-free: see init-account-2.lua), with a TTL
   * (LOAD_TTL_MS) that its first change removes.
   */
  async load(userId: string, now: Date = this.clock.now()): Promise<void> {
    let p = this.loading.get(userId);
    if (!p) {
      p = this.loadFromMysql(userId, now).finally(() => this.loading.delete(userId));
      this.loading.set(userId, p);
    }
    return p;
  }

  private async loadFromMysql(userId: string, now: Date): Promise<void> {
    const period = this.calendar.period(now);
    const day = this.calendar.day(now);
    const [row, usage, settings] = await Promise.all([
      this.accounts.find(userId),
      this.accounts.quotaUsage(userId, period),
      this.accounts.settings(userId, period, day),
    ]);
    const used = usage.map((u): [string, string] => [u.service_name, String(u.used)]);
    // Alarms are derived from what the account can spend: its balance and its grants.
    const grants = settings.grants.reduce((sum, g) => sum + BigInt(g.remaining), 0n);
    const ownFree = new Map(
      settings.pricing.filter((p) => p.free_quota !== null).map((p) => [p.service_name, Number(p.free_quota)]),
    );
    const alerts = await this.alertFields(userId, row ? BigInt(row.balance) + grants : null, used, ownFree);
    await this.scripts.initAccount({
      userId,
      period,
      balance: row?.balance ?? '0',
      overdraftLimit: row?.overdraft_limit ?? '0',
      quotaExpiresAt: this.quotaExpiry(now),
      ttlMs: LOAD_TTL_MS,
      used: [...used, ...alerts.quota],
      accountFields: [...accountFields(settings), ...alerts.account],
      spent: [
        ['$m', settings.spentMonth],
        [`$d:${day.slice(8)}`, settings.spentToday],
      ],
    });
  }

  /**
   * Deletes quota hashes of months before the previous one (kept that long for reconciliation). They
   * expire by themselves; this catches any that lost their TTL (a restore, a manual edit). Idempotent.
   */
  async prunePeriods(now: Date = this.clock.now()): Promise<number> {
    const previous = this.previousPeriod(now);
    let deleted = 0;
    for await (const keys of scanKeys(this.redis, this.keys.quotaPattern())) {
      const old = keys.filter((k) => {
        const period = k.slice(k.lastIndexOf(':') + 1);
        return /^\d{6}$/.test(period) && period < previous;
      });
      if (old.length > 0)
        deleted += (await Promise.all(old.map((k) => this.redis.unlink(k)))).reduce((a, b) => a + b, 0);
    }
    return deleted;
  }

  /** The month before the one containing `now` (the instant before this month began lies in it). */
  private previousPeriod(now: Date): string {
    return this.calendar.period(new Date(this.calendar.startOfDay(this.calendar.monthDays(now).from).getTime() - 1));
  }

  /**
   * Removes from Redis every account unchanged for `idleMs` that has nothing in flight (SPEC 16: Redis
   * memory follows active users). Reads the activity index, kept by every changing script; each
   * removal is one atomic script that re-checks the account (see evict-account-7.lua). Its next call
   * loads it again from MySQL. Returns how many left.
   */
  async evictIdle(idleMs: number): Promise<{ evicted: number; busy: number }> {
    const now = this.clock.now();
    const idleBefore = now.getTime() - idleMs;
    const period = this.calendar.period(now);
    const previousPeriod = this.previousPeriod(now);
    let evicted = 0;
    let busy = 0;
    const indexKeys = this.keys.indexTags().map((t) => this.keys.activityIndexOf(t));
    for await (const first of dueMembers(this.redis, indexKeys, idleBefore, EVICT_PAGE)) {
      // Every idle account of the key, a page at a time: the evicted leave the index, the rest stay.
      for (let users = first.members, offset = 0; users.length > 0;) {
        const outcomes = await Promise.all(
          users.map((userId) => this.scripts.evictAccount({ userId, idleBefore, period, previousPeriod })),
        );
        const gone = outcomes.filter((o) => o === 'evicted').length;
        evicted += gone;
        busy += outcomes.filter((o) => o === 'busy').length;
        if (users.length < EVICT_PAGE) break;
        offset += users.length - gone;
        users = await nextDue(this.redis, first.key, idleBefore, offset, EVICT_PAGE);
      }
    }
    return { evicted, busy };
  }

  /** Whether Redis or MySQL knows the user (looks only: loads nothing). */
  async exists(userId: string): Promise<boolean> {
    const [inRedis, inMysql] = await Promise.all([
      this.redis.exists(this.keys.account(userId)),
      this.accounts.find(userId),
    ]);
    return inRedis === 1 || !!inMysql;
  }

  /**
   * Balance (available: the balance less what is held, plus the grants spendable now), held amount,
   * grants and this month's quotas (the user's own free quotas where set), read live from Redis.
   */
  async view(userId: string): Promise<AccountView> {
    const now = this.clock.now();
    const period = this.calendar.period(now);
    let [acct, used] = await this.read(userId, period);
    if (acct[0] === null) {
      await this.load(userId, now);
      [acct, used] = await this.read(userId, period);
    }
    const bal = BigInt(acct[0] ?? '0');
    const held = BigInt(acct[1] ?? '0');
    const allGrants = acct[2] ? (JSON.parse(acct[2]) as LiveGrant[]) : [];
    const grants = allGrants.filter((g) => g.void !== '1' && (g.exp === '' || Number(g.exp) > now.getTime()));
    const fromGrants = grants.reduce((sum, g) => sum + BigInt(g.rem) - BigInt(g.held), 0n);
    // Held stays held until its reservation ends, also in a grant voided (or expired) meanwhile.
    const grantHeld = allGrants.reduce((sum, g) => sum + BigInt(g.held), 0n);
    const periodLabel = `${period.slice(0, 4)}-${period.slice(4)}`;
    return {
      userId,
      balance: formatMoney(bal - held + fromGrants),
      heldAmount: formatMoney(held + grantHeld),
      currency: this.currency,
      grants: grants.map((g) => ({
        grantId: g.id,
        category: g.cat,
        remaining: formatMoney(BigInt(g.rem) - BigInt(g.held)),
        expiresAt: g.exp === '' ? null : new Date(Number(g.exp)).toISOString(),
      })),
      quotas: this.catalogue.services.map((s, i) => {
        const own = /^(\d*)\|/.exec(acct[3 + i] ?? '')?.[1];
        const total = own ? Number(own) : s.freeQuota;
        const usedQuota = Math.min(total, Number(used[i] ?? 0));
        return {
          serviceName: s.name,
          totalQuota: total,
          usedQuota,
          remainingQuota: total - usedQuota,
          period: periodLabel,
        };
      }),
    };
  }

  private async read(userId: string, period: string): Promise<[(string | null)[], (string | null)[]]> {
    const names = this.catalogue.services.map((s) => s.name);
    return Promise.all([
      this.redis.hmget(this.keys.account(userId), 'bal', 'held', 'g', ...names.map((n) => `p:${n}`)),
      this.redis.hmget(this.keys.quota(userId, period), ...names),
    ]);
  }
}
