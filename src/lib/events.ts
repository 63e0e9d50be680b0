import { createHash, createHmac } from 'node:crypto';
import { formatMoney } from './money.js';

/** Every event type of SPEC 13. */
export const EVENT_TYPES = [
  'balance.low',
  'balance.recovered',
  'balance.depleted',
  'quota.low',
  'quota.exhausted',
  'recharge.paid',
  'recharge.failed',
  'reservation.expired',
  'refund.created',
  'grant.expired',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** An event as a Lua script decides it (src/redis/commands/includes/alerts.lua): string values only. */
export interface ChangeEvent {
  type: EventType;
  data: Record<string, string>;
}

/** An event as stored and delivered. */
export interface BillingEvent {
  id: string;
  type: EventType;
  userId: string;
  createdAt: string;
  data: Record<string, string>;
}

/** Data fields that the scripts give in micro-units and callers see as decimal strings (SPEC 2). */
const MONEY_FIELDS = new Set(['available', 'threshold', 'needed', 'amount', 'released', 'remaining']);

/**
 * The event id: derived from the user, the journal id of the change that carried it and its type, so
 * the same change persisted twice (a retried job) stores the event once. The user is part of it because
 * journal ids are unique per user only (grant ids, adjustment keys and refund ids are the caller's):
 * without it, two users' `grant_end:g1` changes made one id, and the second event was never stored.
 */
export function eventId(userId: string, changeJournalId: string, type: string): string {
  const digest = createHash('sha256').update(`${userId}\u0000${changeJournalId}\u0000${type}`).digest('hex');
  return `evt_${digest.slice(0, 32)}`;
}

/** The stored form of one event a change carried. */
export function eventOf(changeJournalId: string, userId: string, at: string, e: ChangeEvent): BillingEvent {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.data ?? {})) {
    data[k] = MONEY_FIELDS.has(k) && /^-?\d+$/.test(v) ? formatMoney(BigInt(v)) : String(v);
  }
  return { id: eventId(userId, changeJournalId, e.type), type: e.type, userId, createdAt: at, data };
}

/**
 * X-Billing-Signature (SPEC 13): `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, one v1 per
 * secret (two while a rotated secret's overlap lasts, as Stripe does): a receiver accepts either.
 */
export function signatureHeader(secrets: string[], body: string, unixSeconds: number): string {
  const parts = secrets.map((s) => `v1=${createHmac('sha256', s).update(`${unixSeconds}.${body}`).digest('hex')}`);
  return [`t=${unixSeconds}`, ...parts].join(',');
}
