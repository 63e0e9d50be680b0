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

export class AccountRepository {
  constructor(private readonly db: Db) {}

  async find(userId: string): Promise<AccountRow | undefined> {
    return this.db('accounts').where({ user_id: userId }).first('user_id', 'balance', 'overdraft_limit');
  }

  async quotaUsage(userId: string, period: string): Promise<QuotaUsageRow[]> {
    return this.db('quota_usage').where({ user_id: userId, period }).select('service_name', 'used');
  }
}
