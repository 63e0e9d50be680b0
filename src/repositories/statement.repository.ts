import type { Db } from './database.js';

export interface EntryTypeSum {
  entry_type: string;
  entries: string;
  amount: string;
}

export interface ServiceChargeSum {
  service_name: string;
  entries: string;
  amount: string;
}

/**
 * The ledger is the live table plus the entries moved past the retention horizon (same columns):
 * every figure reads both, so archiving a month changes no statement.
 */
const LEDGERS = ['ledger_entries', 'ledger_entries_archive'] as const;
const SERVICE_OF_DEDUCTION = "COALESCE(r.service_name, ra.service_name, SUBSTRING_INDEX(l.note, ' ', 1), '')";

/** Adds up rows of the same key read from each ledger table. */
function merge<T extends { entries: string; amount: string }>(rows: T[], key: (r: T) => string): T[] {
  const byKey = new Map<string, T>();
  for (const r of rows) {
    const seen = byKey.get(key(r));
    byKey.set(
      key(r),
      seen
        ? {
            ...seen,
            entries: String(Number(seen.entries) + Number(r.entries)),
            amount: String(BigInt(seen.amount) + BigInt(r.amount)),
          }
        : r,
    );
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
}

/** Sums of ledger entries over a time window: the figures of a monthly statement. */
export class StatementRepository {
  constructor(private readonly db: Db) {}

  /** The balance the ledger gives at `before`: the sum of every entry booked earlier. */
  async balanceBefore(userId: string, before: Date): Promise<bigint> {
    const sums = await Promise.all(
      LEDGERS.map((t) =>
        this.db(t).where('user_id', userId).andWhere('created_at', '<', before).sum({ s: 'amount' }).first(),
      ),
    );
    return sums.reduce((acc, row) => acc + BigInt((row?.s as string | null) ?? 0), 0n);
  }

  /** What the user's credit grants held at `before`: the sum of every grant entry booked earlier. */
  async grantBalanceBefore(userId: string, before: Date): Promise<bigint> {
    const row = await this.db('grant_entries')
      .where('user_id', userId)
      .andWhere('created_at', '<', before)
      .sum({ s: 'amount' })
      .first();
    return BigInt((row?.s as string | null) ?? 0);
  }

  /** Count and signed sum per entry type of the grant entries booked in [from, to). */
  async grantSumsByType(userId: string, from: Date, to: Date): Promise<EntryTypeSum[]> {
    return this.db('grant_entries')
      .where('user_id', userId)
      .andWhere('created_at', '>=', from)
      .andWhere('created_at', '<', to)
      .groupBy('entry_type')
      .orderBy('entry_type')
      .select('entry_type', this.db.raw('COUNT(*) AS entries'), this.db.raw('SUM(amount) AS amount')) as Promise<
      EntryTypeSum[]
    >;
  }

  /** Count and signed sum per entry type of the entries booked in [from, to). */
  async sumsByType(userId: string, from: Date, to: Date): Promise<EntryTypeSum[]> {
    const parts = await Promise.all(
      LEDGERS.map(
        (t) =>
          this.db(t)
            .where('user_id', userId)
            .andWhere('created_at', '>=', from)
            .andWhere('created_at', '<', to)
            .groupBy('entry_type')
            .select('entry_type', this.db.raw('COUNT(*) AS entries'), this.db.raw('SUM(amount) AS amount')) as Promise<
            EntryTypeSum[]
          >,
      ),
    );
    return merge(parts.flat(), (r) => r.entry_type);
  }

  /**
   * Deductions of [from, to) per service: a deduction's ref_id is its consumption record (live or
   * archived), which names the service; the entry's note, written in the same transaction, is the
   * fallback.
   */
  async chargesByService(userId: string, from: Date, to: Date): Promise<ServiceChargeSum[]> {
    const parts = await Promise.all(
      LEDGERS.map(
        (t) =>
          this.db({ l: t })
            .leftJoin({ r: 'consumption_records' }, (j) =>
              j.on('r.record_id', 'l.ref_id').andOn('r.user_id', 'l.user_id'),
            )
            .leftJoin({ ra: 'consumption_records_archive' }, (j) =>
              j.on('ra.record_id', 'l.ref_id').andOn('ra.user_id', 'l.user_id'),
            )
            .where('l.user_id', userId)
            .andWhere('l.entry_type', 'deduction')
            .andWhere('l.created_at', '>=', from)
            .andWhere('l.created_at', '<', to)
            .groupByRaw(SERVICE_OF_DEDUCTION)
            .select(
              this.db.raw(`${SERVICE_OF_DEDUCTION} AS service_name`),
              this.db.raw('COUNT(*) AS entries'),
              this.db.raw('SUM(l.amount) AS amount'),
            ) as Promise<ServiceChargeSum[]>,
      ),
    );
    return merge(parts.flat(), (r) => r.service_name);
  }
}
