import type { LedgerChange } from '../services/ledger-change.js';

/** Every queue of the service. Bull Board shows each of them. */
export const QueueNames = ['persistence', 'payments', 'maintenance'] as const;
export type QueueName = (typeof QueueNames)[number];

/** A job queued by a request carries the request's correlation id into the job's logs. */
interface Traced {
  correlationId?: string;
}

/** Job names with their payloads: the one place that says what a job carries. */
export interface JobPayloads {
  /** Write recorded Redis changes to MySQL, many per transaction; idempotent by change id. */
  'persist-changes': { changes: LedgerChange[] };
  /** Credit a paid recharge order exactly once. Job id pay-<order>-<payment>: duplicate callbacks collapse. */
  'apply-payment': { orderId: string; paymentId: string; paidAt: string } & Traced;
  /** Return one hold if it is still held at its expiry (delayed to the hold's TTL). */
  'expire-reservation': { userId: string; reservationId: string };
  /** Return every hold past its time that no expire-reservation job returned (scheduled sweep). */
  'expire-reservations': Record<string, never>;
  /** Delete quota hashes of months before the previous one (daily; idempotent). */
  'prune-quota-periods': Record<string, never>;
  /** A reconciliation run (scheduled, or on demand from the admin API). */
  reconcile: { trigger: 'schedule' | 'manual'; /** the run recorded when it was asked for */ runId?: number } & Traced;
  /** Re-enqueue journal entries older than the threshold that no job has persisted yet. */
  'sweep-pending': { olderThanMs?: number };
}

export type JobName = keyof JobPayloads;

/** Which queue each job runs on. */
export const JobQueue: { readonly [N in JobName]: QueueName } = {
  'persist-changes': 'persistence',
  'apply-payment': 'payments',
  'sweep-pending': 'maintenance',
  'expire-reservation': 'maintenance',
  'expire-reservations': 'maintenance',
  reconcile: 'maintenance',
  'prune-quota-periods': 'maintenance',
};
