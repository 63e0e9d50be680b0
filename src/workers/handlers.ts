import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { JobName, JobPayloads } from '../jobs/jobs.js';
import type { AccountService } from '../services/account.service.js';
import type { ArchiveService } from '../services/archive.service.js';
import { MalformedChangeError, type PersistenceService } from '../services/persistence.service.js';
import { UnconfirmedPaymentError, type RechargeService } from '../services/recharge.service.js';
import type { ReconciliationService } from '../services/reconciliation.service.js';
import type { ReservationService } from '../services/reservation.service.js';
import type { GrantService } from '../services/grant.service.js';
import { isAppError } from '../lib/errors.js';
import type { EventService } from '../services/event.service.js';
import { DeliveryInterrupted, DELIVERY_BATCH_JOB, type WebhookService } from '../services/webhook.service.js';
import type { WebhookBatchJob, WebhookDeliveryJob } from '../jobs/jobs.js';

/** What a job's handler does, and which of its errors no retry can fix (the job fails for good). */
export interface JobHandler<N extends JobName> {
  run(data: JobPayloads[N], job: Job<JobPayloads[N]>): Promise<unknown>;
  unrecoverable?(err: unknown): boolean;
}

export type JobHandlers = { readonly [N in JobName]: JobHandler<N> };

export interface HandlerDeps {
  persistence: PersistenceService;
  recharges: RechargeService;
  reservations: ReservationService;
  reconciliation: ReconciliationService;
  accounts: AccountService;
  archive: ArchiveService;
  grants: GrantService;
  /** stored events: their dispatch to webhook endpoints once persisted (SPEC 13) */
  events: Pick<EventService, 'dispatchPersisted' | 'dispatch' | 'dispatchLeftovers'>;
  webhooks: Pick<WebhookService, 'deliver' | 'deliverBatch' | 'activeEndpointIds'>;
  /** sweep-pending's threshold when the job does not say */
  sweepAfterMs: number;
  /** how long an account stays in Redis unchanged before evict-idle-accounts removes it */
  evictIdleAfterMs: number;
}

/** A job whose payload is not what its table entry says: no retry can fix it. */
class MalformedJobError extends Error {
  constructor() {
    super('malformed job payload');
  }
}

/** One handler per entry of the job table (src/jobs/jobs.ts): each a call into its service. */
export function jobHandlers(d: HandlerDeps): JobHandlers {
  return {
    'persist-changes': {
      // A change MySQL refuses is parked inside persist(); what is left to throw is worth a retry,
      // but for a payload that is no list of changes at all.
      run: async (data) => {
        const outcome = await d.persistence.persist(data.changes);
        // The events are stored (outbox) with the changes; queue their fan-out now. A failure here is
        // dispatch-events' to recover, not a reason to persist again.
        if (Array.isArray(data.changes)) await d.events.dispatchPersisted(data.changes);
        return outcome;
      },
      unrecoverable: (err) => err instanceof MalformedChangeError,
    },
    'dispatch-stored-events': {
      run: async (data) => {
        const ids = data.eventIds;
        if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw new MalformedJobError();
        return { dispatched: await d.events.dispatch(ids) };
      },
      unrecoverable: (err) => err instanceof MalformedJobError,
    },
    'dispatch-events': {
      run: async () => ({ dispatched: await d.events.dispatchLeftovers() }),
    },
    'apply-payment': {
      run: async (data) => ({
        outcome: await d.recharges.applyPayment(data.orderId, data.paymentId, new Date(data.paidAt)),
      }),
      unrecoverable: (err) =>
        (isAppError(err) && err.kind === 'ORDER_NOT_FOUND') || err instanceof UnconfirmedPaymentError,
    },
    'sweep-pending': {
      run: async (data) => {
        const given = data.olderThanMs;
        const olderThanMs = typeof given === 'number' && Number.isFinite(given) && given >= 0 ? given : d.sweepAfterMs;
        return { reenqueued: await d.persistence.sweep(olderThanMs) };
      },
    },
    'expire-reservation': {
      run: async (data) => ({ outcome: (await d.reservations.release(data.reservationId, 'expired')).outcome }),
    },
    'expire-reservations': {
      run: async () => ({ expired: await d.reservations.expireDue() }),
    },
    reconcile: {
      run: (data, job) =>
        d.reconciliation.run(data.trigger, (phase, done) => void job.updateProgress({ phase, done }), {
          full: data.full === true,
          runId: typeof data.runId === 'number' ? data.runId : undefined,
        }),
    },
    'evict-idle-accounts': {
      run: () => d.accounts.evictIdle(d.evictIdleAfterMs),
    },
    'archive-old-rows': {
      run: () => d.archive.run(),
    },
    'expire-grants': {
      run: () => d.grants.expireDue(),
    },
    'prune-quota-periods': {
      run: async () => ({ deleted: await d.accounts.prunePeriods() }),
    },
  };
}

/**
 * One webhook delivery job (the endpoint's own queue: see src/jobs/jobs.ts, WebhookDeliveryJob). A job
 * its process is stopping for (a batch between two attempts, or a job the CPU gate held until the stop)
 * goes back to wait without using an attempt: the next delivering process takes it up at once.
 */
export async function deliverWebhook(
  d: Pick<HandlerDeps, 'webhooks'>,
  job: Job<WebhookDeliveryJob | WebhookBatchJob>,
  pace: () => Promise<void>,
  stopping: () => boolean,
  token?: string,
) {
  try {
    if (stopping()) throw new DeliveryInterrupted();
    if (job.name === DELIVERY_BATCH_JOB)
      return await d.webhooks.deliverBatch(job.data as WebhookBatchJob, job.timestamp, pace, stopping);
    const data = job.data as WebhookDeliveryJob;
    const attempt = (data.attemptsBefore ?? 0) + job.attemptsMade + 1;
    return await d.webhooks.deliver(data, attempt, data.firstQueuedAt ?? job.timestamp, pace);
  } catch (err) {
    if (!(err instanceof DeliveryInterrupted) || !token) throw err;
    await job.moveToDelayed(Date.now(), token);
    throw new DelayedError();
  }
}

/** Runs a job by its name; an error the handler calls unrecoverable becomes bullmq's UnrecoverableError. */
export async function runJob<N extends JobName>(handlers: JobHandlers, job: Job<JobPayloads[N], unknown, N>) {
  const handler: JobHandler<N> | undefined = handlers[job.name];
  if (!handler) throw new Error(`no handler for job ${job.name}`);
  try {
    return await handler.run(job.data, job);
  } catch (err) {
    if (handler.unrecoverable?.(err)) throw new UnrecoverableError((err as Error).message);
    throw err;
  }
}
