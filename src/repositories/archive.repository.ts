import type { Db } from './database.js';

const byBytes = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Moves old rows to the archive tables, a chunk per transaction: each chunk is copied and deleted in
 * one transaction, so a row is always in exactly one of the two tables.
 */
export class ArchiveRepository {
  constructor(private readonly db: Db) {}

  /** Moves up to `limit` consumption records created before `before`. Returns how many moved. */
  async moveRecords(before: Date, limit: number): Promise<number> {
    return this.db.transaction(async (trx) => {
      const ids: string[] = await trx('consumption_records')
        .where('created_at', '<', before)
        .orderBy('id')
        .limit(limit)
        .forUpdate()
        .pluck('id');
      if (ids.length === 0) return 0;
      const columns = await this.columnsOf('consumption_records');
      await trx.raw(
        `INSERT INTO consumption_records_archive (${columns}) SELECT ${columns} FROM consumption_records
          WHERE id IN (${ids.map(() => '?').join(',')})`,
        ids,
      );
      await trx('consumption_records').whereIn('id', ids).del();
      return ids.length;
    });
  }

  /**
   * Moves up to `limit` ledger entries created before `before` that reconciliation has verified
   * (id ≤ the account's audited_entry_id), adding their sum to the account's archived_balance with
   * the account rows locked first, in the order persistence locks them: balance = archived_balance +
   * the ledger that is left holds at every commit. Returns how many moved.
   */
  async moveLedgerEntries(before: Date, limit: number): Promise<number> {
    return this.db.transaction(async (trx) => {
      const candidates: { id: string; user_id: string }[] = await trx('ledger_entries as l')
        .join('accounts as a', 'a.user_id', 'l.user_id')
        .where('l.created_at', '<', before)
        .andWhereRaw('l.id <= a.audited_entry_id')
        .orderBy('l.id')
        .limit(limit)
        .select('l.id', 'l.user_id');
      if (candidates.length === 0) return 0;
      const users = [...new Set(candidates.map((c) => c.user_id))].sort(byBytes);
      await trx('accounts').whereIn('user_id', users).orderBy('user_id').forUpdate().select('user_id');
      const ids = candidates.map((c) => c.id);
      const inIds = `(${ids.map(() => '?').join(',')})`;
      const sums: { user_id: string; s: string; last: string }[] = await trx('ledger_entries')
        .whereIn('id', ids)
        .groupBy('user_id')
        .select('user_id', trx.raw('SUM(amount) AS s'), trx.raw('MAX(id) AS last'));
      const columns = await this.columnsOf('ledger_entries');
      await trx.raw(
        `INSERT INTO ledger_entries_archive (${columns}) SELECT ${columns} FROM ledger_entries WHERE id IN ${inIds}`,
        ids,
      );
      await trx('ledger_entries').whereIn('id', ids).del();
      for (const row of sums) {
        await trx('accounts')
          .where({ user_id: row.user_id })
          .update({
            archived_balance: trx.raw('archived_balance + CAST(? AS SIGNED)', [String(row.s)]),
            archived_entry_id: trx.raw('GREATEST(archived_entry_id, ?)', [String(row.last)]),
          });
      }
      return ids.length;
    });
  }

  private readonly columns = new Map<string, string>();

  /** The table's columns, quoted, as listed by the server (the archive has them all, plus archived_at). */
  private async columnsOf(table: string): Promise<string> {
    let list = this.columns.get(table);
    if (!list) {
      const info = await this.db(table).columnInfo();
      list = Object.keys(info)
        .map((c) => `\`${c}\``)
        .join(', ');
      this.columns.set(table, list);
    }
    return list;
  }
}
