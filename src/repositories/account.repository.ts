import type { Db } from './database.js';
import { asStrings, balancesWithLedgerSum, type BalanceWithLedgerSum } from './ledger-sum.js';

export interface AccountRow {
  user_id: string;
  balance: string;
  overdraft_limit: string;
}

export interface QuotaUsageRow {
  service_name: string;
  used: string;
}

export class AccountRepository {
  constructor(private readonly db: Db) {}

  async find(userId: string): Promise<AccountRow | undefined> {
    return this.db('accounts').where({ user_id: userId }).first('user_id', 'balance', 'overdraft_limit');
  }

  /**
   * The balance and the sum of the user's ledger, read in one statement (one consistent snapshot):
   * reconciliation only sets Redis to a balance that agrees with its ledger.
   */
  async findWithLedgerSum(userId: string): Promise<BalanceWithLedgerSum | undefined> {
    const row = await balancesWithLedgerSum(this.db).where('a.user_id', userId).first();
    return row ? asStrings(row) : undefined;
  }

  async quotaUsage(userId: string, period: string): Promise<QuotaUsageRow[]> {
    return this.db('quota_usage').where({ user_id: userId, period }).select('service_name', 'used');
  }
}
