import type { Scripts } from '../redis/scripts.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import type { PersistenceService } from './persistence.service.js';
import { deductPrint } from '../redis/idempotency.js';
import { formatMoney } from '../lib/money.js';

export interface RefundInput {
  refundId: string;
  userId: string;
  requestId: string;
  /** calls to refund; omitted: the whole call */
  count?: number;
}

export interface RefundResult {
  refundId: string;
  recordId: string;
  count: number;
  freeCount: number;
  paidCount: number;
  amount: string;
  balance: string;
  duplicate: boolean;
}

/** What RefundService is built from. */
export interface RefundServiceDeps {
  scripts: Scripts;
  catalogue: Pick<CatalogueService, 'services'>;
  persistence: Pick<PersistenceService, 'enqueue'>;
  calendar: BusinessCalendar;
  clock: Clock;
  idempotencyTtlMs: number;
  refundWindowMs: number;
}

/**
 * Refunds of deducts (SPEC 14), by request_id and idempotent by refund_id: one Lua script per refund,
 * answered from Redis, so a deduct not yet persisted can be refunded too. The record is what Redis
 * remembers of the deduct; this service only works out where its free calls came from.
 */
export class RefundService {
  constructor(private readonly d: RefundServiceDeps) {}

  async refund(input: RefundInput): Promise<RefundResult> {
    // A deduct of the request id may land between the read of its record and the refund's atomic step;
    // the step then changes nothing and says so, and the second read finds it (a record never goes
    // away within the window, so one retry is enough; the third try is only a bound).
    for (let attempt = 1; ; attempt++) {
      const result = await this.tryRefund(input);
      if (result) return result;
      if (attempt === 3) throw new Error(`refund ${input.refundId}: the record kept changing under it`);
    }
  }

  private async tryRefund({ refundId, userId, requestId, count }: RefundInput): Promise<RefundResult | null> {
    const { scripts, calendar } = this.d;
    const now = this.d.clock.now();
    const period = calendar.period(now);
    const record = await scripts.rememberedDeduct(userId, requestId, now, this.d.idempotencyTtlMs);
    const service = record ? this.serviceOf(record.fingerprint, record.free + record.paid) : '';
    // Free calls go back only to the month they were taken from, and only while it is the current one.
    const recordPeriod = record ? calendar.period(record.firstSeen) : period;
    const r = await scripts.refund({
      userId,
      period,
      refundId,
      requestId,
      record,
      count: count ?? null,
      returnFreeTo: service && recordPeriod === period ? service : null,
      change: {
        kind: 'refund',
        refundId,
        userId,
        recordId: record?.recordId ?? '',
        requestId,
        service,
        period: recordPeriod,
        day: calendar.day(now),
        at: now.toISOString(),
      },
      refundWindowMs: this.d.refundWindowMs,
      idempotencyTtlMs: this.d.idempotencyTtlMs,
      now,
    });
    if (!r) return null;
    if (r.journaled) this.d.persistence.enqueue(r.journaled);
    return {
      refundId,
      recordId: r.recordId,
      count: r.count,
      freeCount: r.free,
      paidCount: r.paid,
      amount: formatMoney(r.amount),
      balance: formatMoney(r.available),
      duplicate: r.duplicate,
    };
  }

  /**
   * The service a remembered deduct charged, told by its payload fingerprint (Redis keeps no name, to
   * stay within 64 bytes a request); '' when no service of the catalogue matches (one removed since).
   */
  private serviceOf(fingerprint: number, count: number): string {
    return this.d.catalogue.services.find((s) => deductPrint(s.name, count) === fingerprint)?.name ?? '';
  }
}
