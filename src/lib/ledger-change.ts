/**
 * A change made in Redis and waiting to be written to MySQL. The Lua script that makes the change
 * writes this JSON into the user's pending journal in the same atomic step; the persistence job
 * writes it to MySQL idempotently (by `id`) and then removes it from the journal.
 *
 * Amounts and counts are decimal strings of integers (micro-units for amounts): JSON numbers would
 * pass through doubles.
 */
export interface DeductionChange {
  kind: 'deduction';
  /** record id: unique key of the consumption record and of its ledger entry */
  id: string;
  userId: string;
  requestId: string;
  service: string;
  count: string;
  free: string;
  paid: string;
  amount: string;
  /** '' for a free-only service */
  unitPrice: string;
  /** YYYYMM of the quota charged */
  period: string;
  /** business day (YYYY-MM-DD) for the daily aggregates */
  day: string;
  /** ISO instant the change was accepted */
  at: string;
}

/** A balance change that is not a call: a paid recharge order, an operator adjustment. */
export interface CreditChange {
  kind: 'recharge' | 'adjustment';
  /** order id or adjustment key: unique key of the ledger entry */
  id: string;
  userId: string;
  /** signed micro-units */
  amount: string;
  note: string;
  at: string;
}

/**
 * Calls of one deduct given back (refund-9.lua): the paid part's amount to the balance, the free part
 * (`freeReturned` of `free`) to the quota of `period`, the month the calls were taken from.
 */
export interface RefundChange {
  kind: 'refund';
  /** refund key (rfd_...): unique key of the refund row and of its ledger entry */
  id: string;
  /** the caller's refund id */
  refundId: string;
  userId: string;
  recordId: string;
  requestId: string;
  /** the record's service; '' when it is no longer in the catalogue */
  service: string;
  /** YYYYMM the record's free calls were taken from */
  period: string;
  /** business day of the refund, for the daily aggregates */
  day: string;
  count: string;
  free: string;
  paid: string;
  /** micro-units returned (positive) */
  amount: string;
  /** free calls given back to the quota: `free`, or 0 when the record's month is over */
  freeReturned: string;
  at: string;
}

export type LedgerChange = DeductionChange | CreditChange | RefundChange;

export function isLedgerChange(value: unknown): value is LedgerChange {
  const c = value as Partial<LedgerChange> | null;
  return (
    !!c &&
    typeof c === 'object' &&
    typeof c.id === 'string' &&
    typeof c.userId === 'string' &&
    typeof c.amount === 'string' &&
    /^-?\d+$/.test(c.amount) &&
    (c.kind === 'deduction' || c.kind === 'recharge' || c.kind === 'adjustment' || isRefundChange(c))
  );
}

function isRefundChange(c: Partial<LedgerChange>): boolean {
  if (c.kind !== 'refund') return false;
  const r = c as Partial<RefundChange>;
  const counts = [r.count, r.free, r.paid, r.freeReturned];
  return (
    counts.every((n) => typeof n === 'string' && /^\d+$/.test(n)) &&
    [r.refundId, r.recordId, r.requestId, r.service, r.period, r.day, r.at].every((v) => typeof v === 'string')
  );
}

/** The change's field in the user's pending journal (credit ids are only unique per kind). */
export function journalId(change: Pick<LedgerChange, 'kind' | 'id'>): string {
  return change.kind === 'deduction' ? change.id : `${change.kind}:${change.id}`;
}
