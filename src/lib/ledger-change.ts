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

export type LedgerChange = DeductionChange | CreditChange;

export function isLedgerChange(value: unknown): value is LedgerChange {
  const c = value as Partial<LedgerChange> | null;
  return (
    !!c &&
    typeof c === 'object' &&
    typeof c.id === 'string' &&
    typeof c.userId === 'string' &&
    typeof c.amount === 'string' &&
    /^-?\d+$/.test(c.amount) &&
    (c.kind === 'deduction' || c.kind === 'recharge' || c.kind === 'adjustment')
  );
}

/** The change's field in the user's pending journal (credit ids are only unique per kind). */
export function journalId(change: Pick<LedgerChange, 'kind' | 'id'>): string {
  return change.kind === 'deduction' ? change.id : `${change.kind}:${change.id}`;
}
