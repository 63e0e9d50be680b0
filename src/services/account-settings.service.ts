import type { Db } from '../repositories/database.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Scripts } from '../redis/scripts.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import type { AccountService } from './account.service.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, MAX_MICROS, type Micros } from '../lib/money.js';

export interface LimitsView {
  userId: string;
  daily: string | null;
  monthly: string | null;
  spentToday: string;
  spentThisMonth: string;
}

export interface PricingView {
  userId: string;
  serviceName: string;
  freeQuota: number;
  unitPrice: string | null;
  overridden: boolean;
}

/** A change of a setting: undefined leaves it, null removes it. */
type Setting<T> = T | null | undefined;

/** What AccountSettingsService is built from. */
export interface AccountSettingsServiceDeps {
  db: Db;
  redis: RedisClient;
  keys: RedisKeys;
  scripts: Scripts;
  accounts: AccountService;
  catalogue: CatalogueService;
  calendar: BusinessCalendar;
  clock: Clock;
  maxCallsPerRequest: number;
}

/**
 * Spending limits and per-user prices (SPEC 14). Both are written to MySQL first, then into the
 * loaded account hash, where check, deduct and reserve read them in their own atomic step
 * (set-account-fields-2.lua says why the order makes a concurrent load harmless).
 */
export class AccountSettingsService {
  private readonly d: AccountSettingsServiceDeps;

  constructor(deps: AccountSettingsServiceDeps) {
    this.d = deps;
  }

  async setLimits(userId: string, daily: Setting<Micros>, monthly: Setting<Micros>): Promise<LimitsView> {
    const row = await this.d.db('spending_limits').where({ user_id: userId }).first('daily', 'monthly');
    const next = {
      daily: daily === undefined ? (row?.daily ?? null) : daily === null ? null : daily.toString(),
      monthly: monthly === undefined ? (row?.monthly ?? null) : monthly === null ? null : monthly.toString(),
    };
    await this.d
      .db('spending_limits')
      .insert({ user_id: userId, ...next })
      .onConflict('user_id')
      .merge(['daily', 'monthly']);
    await this.apply(userId, [
      ['lim_d', next.daily === null ? '' : String(next.daily)],
      ['lim_m', next.monthly === null ? '' : String(next.monthly)],
    ]);
    return this.limits(userId);
  }

  async limits(userId: string): Promise<LimitsView> {
    const now = this.d.clock.now();
    await this.d.accounts.load(userId, now);
    const [limits, spent] = await Promise.all([
      this.d.redis.hmget(this.d.keys.account(userId), 'lim_d', 'lim_m'),
      this.d.redis.hmget(
        this.d.keys.quota(userId, this.d.calendar.period(now)),
        '$d:' + this.d.calendar.day(now).slice(8),
        '$m',
      ),
    ]);
    const money = (v: string | null) => (v === null ? null : formatMoney(BigInt(v)));
    return {
      userId,
      daily: money(limits[0]),
      monthly: money(limits[1]),
      spentToday: formatMoney(BigInt(spent[0] ?? '0')),
      spentThisMonth: formatMoney(BigInt(spent[1] ?? '0')),
    };
  }

  async setPricing(
    userId: string,
    serviceName: string,
    freeQuota: Setting<number>,
    unitPrice: Setting<Micros>,
  ): Promise<PricingView> {
    this.d.catalogue.get(serviceName);
    if (unitPrice != null && unitPrice * BigInt(this.d.maxCallsPerRequest) > MAX_MICROS) {
      throw new AppError('VALIDATION_FAILED', 'unit_price too large', [
        { field: 'unit_price', message: 'times the largest count of a call, must stay below 2^53 micro-units' },
      ]);
    }
    const row = await this.pricingRow(userId, serviceName);
    const next = {
      free_quota: freeQuota === undefined ? (row?.free_quota ?? null) : freeQuota,
      unit_price:
        unitPrice === undefined ? (row?.unit_price ?? null) : unitPrice === null ? null : unitPrice.toString(),
    };
    if (next.free_quota === null && next.unit_price === null) {
      await this.d.db('user_pricing').where({ user_id: userId, service_name: serviceName }).delete();
    } else {
      await this.d
        .db('user_pricing')
        .insert({ user_id: userId, service_name: serviceName, ...next })
        .onConflict(['user_id', 'service_name'])
        .merge(['free_quota', 'unit_price']);
    }
    const field =
      next.free_quota === null && next.unit_price === null ? '' : `${next.free_quota ?? ''}|${next.unit_price ?? ''}`;
    await this.apply(userId, [[`p:${serviceName}`, field]]);
    return this.effective(userId, serviceName, next);
  }

  async pricing(userId: string): Promise<PricingView[]> {
    const rows: { service_name: string; free_quota: string | null; unit_price: string | null }[] = await this.d
      .db('user_pricing')
      .where({ user_id: userId })
      .select('service_name', 'free_quota', 'unit_price');
    return this.d.catalogue.services.map((s) => {
      const row = rows.find((r) => r.service_name === s.name);
      return this.effective(userId, s.name, row ?? { free_quota: null, unit_price: null });
    });
  }

  private effective(
    userId: string,
    serviceName: string,
    o: { free_quota: string | number | null; unit_price: string | null },
  ): PricingView {
    const s = this.d.catalogue.get(serviceName);
    const unitPrice = o.unit_price !== null ? BigInt(o.unit_price) : s.unitPrice;
    return {
      userId,
      serviceName,
      freeQuota: o.free_quota !== null ? Number(o.free_quota) : s.freeQuota,
      unitPrice: unitPrice === null ? null : formatMoney(unitPrice),
      overridden: o.free_quota !== null || o.unit_price !== null,
    };
  }

  private pricingRow(userId: string, serviceName: string) {
    return this.d
      .db('user_pricing')
      .where({ user_id: userId, service_name: serviceName })
      .first('free_quota', 'unit_price') as Promise<
      { free_quota: string | null; unit_price: string | null } | undefined
    >;
  }

  /** MySQL holds the new values; now the loaded account gets them (loading it first: see the class comment). */
  private async apply(userId: string, fields: [string, string][]): Promise<void> {
    const now = this.d.clock.now();
    await this.d.accounts.load(userId, now);
    await this.d.scripts.setAccountFields(userId, fields, now);
  }
}
