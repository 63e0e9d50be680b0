import type { Knex } from 'knex';
import type { Db } from './database.js';

export interface RecordRow {
  id: string;
  record_id: string;
  request_id: string;
  service_name: string;
  type: string;
  count: number;
  free_count: number;
  paid_count: number;
  amount: string;
  /** the unit price the call was charged at (the user's own where set); null for a free-only service */
  unit_price: string | null;
  created_at: Date;
}

export interface RecordFilter {
  userId: string;
  serviceName?: string;
  type?: string;
  from?: Date;
  to?: Date;
}

/** Position after which the next page starts: the last row's (created_at, id). */
export interface RecordCursor {
  at: Date;
  id: string;
}

/** Live records, and those past the retention horizon (same columns and indexes). */
export type RecordTable = 'consumption_records' | 'consumption_records_archive';

/** A consumption record as an export reads it. */
export type ExportRow = RecordRow;

export interface UsageSums {
  total_count: string;
  free_count: string;
  paid_count: string;
  total_cost: string;
}

export interface ServiceUsageRow extends UsageSums {
  service_name: string;
}

export interface DailyUsageRow extends UsageSums {
  day: string;
}

const SUMS = (db: Knex) => [
  db.raw('COALESCE(SUM(total_count), 0) AS total_count'),
  db.raw('COALESCE(SUM(free_count), 0) AS free_count'),
  db.raw('COALESCE(SUM(paid_count), 0) AS paid_count'),
  db.raw('COALESCE(SUM(total_cost), 0) AS total_cost'),
];

/** The columns a record is listed and exported with. */
const RECORD_COLUMNS = [
  'id',
  'record_id',
  'request_id',
  'service_name',
  'type',
  'count',
  'free_count',
  'paid_count',
  'amount',
  'unit_price',
  'created_at',
];

/** Calls refunded and money returned so far, per record. */
export interface RefundedSums {
  count: number;
  amount: bigint;
}

export class UsageRepository {
  constructor(private readonly db: Db) {}

  /**
   * What persisted refunds gave back of each of these records (records are never updated by a refund:
   * a refund may be persisted before its record). Records without refunds are absent from the map.
   */
  async refundedOf(userId: string, recordIds: string[]): Promise<Map<string, RefundedSums>> {
    if (recordIds.length === 0) return new Map();
    const rows: { record_id: string; n: string; amount: string }[] = await this.db('refunds')
      .where('user_id', userId)
      .whereIn('record_id', [...new Set(recordIds)])
      .groupBy('record_id')
      .select('record_id', this.db.raw('SUM(count) AS n'), this.db.raw('SUM(amount) AS amount'));
    return new Map(rows.map((r) => [r.record_id, { count: Number(r.n), amount: BigInt(r.amount) }]));
  }

  private filtered(f: RecordFilter): Knex.QueryBuilder {
    const q = this.db('consumption_records').where('user_id', f.userId);
    if (f.serviceName) q.andWhere('service_name', f.serviceName);
    if (f.type) q.andWhere('type', f.type);
    if (f.from) q.andWhere('created_at', '>=', f.from);
    if (f.to) q.andWhere('created_at', '<', f.to);
    return q;
  }

  /**
   * Newest first. With a cursor the page starts right after it (an index range scan on
   * (user_id[, service_name], created_at, id), as fast on page 10,000 as on page 1); otherwise by offset.
   */
  async listRecords(f: RecordFilter, limit: number, offset: number, cursor?: RecordCursor): Promise<RecordRow[]> {
    const q = this.filtered(f);
    if (cursor) {
      q.andWhere((w) =>
        w
          .where('created_at', '<', cursor.at)
          .orWhere((x) => x.where('created_at', cursor.at).andWhere('id', '<', cursor.id)),
      );
    } else if (offset > 0) {
      q.offset(offset);
    }
    return q
      .orderBy([
        { column: 'created_at', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(limit)
      .select(...RECORD_COLUMNS);
  }

  /**
   * Number of records matching. Without a type or time filter it is read from the daily aggregates
   * (kept in the same transaction as the records, so it is exact) instead of counting rows, from
   * `keptFromDay` on: the first business day whose records are not archived (the aggregates count all).
   */
  async countRecords(f: RecordFilter, keptFromDay: string): Promise<number> {
    if (!f.type && !f.from && !f.to) {
      const q = this.db('usage_daily').where('user_id', f.userId).andWhere('day', '>=', keptFromDay);
      if (f.serviceName) q.andWhere('service_name', f.serviceName);
      const row = await q.first(this.db.raw('COALESCE(SUM(records), 0) AS n'));
      return Number(row?.n ?? 0);
    }
    const row = await this.filtered(f).count({ n: '*' }).first();
    return Number(row?.n ?? 0);
  }

  /** Sums over business days from..to inclusive (YYYY-MM-DD); all days when both are omitted. */
  async sums(userId: string, serviceName: string | undefined, from?: string, to?: string): Promise<UsageSums> {
    const q = this.db('usage_daily').where('user_id', userId);
    if (serviceName) q.andWhere('service_name', serviceName);
    if (from) q.andWhere('day', '>=', from);
    if (to) q.andWhere('day', '<=', to);
    return (await q.first(SUMS(this.db))) as UsageSums;
  }

  async sumsByService(userId: string): Promise<ServiceUsageRow[]> {
    return this.db('usage_daily')
      .where('user_id', userId)
      .groupBy('service_name')
      .orderBy('service_name')
      .select('service_name', ...SUMS(this.db));
  }

  async sumsByDay(userId: string, serviceName: string | undefined, from: string, to: string): Promise<DailyUsageRow[]> {
    const q = this.db('usage_daily').where('user_id', userId).andWhere('day', '>=', from).andWhere('day', '<=', to);
    if (serviceName) q.andWhere('service_name', serviceName);
    return q
      .groupBy('day')
      .orderBy('day')
      .select(this.db.raw("DATE_FORMAT(day, '%Y-%m-%d') AS day"), ...SUMS(this.db));
  }

  /**
   * Oldest first, the page after `after` in (created_at, id) order: each page is an index range scan
   * on (user_id[, service_name], created_at, id), so an export of any size reads in constant memory
   * and constant time per page.
   */
  async exportPage(
    f: RecordFilter,
    after: RecordCursor | undefined,
    limit: number,
    table: RecordTable = 'consumption_records',
  ): Promise<ExportRow[]> {
    // Left to itself MariaDB reads these pages by `ref` on user_id alone, from the user's first index
    // entry each time (a 1,000,000-record export took minutes); the forced index and the plain
    // `created_at >= at` make each page a range scan that starts at the cursor.
    const index = f.serviceName ? 'ix_records_user_service_time' : 'ix_records_user_time';
    const q = this.db.from(this.db.raw('?? FORCE INDEX (??)', [table, index])).where('user_id', f.userId);
    if (f.serviceName) q.andWhere('service_name', f.serviceName);
    if (f.from) q.andWhere('created_at', '>=', f.from);
    if (f.to) q.andWhere('created_at', '<', f.to);
    if (after) {
      q.andWhere('created_at', '>=', after.at).andWhere((w) =>
        w.where('created_at', '>', after.at).orWhere('id', '>', after.id),
      );
    }
    return q
      .orderBy([
        { column: 'created_at', order: 'asc' },
        { column: 'id', order: 'asc' },
      ])
      .limit(limit)
      .select(...RECORD_COLUMNS);
  }
}
