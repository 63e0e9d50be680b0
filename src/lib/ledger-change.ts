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

export type LedgerChange = DeductionChange | CreditChange | EventsChange;

export function isLedgerChange(value: unknown): value is LedgerChange {
  const c = value as Partial<DeductionChange | CreditChange> | null;
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
    (c.kind === 'deduction' || c.kind === 'recharge' || c.kind === 'adjustment')
  );
}

/** The change's field in the user's pending journal (credit ids are only unique per kind). */
export function journalId(change: Pick<LedgerChange, 'kind' | 'id'>): string {
  return change.kind === 'deduction' ? change.id : `${change.kind}:${change.id}`;
}
