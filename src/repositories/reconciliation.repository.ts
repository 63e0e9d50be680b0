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

export interface LedgerCheck {
  userId: string;
  balance: string;
  /** balance = verified balance + new entries = the latest entry's running balance */
  ok: boolean;
  /** the latest ledger entry (null: none since the last verified one) */
  lastId: string | null;
  /** what the ledger says the balance is */
  expected: string;
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

  async finishRun(
    id: number,
    status: 'ok' | 'failed',
    counts: RunCounts,
    at: Date,
    durationMs: number,
    error?: string,
  ): Promise<void> {
    await this.db('reconciliation_runs')
      .where({ id })
      .update({ ...counts, status, finished_at: at, duration_ms: durationMs, error: error?.slice(0, 1024) ?? null });
  }

  async deleteRun(id: number): Promise<void> {
    await this.db('reconciliation_runs').where({ id, status: 'running' }).del();
  }

  /** A long run's counts so far, readable while it runs (GET /admin/v1/reconciliation/runs). */
  async progress(id: number, counts: RunCounts): Promise<void> {
    await this.db('reconciliation_runs')
      .where({ id })
      .update({ ...counts });
  }

  async addRepair(runId: number, r: RepairRow): Promise<void> {
    await this.db('reconciliation_repairs').insert({
      run_id: runId,
      ...r,
      repaired: r.repaired ? 1 : 0,
      note: r.note?.slice(0, 255) ?? null,
    });
  }

  async listRuns(limit: number, beforeId?: number) {
    const q = this.db('reconciliation_runs').orderBy('id', 'desc').limit(limit);
    if (beforeId) q.where('id', '<', beforeId);
    return q.select();
  }

  async repairsOf(runId: number) {
    return this.db('reconciliation_repairs').where({ run_id: runId }).orderBy('id').select();
  }

  /** MySQL's clock: changed_at stamps come from it, so "changed since" is measured on it too. */
  async now(): Promise<Date> {
    const [rows] = (await this.db.raw('SELECT CURRENT_TIMESTAMP(3) AS now')) as [{ now: Date }[]];
    return new Date(rows[0].now);
  }

  async state(name: string): Promise<string | null> {
    const row = await this.db('reconciliation_state').where({ name }).first('value');
    return row ? String(row.value) : null;
  }

  async setState(name: string, value: string): Promise<void> {
    await this.db('reconciliation_state').insert({ name, value }).onConflict('name').merge();
  }

  /** Accounts stamped changed at or after `since`, by (changed_at, user_id) keyset through the index. */
  async changedSince(
    since: Date,
    after: { at: Date; userId: string } | null,
    limit: number,
  ): Promise<{ user_id: string; changed_at: Date }[]> {
    const q = this.db('accounts')
      .where('changed_at', '>=', since)
      .orderBy([{ column: 'changed_at' }, { column: 'user_id' }])
      .limit(limit);
    if (after) {
      q.andWhere((w) =>
        w
          .where('changed_at', '>', after.at)
          .orWhere((e) => e.where('changed_at', after.at).andWhere('user_id', '>', after.userId)),
      );
    }
    return q.select('user_id', 'changed_at');
  }

  /** The next accounts after `afterUserId` in user_id order (the rolling audit, a full audit). */
  async accountsAfter(afterUserId: string, limit: number): Promise<string[]> {
    return this.db('accounts').where('user_id', '>', afterUserId).orderBy('user_id').limit(limit).pluck('user_id');
  }

  /** Estimated number of accounts (table statistics: constant time, no scan). */
  async estimatedAccounts(): Promise<number> {
    const [rows] = (await this.db.raw(
      "SELECT TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'accounts'",
    )) as [{ n: number | string | null }[]];
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Checks accounts against only the ledger entries added since their last verified one, in one
   * statement (one snapshot): the balance must equal the verified balance plus the new entries, and
   * the latest entry's running balance. Cost: the new entries, not the history.
   */
  async ledgerSinceAudit(userIds: string[]): Promise<LedgerCheck[]> {
    if (userIds.length === 0) return [];
    const [rows] = (await this.db.raw(
      `SELECT a.user_id, a.balance, a.audited_entry_id, a.audited_balance,
              COALESCE(SUM(l.amount), 0) AS new_sum, MAX(l.id) AS last_id,
              SUBSTRING_INDEX(GROUP_CONCAT(l.balance_after ORDER BY l.id DESC), ',', 1) AS last_balance_after
         FROM accounts a
         LEFT JOIN ledger_entries l ON l.user_id = a.user_id AND l.id > a.audited_entry_id
        WHERE a.user_id IN (${userIds.map(() => '?').join(',')})
        GROUP BY a.user_id, a.balance, a.audited_entry_id, a.audited_balance`,
      userIds,
    )) as [Record<string, string | number | null>[]];
    return rows.map((r) => {
      const balance = BigInt(String(r.balance));
      const expected = BigInt(String(r.audited_balance)) + BigInt(String(r.new_sum));
      const lastAfter =
        r.last_balance_after === null || r.last_balance_after === '' ? null : BigInt(String(r.last_balance_after));
      const ok = balance === expected && (r.last_id === null || lastAfter === balance);
      return {
        userId: String(r.user_id),
        balance: balance.toString(),
        ok,
        lastId: r.last_id === null ? null : String(r.last_id),
        expected: (lastAfter ?? expected).toString(),
      };
    });
  }

  /** Records each verified account's latest entry and balance, so the next check starts after them. */
  async markAudited(checks: { userId: string; lastId: string; balance: string }[]): Promise<void> {
    if (checks.length === 0) return;
    const ids = checks.map((c) => c.userId);
    const entryCase = checks.map(() => 'WHEN ? THEN ?').join(' ');
    const balanceCase = checks.map(() => 'WHEN ? THEN CAST(? AS SIGNED)').join(' ');
    await this.db.raw(
      `UPDATE accounts SET audited_entry_id = CASE user_id ${entryCase} END, audited_balance = CASE user_id ${balanceCase} END
        WHERE user_id IN (${ids.map(() => '?').join(',')})`,
      [...checks.flatMap((c) => [c.userId, c.lastId]), ...checks.flatMap((c) => [c.userId, c.balance]), ...ids],
    );
  }

  /** Users among `userIds` whose MySQL balance differs from the sum of their whole ledger (a full audit). */
  async ledgerMismatches(userIds: string[]): Promise<BalanceWithLedgerSum[]> {
    if (userIds.length === 0) return [];
    const rows: BalanceWithLedgerSum[] = await balancesWithLedgerSum(this.db).whereIn('a.user_id', userIds);
    return rows.map(asStrings).filter((u) => BigInt(u.balance) !== BigInt(u.ledger_sum));
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
      // The ledger is the truth; the next check verifies from its latest entry on.
      const last = await trx('ledger_entries').where({ user_id: userId }).max({ id: 'id' }).first();
      const balance = trx.raw('CAST(? AS SIGNED)', [row.ledger_sum]);
      await trx('accounts')
        .where({ user_id: userId })
        .update({ balance, audited_entry_id: last?.id ?? 0, audited_balance: balance });
      return { before: row.balance, after: row.ledger_sum };
    });
  }
}
