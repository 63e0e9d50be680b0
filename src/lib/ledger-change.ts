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
}

export type LedgerChange = DeductionChange | CreditChange | GrantChange | GrantEndChange;

/** The amount of a deduction that the balance paid (the rest was paid by grants). */
export function balancePart(d: DeductionChange): bigint {
  return BigInt(d.amount) - (d.grants ?? []).reduce((sum, [, part]) => sum + BigInt(part), 0n);
}

export function isLedgerChange(value: unknown): value is LedgerChange {
  const c = value as Partial<LedgerChange> | null;
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
      c.kind === 'grant_end') &&
    (c.kind !== 'deduction' || c.grants === undefined || validGrantParts(c.grants))
  );
}

function validGrantParts(parts: unknown): boolean {
  return (
    Array.isArray(parts) &&
    parts.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && /^\d+$/.test(String(p[1])))
  );
}

/** The change's field in the user's pending journal (credit ids are only unique per kind). */
export function journalId(change: Pick<LedgerChange, 'kind' | 'id'>): string {
  return change.kind === 'deduction' ? change.id : `${change.kind}:${change.id}`;
}
