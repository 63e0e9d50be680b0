import type { ChangeEvent } from './events.js';

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
  /** the parts of `amount` credit grants paid, in the order taken: [grant id, amount]; the rest the balance */
  grants?: [grantId: string, amount: string][];
  /** events decided by the script in the same step (SPEC 13; src/redis/commands/includes/alerts.lua) */
  events?: ChangeEvent[];
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
  events?: ChangeEvent[];
}

/** A credit grant given to a user (SPEC 14): booked as the grant's first `grant_entries` row. */
export interface GrantChange {
  kind: 'grant';
  /** grant id (unique per user) */
  id: string;
  userId: string;
  amount: string;
  category: 'promotional' | 'paid';
  /** decimal string of an integer; lower is spent first */
  priority: string;
  /** ISO instant, or '' for never */
  expiresAt: string;
  note: string;
  at: string;
  /** events decided by the script in the same step (SPEC 13; src/redis/commands/includes/alerts.lua) */
  events?: ChangeEvent[];
}

/** What was left of a grant leaving it, past its expiry or voided: one `grant_entries` row. */
export interface GrantEndChange {
  kind: 'grant_end';
  /** grant id */
  id: string;
  userId: string;
  /** what was left (micro-units, >= 0) */
  amount: string;
  how: 'expired' | 'voided';
  at: string;
  /** events decided by the script in the same step (SPEC 13; src/redis/commands/includes/alerts.lua) */
  events?: ChangeEvent[];
}

/** The amount of a deduction the balance paid, or of a refund it got back (the rest: grants). */
export function balancePart(d: DeductionChange | RefundChange): bigint {
  return BigInt(d.amount) - (d.grants ?? []).reduce((sum, [, part]) => sum + BigInt(part), 0n);
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
  /**
   * the parts of `amount` given back to the credit grants that paid the call: [grant id, amount]; the
   * rest went to the balance
   */
  grants?: [grantId: string, amount: string][];
  /** events decided by the script in the same step (SPEC 13; src/redis/commands/includes/alerts.lua) */
  events?: ChangeEvent[];
}

/**
 * Events of a step that changed no money of its own: a call refused for balance (balance.depleted), a
 * released or expired hold. Journaled and persisted like any change; it books nothing but the events.
 */
export interface EventsChange {
  kind: 'events';
  id: string;
  userId: string;
  at: string;
  events: ChangeEvent[];
}

export type LedgerChange = DeductionChange | CreditChange | GrantChange | GrantEndChange | RefundChange | EventsChange;

export function isLedgerChange(value: unknown): value is LedgerChange {
  const c = value as Partial<DeductionChange | CreditChange | GrantChange | GrantEndChange | RefundChange> | null;
  const e = value as Partial<EventsChange> | null;
  if (e && typeof e === 'object' && e.kind === 'events') {
    return typeof e.id === 'string' && typeof e.userId === 'string' && Array.isArray(e.events);
  }
  return (
    !!c &&
    typeof c === 'object' &&
    typeof c.id === 'string' &&
    typeof c.userId === 'string' &&
    typeof c.amount === 'string' &&
    /^-?\d+$/.test(c.amount) &&
    (c.kind === 'deduction' ||
      c.kind === 'recharge' ||
      c.kind === 'adjustment' ||
      c.kind === 'grant' ||
      c.kind === 'grant_end' ||
      isRefundChange(c)) &&
    ((c.kind !== 'deduction' && c.kind !== 'refund') || c.grants === undefined || validGrantParts(c.grants))
  );
}

function validGrantParts(parts: unknown): boolean {
  return (
    Array.isArray(parts) &&
    parts.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && /^\d+$/.test(String(p[1])))
  );
}

function isRefundChange(
  c: Partial<DeductionChange | CreditChange | GrantChange | GrantEndChange | RefundChange>,
): boolean {
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
