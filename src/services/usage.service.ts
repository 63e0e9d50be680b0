import type { UsageRepository, RecordCursor, UsageSums } from '../repositories/usage.repository.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';

export interface RecordQuery {
  userId: string;
  serviceName?: string;
  type?: 'free' | 'balance' | 'mixed';
  from?: string;
  to?: string;
  page: number;
  pageSize: number;
  cursor?: string;
}

const MAX_DAILY_RANGE = 366;
/** Offset pages reach this many records at most (SPEC 2: deep paging is what the cursor is for). */
export const MAX_OFFSET_ROWS = 10_000;

function sums(s: UsageSums) {
  return {
    totalCount: Number(s.total_count),
    freeCount: Number(s.free_count),
    paidCount: Number(s.paid_count),
    totalCost: formatMoney(BigInt(s.total_cost)),
  };
}

export function encodeCursor(c: RecordCursor): string {
  return Buffer.from(`${c.at.getTime()}.${c.id}`).toString('base64url');
}

export function decodeCursor(text: string): RecordCursor {
  const m = /^(\d{1,15})\.(\d{1,20})$/.exec(Buffer.from(text, 'base64url').toString());
  if (!m)
    throw new AppError('VALIDATION_FAILED', 'invalid cursor', [
      { field: 'cursor', message: 'is not a cursor this service issued' },
    ]);
  return { at: new Date(Number(m[1])), id: m[2] };
}

/** Consumption records and call statistics, read from MySQL (they reflect persisted deductions). */
export class UsageService {
  constructor(
    private readonly usage: UsageRepository,
    private readonly catalogue: CatalogueService,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    /** the first instant whose records are kept (older ones are archived) */
    private readonly keptFrom: () => Date,
  ) {}

  /** A bound given as a business day covers the whole day; a full ISO timestamp is taken as it is. */
  private instant(value: string, field: string, endOfDay: boolean): Date {
    // The date part must be a real day (Date.parse would roll 2026-02-30 over to 2 March).
    if (!this.calendar.isValidDay(value.slice(0, 10))) {
      throw new AppError('VALIDATION_FAILED', `invalid ${field}`, [
        { field, message: 'must be a real date YYYY-MM-DD (1970-9999), or an ISO 8601 timestamp on one' },
      ]);
    }
    if (value.length === 10) return this.calendar.startOfDay(endOfDay ? this.calendar.addDays(value, 1) : value);
    const t = Date.parse(value);
    if (Number.isNaN(t))
      throw new AppError('VALIDATION_FAILED', `invalid ${field}`, [
        { field, message: 'must be a date (YYYY-MM-DD) or an ISO 8601 timestamp' },
      ]);
    return new Date(t);
  }

  async records(q: RecordQuery) {
    if (q.serviceName) this.catalogue.get(q.serviceName);
    // Offset paging reads and throws away every row before the page: bounded; deeper pages use the cursor.
    if (!q.cursor && (q.page - 1) * q.pageSize >= MAX_OFFSET_ROWS) {
      throw new AppError('VALIDATION_FAILED', 'page too deep for offset paging', [
        {
          field: 'page',
          message: `page × page_size must stay within ${MAX_OFFSET_ROWS} records; follow nextCursor to go deeper`,
        },
      ]);
    }
    const filter = {
      userId: q.userId,
      serviceName: q.serviceName,
      type: q.type,
      from: q.from ? this.instant(q.from, 'from', false) : undefined,
      to: q.to ? this.instant(q.to, 'to', true) : undefined,
    };
    const cursor = q.cursor ? decodeCursor(q.cursor) : undefined;
    const [rows, total] = await Promise.all([
      this.usage.listRecords(filter, q.pageSize + 1, (q.page - 1) * q.pageSize, cursor),
      this.usage.countRecords(filter, this.calendar.day(this.keptFrom())),
    ]);
    const page = rows.slice(0, q.pageSize);
    const last = page[page.length - 1];
    const refunded = await this.usage.refundedOf(
      q.userId,
      page.map((r) => r.record_id),
    );
    return {
      records: page.map((r) => ({
        id: r.record_id,
        requestId: r.request_id,
        serviceName: r.service_name,
        type: r.type,
        count: Number(r.count),
        freeCount: Number(r.free_count),
        paidCount: Number(r.paid_count),
        amount: formatMoney(BigInt(r.amount)),
        unitPrice: r.unit_price === null ? null : formatMoney(BigInt(r.unit_price)),
        refundedCount: refunded.get(r.record_id)?.count ?? 0,
        refundedAmount: formatMoney(refunded.get(r.record_id)?.amount ?? 0n),
        createdAt: new Date(r.created_at).toISOString(),
      })),
      total,
      page: q.page,
      pageSize: q.pageSize,
      nextCursor:
        rows.length > q.pageSize && last ? encodeCursor({ at: new Date(last.created_at), id: String(last.id) }) : null,
    };
  }

  async today(userId: string, serviceName?: string) {
    if (serviceName) this.catalogue.get(serviceName);
    const day = this.calendar.day(this.clock.now());
    const s = await this.usage.sums(userId, serviceName, day, day);
    return { userId, serviceName: serviceName ?? null, period: 'today' as const, day, ...sums(s) };
  }

  async month(userId: string, serviceName?: string) {
    if (serviceName) this.catalogue.get(serviceName);
    const { from, to } = this.calendar.monthDays(this.clock.now());
    const s = await this.usage.sums(userId, serviceName, from, to);
    return { userId, serviceName: serviceName ?? null, period: 'month' as const, month: from.slice(0, 7), ...sums(s) };
  }

  async summary(userId: string) {
    const rows = await this.usage.sumsByService(userId);
    const services = rows.map((r) => ({ serviceName: r.service_name, ...sums(r) }));
    const totalCost = rows.reduce((a, r) => a + BigInt(r.total_cost), 0n);
    return {
      userId,
      totalCount: services.reduce((a, s) => a + s.totalCount, 0),
      totalCost: formatMoney(totalCost),
      services,
    };
  }

  /** One row per business day from..to inclusive (default: the last 30 days), zeros included. */
  async daily(userId: string, serviceName?: string, from?: string, to?: string) {
    if (serviceName) this.catalogue.get(serviceName);
    for (const [field, v] of [
      ['from', from],
      ['to', to],
    ] as const) {
      if (v !== undefined && !this.calendar.isValidDay(v))
        throw new AppError('VALIDATION_FAILED', `invalid ${field}`, [{ field, message: 'must be a date YYYY-MM-DD' }]);
    }
    const end = to ?? this.calendar.day(this.clock.now());
    const start = from ?? this.calendar.addDays(end, -29);
    // Bounded before a single day is listed: the span is arithmetic on the two labels.
    const span = this.calendar.spanDays(start, end);
    if (span === 0)
      throw new AppError('VALIDATION_FAILED', 'from is after to', [{ field: 'from', message: 'must not be after to' }]);
    if (span > MAX_DAILY_RANGE)
      throw new AppError('VALIDATION_FAILED', 'range too long', [
        { field: 'to', message: `at most ${MAX_DAILY_RANGE} days after from` },
      ]);
    const days = this.calendar.daysBetween(start, end);
    const rows = new Map((await this.usage.sumsByDay(userId, serviceName, start, end)).map((r) => [r.day, r]));
    const zero: UsageSums = { total_count: '0', free_count: '0', paid_count: '0', total_cost: '0' };
    return {
      userId,
      serviceName: serviceName ?? null,
      from: start,
      to: end,
      days: days.map((day) => ({ day, ...sums(rows.get(day) ?? zero) })),
    };
  }
}
