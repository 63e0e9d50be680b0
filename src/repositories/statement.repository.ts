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

const SERVICE_OF_DEDUCTION = "COALESCE(r.service_name, SUBSTRING_INDEX(l.note, ' ', 1), '')";

/** Sums of ledger entries over a time window: the figures of a monthly statement. */
export class StatementRepository {
  constructor(private readonly db: Db) {}

  /** The balance the ledger gives at `before`: the sum of every entry booked earlier. */
  async balanceBefore(userId: string, before: Date): Promise<bigint> {
    const row = await this.db('ledger_entries').where('user_id', userId).andWhere('created_at', '<', before).sum({ s: 'amount' }).first();
    return BigInt((row?.s as string | null) ?? 0);
  }

  /** Count and signed sum per entry type of the entries booked in [from, to). */
  async sumsByType(userId: string, from: Date, to: Date): Promise<EntryTypeSum[]> {
    return this.db('ledger_entries')
      .where('user_id', userId)
      .andWhere('created_at', '>=', from)
      .andWhere('created_at', '<', to)
      .groupBy('entry_type')
      .orderBy('entry_type')
      .select('entry_type', this.db.raw('COUNT(*) AS entries'), this.db.raw('SUM(amount) AS amount'));
  }

  /**
   * Deductions of [from, to) per service: a deduction's ref_id is its consumption record, which names
   * the service (the entry's note does too, written in the same transaction, as a fallback).
   */
  async chargesByService(userId: string, from: Date, to: Date): Promise<ServiceChargeSum[]> {
    return this.db({ l: 'ledger_entries' })
      .leftJoin({ r: 'consumption_records' }, (j) => j.on('r.record_id', 'l.ref_id').andOn('r.user_id', 'l.user_id'))
      .where('l.user_id', userId)
      .andWhere('l.entry_type', 'deduction')
      .andWhere('l.created_at', '>=', from)
      .andWhere('l.created_at', '<', to)
      .groupByRaw(SERVICE_OF_DEDUCTION)
      .orderBy('service_name')
      .select(this.db.raw(`${SERVICE_OF_DEDUCTION} AS service_name`), this.db.raw('COUNT(*) AS entries'), this.db.raw('SUM(l.amount) AS amount'));
  }
}
