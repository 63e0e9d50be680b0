import type { Db } from './database.js';
import { asStrings, balancesWithLedgerSum, type BalanceWithLedgerSum } from './ledger-sum.js';

export interface RunCounts {
  users_checked: number;
  users_in_flight: number;
  mismatches: number;
  repairs: number;
  reenqueued: number;
  orders_checked: number;
  orders_completed: number;
  orders_closed: number;
}

export interface RepairRow {
  user_id: string | null;
  kind: string;
  subject: string;
  before_value: string | null;
  after_value: string | null;
  repaired: boolean;
  note?: string;
}

export class ReconciliationRepository {
  constructor(private readonly db: Db) {}

  async startRun(trigger: string, at: Date): Promise<number> {
    const [id] = await this.db('reconciliation_runs').insert({ trigger_kind: trigger, started_at: at });
    return Number(id);
  }

  async finishRun(id: number, status: 'ok' | 'failed', counts: RunCounts, at: Date, durationMs: number, error?: string): Promise<void> {
    await this.db('reconciliation_runs').where({ id }).update({ ...counts, status, finished_at: at, duration_ms: durationMs, error: error?.slice(0, 1024) ?? null });
  }

  async addRepair(runId: number, r: RepairRow): Promise<void> {
    await this.db('reconciliation_repairs').insert({ run_id: runId, ...r, repaired: r.repaired ? 1 : 0, note: r.note?.slice(0, 255) ?? null });
  }

  async listRuns(limit: number, beforeId?: number) {
    const q = this.db('reconciliation_runs').orderBy('id', 'desc').limit(limit);
    if (beforeId) q.where('id', '<', beforeId);
    return q.select();
  }

  async repairsOf(runId: number) {
    return this.db('reconciliation_repairs').where({ run_id: runId }).orderBy('id').select();
  }

  /** Users whose MySQL balance differs from the sum of their ledger entries, in user_id order. */
  async ledgerMismatches(
    afterUserId: string,
    limit: number,
  ): Promise<{ page: string[]; mismatches: BalanceWithLedgerSum[] }> {
    const rows: BalanceWithLedgerSum[] = await balancesWithLedgerSum(this.db)
      .where('a.user_id', '>', afterUserId)
      .orderBy('a.user_id')
      .limit(limit);
    const users = rows.map(asStrings);
    const mismatches = users.filter((u) => BigInt(u.balance) !== BigInt(u.ledger_sum));
    return { page: users.map((u) => u.user_id), mismatches };
  }

  /**
   * Re-checks one user with the account row locked (no persist can commit for the user meanwhile) and
   * sets the balance to the ledger sum if they still differ. Returns the values, or null if they agree.
   */
  async repairBalanceFromLedger(userId: string): Promise<{ before: string; after: string } | null> {
    return this.db.transaction(async (trx) => {
      const locked = await trx('accounts').where({ user_id: userId }).forUpdate().first('user_id');
      if (!locked) return null;
      // A plain read after the lock: it sees every persist committed before the lock was taken.
      const row = asStrings((await balancesWithLedgerSum(trx).where('a.user_id', userId).first())!);
      if (BigInt(row.balance) === BigInt(row.ledger_sum)) return null;
      const balance = trx.raw('CAST(? AS SIGNED)', [row.ledger_sum]);
      await trx('accounts').where({ user_id: userId }).update({ balance });
      return { before: row.balance, after: row.ledger_sum };
    });
  }
}
