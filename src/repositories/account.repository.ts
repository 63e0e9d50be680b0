import type { Db } from './database.js';

export interface AccountRow {
  user_id: string;
  balance: string;
  overdraft_limit: string;
}

export interface QuotaUsageRow {
  service_name: string;
  used: string;
}

/** A grant as the account hash holds it (see src/redis/commands/includes/grants.lua). */
export interface LiveGrantRow {
  grant_id: string;
  category: string;
  priority: number;
  remaining: string;
  expires_at: Date | null;
  created_at: Date;
  status: string;
}

export interface PricingRow {
  service_name: string;
  free_quota: string | null;
  unit_price: string | null;
}

export interface LimitsRow {
  daily: string | null;
  monthly: string | null;
}

/** What an account loads beside its balance: grants, prices, limits and what it spent (SPEC 14). */
export interface AccountSettings {
  grants: LiveGrantRow[];
  pricing: PricingRow[];
  limits: LimitsRow | undefined;
  spentMonth: string;
  spentToday: string;
}

export class AccountRepository {
  constructor(private readonly db: Db) {}

  async find(userId: string): Promise<AccountRow | undefined> {
    return this.db('accounts').where({ user_id: userId }).first('user_id', 'balance', 'overdraft_limit');
  }

  /**
   * The balance and the running balance after the user's latest ledger entry, read in one statement
   * (one consistent snapshot, constant time): reconciliation only sets Redis to a balance that agrees
   * with its ledger.
   */
  async findWithLedgerBalance(userId: string): Promise<{ balance: string; ledger_balance: string } | undefined> {
    const [rows] = (await this.db.raw(
      `SELECT a.balance,
              COALESCE((SELECT l.balance_after FROM ledger_entries l WHERE l.user_id = a.user_id ORDER BY l.id DESC LIMIT 1),
                       a.archived_balance)
                AS ledger_balance
         FROM accounts a WHERE a.user_id = ?`,
      [userId],
    )) as [{ balance: string; ledger_balance: string }[]];
    return rows[0] ? { balance: String(rows[0].balance), ledger_balance: String(rows[0].ledger_balance) } : undefined;
  }

  /**
   * Grants still to spend or to end (active, or voided with a part held when it was voided), the
   * user's prices and limits, and what the user spent this month (`period`) and on `day` (YYYY-MM-DD):
   * the daily aggregates carry every persisted charge, and an account is loaded only when nothing of
   * it is unpersisted.
   */
  async settings(userId: string, period: string, day: string): Promise<AccountSettings> {
    const monthStart = `${period.slice(0, 4)}-${period.slice(4)}-01`;
    const [grants, pricing, limits, spent] = await Promise.all([
      this.liveGrants(userId),
      this.db('user_pricing').where({ user_id: userId }).select('service_name', 'free_quota', 'unit_price'),
      this.db('spending_limits').where({ user_id: userId }).first('daily', 'monthly'),
      this.db('usage_daily')
        .where({ user_id: userId })
        .andWhere('day', '>=', monthStart)
        .andWhere('day', '<=', day)
        .select(
          this.db.raw('COALESCE(SUM(total_cost), 0) AS month'),
          this.db.raw('COALESCE(SUM(CASE WHEN day = ? THEN total_cost ELSE 0 END), 0) AS today', [day]),
        )
        .first(),
    ]);
    return {
      grants,
      pricing: pricing as PricingRow[],
      limits: limits as LimitsRow | undefined,
      spentMonth: String((spent as { month: string } | undefined)?.month ?? '0'),
      spentToday: String((spent as { today: string } | undefined)?.today ?? '0'),
    };
  }

  /** Grants still to spend or to end: active, or voided while a reservation held part of them. */
  async liveGrants(userId: string): Promise<LiveGrantRow[]> {
    return this.db('credit_grants')
      .where({ user_id: userId })
      .whereIn('status', ['active', 'voiding'])
      .andWhere('category', '<>', '')
      .select('grant_id', 'category', 'priority', 'remaining', 'expires_at', 'created_at', 'status');
  }

  async quotaUsage(userId: string, period: string): Promise<QuotaUsageRow[]> {
    return this.db('quota_usage').where({ user_id: userId, period }).select('service_name', 'used');
  }
}
