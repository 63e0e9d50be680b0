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

  async quotaUsage(userId: string, period: string): Promise<QuotaUsageRow[]> {
    return this.db('quota_usage').where({ user_id: userId, period }).select('service_name', 'used');
  }
}
