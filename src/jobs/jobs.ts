import type { JobsOptions } from 'bullmq';
import type { LedgerChange } from '../lib/ledger-change.js';

/**
 * Every queue of the service. Bull Board shows each of them. `webhooks` is the events' fan-out to the
 * endpoints' delivery queues: worked with them, by the worker role or by a webhooks process of its own.
 */
export const QueueNames = ['persistence', 'payments', 'maintenance', 'webhooks'] as const;
export type QueueName = (typeof QueueNames)[number];

/** A job queued by a request carries the request's correlation id into the job's logs. */
interface Traced {
  correlationId?: string;
}

/** One job's declaration: its queue, its payload type, and retry options over the queue's defaults. */
export interface JobSpec<Payload> {
  readonly queue: QueueName;
  readonly options?: JobsOptions;
  /** type only: what the job carries */
  readonly payload?: Payload;
}

function job<Payload>(queue: QueueName, options?: JobsOptions): JobSpec<Payload> {
  return { queue, options };
}

/**
 * The job table: the one place that says what each job carries and where it runs. Adding a job is an
 * entry here plus its handler in src/workers/handlers.ts (the compiler asks for it).
 */
export const Jobs = {
  /** Write recorded Redis changes to MySQL, many per transaction; idempotent by change id. */
  'persist-changes': job<{ changes: LedgerChange[] }>('persistence'),
  /** Credit a paid recharge order exactly once. Job id pay-<order>-<payment>: duplicate callbacks collapse. */
  'apply-payment': job<{ orderId: string; paymentId: string; paidAt: string } & Traced>('payments'),
  /** Re-enqueue journal entries older than the threshold that no job has persisted yet. */
  'sweep-pending': job<{ olderThanMs?: number }>('maintenance'),
  /** Return one hold if it is still held at its expiry (delayed to the hold's TTL). */
  'expire-reservation': job<{ userId: string; reservationId: string }>('maintenance'),
  /** Return every hold past its time that no expire-reservation job returned (scheduled sweep). */
  'expire-reservations': job<Record<string, never>>('maintenance'),
  /**
   * A reconciliation run (scheduled, or on demand from the admin API). `full`: every account's whole
   * ledger (an on-demand audit) instead of what changed plus a slice.
   */
  reconcile: job<
    { trigger: 'schedule' | 'manual'; full?: boolean; /** recorded when asked for */ runId?: number } & Traced
  >('maintenance'),
  /** Remove from Redis the accounts idle longer than `redis.evict_idle_after` (MySQL holds them). */
  'evict-idle-accounts': job<Record<string, never>>('maintenance'),
  /** Move records and verified ledger entries past the retention horizon to the archive tables (daily). */
  'archive-old-rows': job<Record<string, never>>('maintenance'),
  /** End the credit grants past their expiry (their remainder leaves by the ledger); idempotent. */
  'expire-grants': job<Record<string, never>>('maintenance'),
  /** Delete quota hashes of months before the previous one (daily; idempotent). */
  'prune-quota-periods': job<Record<string, never>>('maintenance'),
  /**
   * Queue the webhook deliveries of the events a persistence job just stored (batch jobs of up to 100
   * events per endpoint); idempotent. Queued by persist-changes after its commit, so that the fan-out runs where the
   * deliveries run, not on the persisting worker.
   */
  'dispatch-stored-events': job<{ eventIds: string[] }>('webhooks'),
  /** Queue the webhook deliveries of stored events a crash left undispatched (scheduled; idempotent). */
  'dispatch-events': job<Record<string, never>>('webhooks'),
} as const;

export type JobName = keyof typeof Jobs;

/*
 * Webhook deliveries (SPEC 13) run in the endpoint's own queue `webhook-<endpoint id>`
 * (src/services/webhook.service.ts), not in the table above: those queues come and go with endpoints.
 */

/**
 * Job 'deliver-webhook-batch': the first attempt of each of a dispatch's events for one endpoint, in
 * order; one job and one endpoint read for many deliveries. Job id from the event ids and the endpoint,
 * so the same dispatch queued twice is queued once. An event it could not deliver goes on alone, as a
 * deliver-webhook job.
 */
export interface WebhookBatchJob {
  endpointId: string;
  eventIds: string[];
}

/**
 * Job 'deliver-webhook': one event's attempts, retried with the webhook backoff. Job id <event
 * id>.<endpoint id>, so an event is retried by one job per endpoint (a re-send has an id of its own).
 */
export interface WebhookDeliveryJob {
  endpointId: string;
  eventId: string;
  /** attempts made before this job (by the batch job that queued it): numbering and backoff go on from there */
  attemptsBefore?: number;
  /** when the event was first queued for this endpoint (unix ms): the retry window counts from there */
  firstQueuedAt?: number;
}

/** Job names with their payloads. */
export type JobPayloads = { [N in JobName]: (typeof Jobs)[N] extends JobSpec<infer P> ? P : never };
