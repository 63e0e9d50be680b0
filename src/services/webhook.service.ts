import { createHash, randomBytes } from 'node:crypto';
import { Queue, UnrecoverableError, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { EndpointRow, WebhookRepository } from '../repositories/webhook.repository.js';
import { eventOfRow, type EventRepository } from '../repositories/event.repository.js';
import { AppError } from '../lib/errors.js';
import { newId } from '../lib/ids.js';
import { signatureHeader, type BillingEvent, type EventType } from '../lib/events.js';
import type { WebhookBatchJob, WebhookDeliveryJob } from '../jobs/jobs.js';
import { webhookBackoff } from '../jobs/queues.js';
import { postOnce } from '../lib/http-post.js';

export interface WebhookOptions {
  /** retry a delivery for this long (SPEC 13: 3 days) */
  retryForMs: number;
  /** each attempt waits at most this long for a 2xx (SPEC 13: 10 s) */
  timeoutMs: number;
  /** a rotated secret keeps signing beside the new one this long */
  secretOverlapMs: number;
  /** the first retry's delay; each next one doubles, up to an hour */
  backoffBaseMs: number;
}

export interface WebhookServiceDeps {
  endpoints: WebhookRepository;
  events: EventRepository;
  connection: ConnectionOptions;
  queuePrefix: string;
  opts: WebhookOptions;
  clock: Clock;
  logger: Logger;
}

export interface EndpointView {
  id: string;
  url: string;
  events: string[];
  description: string;
  createdAt: string;
  /** until when the previous secret still signs, after a rotation */
  previousSecretUntil: string | null;
}

/** A delivery job ended before an attempt because its process is stopping: it goes back to wait, no attempt used. */
export class DeliveryInterrupted extends Error {
  constructor() {
    super('the delivering process is stopping; the job waits for the next one');
    this.name = 'DeliveryInterrupted';
  }
}

/** The job names of deliveries (one queue per endpoint, see queueName; payloads in src/jobs/jobs.ts). */
export const DELIVERY_JOB = 'deliver-webhook';
export const DELIVERY_BATCH_JOB = 'deliver-webhook-batch';
/**
 * A dispatch's events go to an endpoint in jobs of at most this many: a burst of 10,000 events costs
 * each endpoint 100 jobs instead of 10,000 (BullMQ's work per job was most of a delivery's CPU).
 */
const EVENTS_PER_BATCH_JOB = 100;
/** A batch job reads its endpoint again when it read it longer ago than this: a delete or a rotation reaches it. */
const ENDPOINT_FRESH_MS = 1_000;
/** At most this much of a receiver's answer is stored with an attempt. */
export const RESPONSE_EXCERPT_BYTES = 1024;
/**
 * Stored events kept in memory by the delivering process: an event goes to every endpoint that wants
 * it, and an event row never changes, so one MySQL read serves all of its deliveries.
 */
const EVENT_CACHE_SIZE = 10_000;

/** Enough attempts that the retries span `retryForMs` (the handler also stops once that has passed). */
export function attemptsFor(retryForMs: number, baseMs: number): number {
  let total = 0;
  let n = 1;
  while (total < retryForMs && n < 1000) total += webhookBackoff(n++, baseMs);
  return n;
}

/**
 * One queue per endpoint: a dead or slow endpoint's deliveries wait in its own queue, worked by its own
 * worker, so they never delay another endpoint's (nor anything on the gateway path, which only writes
 * events into journals). Queue names hold only the generated endpoint id, never caller text.
 */
export function queueName(endpointId: string): string {
  return `webhook-${endpointId}`;
}

const view = (r: EndpointRow): EndpointView => ({
  id: r.id,
  url: r.url,
  events: JSON.parse(r.events) as string[],
  description: r.description,
  createdAt: new Date(r.created_at).toISOString(),
  previousSecretUntil: r.previous_secret_until ? new Date(r.previous_secret_until).toISOString() : null,
});

/** Operators' webhook endpoints (SPEC 13) and the delivery of events to them. */
export class WebhookService {
  private readonly queues = new Map<string, Queue>();
  /** recent events by id, oldest first (see EVENT_CACHE_SIZE) */
  private readonly events = new Map<string, BillingEvent>();

  constructor(private readonly d: WebhookServiceDeps) {}

  private remember(event: BillingEvent): void {
    this.events.set(event.id, event);
    if (this.events.size > EVENT_CACHE_SIZE) this.events.delete(this.events.keys().next().value!);
  }

  /** A stored event, from memory when a delivery of it to another endpoint read it already. */
  private async storedEvent(id: string): Promise<BillingEvent | null> {
    return (await this.storedEvents([id])).get(id) ?? null;
  }

  /** Stored events by id (one MySQL read for those not in memory); an id not stored is left out. */
  private async storedEvents(ids: string[]): Promise<Map<string, BillingEvent>> {
    const found = new Map<string, BillingEvent>();
    const missing: string[] = [];
    for (const id of ids) {
      const cached = this.events.get(id);
      if (cached) found.set(id, cached);
      else missing.push(id);
    }
    for (const row of await this.d.events.byIds(missing)) {
      const event = eventOfRow(row);
      this.remember(event);
      found.set(event.id, event);
    }
    return found;
  }

  /** The delivery queue of an endpoint (created on first use; Bull Board and the worker find it by name). */
  queueOf(endpointId: string): Queue {
    let q = this.queues.get(endpointId);
    if (!q) {
      q = new Queue(queueName(endpointId), { connection: this.d.connection, prefix: this.d.queuePrefix });
      // Connection errors (a Redis restart) are logged; unheard, BullMQ prints them to stderr.
      q.on('error', (err) => this.d.logger.warn({ err: err.message, queue: queueName(endpointId) }, 'queue error'));
      this.queues.set(endpointId, q);
    }
    return q;
  }

  async activeEndpointIds(): Promise<string[]> {
    return (await this.d.endpoints.active()).map((e) => e.id);
  }

  /** The queues of every live endpoint (Bull Board). */
  async activeQueues(): Promise<Queue[]> {
    return (await this.d.endpoints.active()).map((e) => this.queueOf(e.id));
  }

  async create(input: { url: string; events: string[]; description?: string }) {
    const id = newId('we_', this.d.clock.now());
    const secret = `whsec_${randomBytes(24).toString('hex')}`;
    await this.d.endpoints.insert({
      id,
      url: input.url,
      events: JSON.stringify(input.events),
      description: input.description ?? '',
      secret,
    });
    this.queueOf(id);
    return { ...view((await this.d.endpoints.find(id))!), secret };
  }

  async list(): Promise<EndpointView[]> {
    return (await this.d.endpoints.active()).map(view);
  }

  private async endpoint(id: string): Promise<EndpointRow> {
    const row = await this.d.endpoints.find(id);
    if (!row) throw new AppError('NOT_FOUND', `webhook endpoint ${id} not found`);
    return row;
  }

  async get(id: string): Promise<EndpointView> {
    return view(await this.endpoint(id));
  }

  /** Stops deliveries to it: its queued jobs find no endpoint and end; its attempts stay listed. */
  async remove(id: string): Promise<void> {
    if (!(await this.d.endpoints.remove(id, this.d.clock.now())))
      throw new AppError('NOT_FOUND', `webhook endpoint ${id} not found`);
  }

  /** A new secret; the old one keeps signing beside it for the overlap window. */
  async rotateSecret(id: string) {
    const secret = `whsec_${randomBytes(24).toString('hex')}`;
    const until = new Date(this.d.clock.now().getTime() + this.d.opts.secretOverlapMs);
    if (!(await this.d.endpoints.rotate(id, secret, until)))
      throw new AppError('NOT_FOUND', `webhook endpoint ${id} not found`);
    return { ...view(await this.endpoint(id)), secret };
  }

  async deliveries(id: string, pageSize: number, cursor?: string, eventId?: string) {
    await this.endpoint(id);
    if (cursor !== undefined && !/^\d{1,20}$/.test(cursor))
      throw new AppError('VALIDATION_FAILED', 'bad cursor', [{ field: 'cursor', message: 'is not a cursor' }]);
    const rows = await this.d.endpoints.deliveries(id, pageSize + 1, cursor, eventId);
    const page = rows.slice(0, pageSize);
    return {
      deliveries: page.map((r) => ({
        id: String(r.id),
        eventId: r.event_id,
        attempt: r.attempt,
        statusCode: r.status_code,
        latencyMs: r.latency_ms,
        responseExcerpt: r.response_excerpt,
        error: r.error,
        delivered: r.delivered === 1,
        at: new Date(r.created_at).toISOString(),
      })),
      nextCursor: rows.length > pageSize ? String(page[page.length - 1].id) : null,
    };
  }

  private jobOptions(): JobsOptions {
    return {
      attempts: attemptsFor(this.d.opts.retryForMs, this.d.opts.backoffBaseMs),
      backoff: { type: 'webhook', delay: this.d.opts.backoffBaseMs },
      removeOnComplete: { age: 7 * 86_400, count: 10_000 },
      removeOnFail: { count: 10_000 },
    };
  }

  private wants(e: EndpointRow, type: EventType): boolean {
    const types = JSON.parse(e.events) as string[];
    return types.includes('*') || types.includes(type);
  }

  /**
   * The events' deliveries: for each endpoint, batch jobs of the events it wants, in order. A batch's job
   * id comes from its event ids and the endpoint, so the same dispatch queued again is a no-op.
   */
  async enqueueDeliveries(events: BillingEvent[]): Promise<void> {
    // The fan-out runs where the deliveries run: the batches then find their events in memory.
    for (const event of events) this.remember(event);
    const endpoints = await this.d.endpoints.active();
    // A batch job fails only when MySQL or Redis does (a receiver's failure goes on in a single job):
    // retried like a delivery, for as long, and a re-run skips the events already delivered.
    const opts = this.jobOptions();
    await Promise.all(
      endpoints.map((e) => {
        const ids = events.filter((ev) => this.wants(e, ev.type)).map((ev) => ev.id);
        const jobs = [];
        for (let i = 0; i < ids.length; i += EVENTS_PER_BATCH_JOB) {
          const eventIds = ids.slice(i, i + EVENTS_PER_BATCH_JOB);
          const digest = createHash('sha256').update(eventIds.join(',')).digest('hex').slice(0, 32);
          jobs.push({
            name: DELIVERY_BATCH_JOB,
            data: { endpointId: e.id, eventIds } satisfies WebhookBatchJob,
            opts: { ...opts, jobId: `batch-${digest}.${e.id}` },
          });
        }
        return jobs.length > 0 ? this.queueOf(e.id).addBulk(jobs) : null;
      }),
    );
  }

  /** An operator's re-send: a new job (its own id), whatever became of the earlier ones. */
  async resend(endpointId: string, eventId: string): Promise<{ jobId: string }> {
    await this.endpoint(endpointId);
    if (!(await this.d.events.byId(eventId))) throw new AppError('NOT_FOUND', `event ${eventId} not found`);
    const jobId = `${eventId}.${endpointId}.resend-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
    const data: WebhookDeliveryJob = { endpointId, eventId };
    await this.queueOf(endpointId).add(DELIVERY_JOB, data, { ...this.jobOptions(), jobId });
    return { jobId };
  }

  /**
   * One event's attempt (a deliver-webhook job): POSTs the signed event, records the attempt, and throws
   * for a retry unless a 2xx came within the timeout. Past the retry window, or for an endpoint or event
   * that is gone, it stops. `pace` holds the start to the endpoint's rate.
   */
  async deliver(
    job: WebhookDeliveryJob,
    attempt: number,
    firstQueuedAt: number,
    pace: () => Promise<void> = async () => undefined,
  ): Promise<{ statusCode: number }> {
    const endpoint = await this.d.endpoints.find(job.endpointId);
    if (!endpoint) throw new UnrecoverableError(`webhook endpoint ${job.endpointId} is gone`);
    const event = await this.storedEvent(job.eventId);
    if (!event) throw new UnrecoverableError(`event ${job.eventId} not found`);
    await pace();
    const outcome = await this.attempt(endpoint, event, attempt);
    await outcome.recorded;
    if (outcome.delivered) return { statusCode: outcome.statusCode! };
    if (Date.now() - firstQueuedAt >= this.d.opts.retryForMs)
      throw new UnrecoverableError(`${outcome.reason}; retried for the whole window, giving up`);
    throw new Error(outcome.reason);
  }

  /**
   * First attempts of a batch's events (a deliver-webhook-batch job), one after the other at the
   * endpoint's pace. Each event not delivered goes on alone: a deliver-webhook job (job id <event
   * id>.<endpoint id>), first retry after the backoff, attempts and retry window counted from here;
   * an event not stored goes on too, to fail visibly there. A re-run (the process died or stopped
   * meanwhile) sends none of the events it attempted already: delivered ones are skipped, the others
   * handed on again (a no-op when their job is queued). Throws DeliveryInterrupted when `stopping` turns
   * true between two attempts.
   */
  async deliverBatch(
    job: WebhookBatchJob,
    firstQueuedAt: number,
    pace: () => Promise<void> = async () => undefined,
    /** true once the process is stopping: the batch then ends between two attempts */
    stopping: () => boolean = () => false,
  ): Promise<{ delivered: number; handedOn: number; skipped: number }> {
    if (!Array.isArray(job.eventIds) || !job.eventIds.every((id) => typeof id === 'string'))
      throw new UnrecoverableError('a webhook batch job carries no list of event ids');
    const gone = () => new UnrecoverableError(`webhook endpoint ${job.endpointId} is gone`);
    let endpoint = await this.d.endpoints.find(job.endpointId);
    if (!endpoint) throw gone();
    let readAt = Date.now();
    const attempted = await this.d.endpoints.attemptedEvents(job.endpointId, job.eventIds);
    const events = await this.storedEvents(job.eventIds.filter((id) => !attempted.has(id)));
    const handOn: { eventId: string; attemptsBefore: number }[] = job.eventIds
      .filter((id) => attempted.get(id) === false)
      .map((eventId) => ({ eventId, attemptsBefore: 1 }));
    let delivered = 0;
    // The attempts' rows are written while the batch goes on (see recordAttempt), all in before it ends.
    const rows: Promise<void>[] = [];
    let failure: unknown = null;
    try {
      for (const id of job.eventIds) {
        if (attempted.has(id)) continue;
        const event = events.get(id);
        if (!event) {
          handOn.push({ eventId: id, attemptsBefore: 0 });
          continue;
        }
        await pace();
        // A dead endpoint's batch could wait out a timeout per event: a stopping process does not wait.
        if (stopping()) throw new DeliveryInterrupted();
        if (Date.now() - readAt >= ENDPOINT_FRESH_MS) {
          endpoint = await this.d.endpoints.find(job.endpointId);
          if (!endpoint) throw gone();
          readAt = Date.now();
        }
        const outcome = await this.attempt(endpoint, event, 1);
        rows.push(outcome.recorded);
        outcome.recorded.catch(() => undefined); // its failure is read below, once every row is settled
        if (outcome.delivered) delivered++;
        else handOn.push({ eventId: id, attemptsBefore: 1 });
      }
    } catch (err) {
      failure = err;
    }
    // However the batch ends: what it tried goes on alone now, not again in a re-run.
    const settled = await Promise.allSettled(rows);
    if (handOn.length > 0) await this.handOn(job.endpointId, handOn, firstQueuedAt);
    if (failure) throw failure;
    const unrecorded = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (unrecorded) throw unrecorded.reason;
    // skipped: delivered before this run
    return { delivered, handedOn: handOn.length, skipped: [...attempted.values()].filter(Boolean).length };
  }

  /** Single deliver-webhook jobs for events a batch did not deliver (job id <event>.<endpoint>: queued once). */
  private async handOn(
    endpointId: string,
    events: { eventId: string; attemptsBefore: number }[],
    firstQueuedAt: number,
  ): Promise<void> {
    const opts = this.jobOptions();
    await this.queueOf(endpointId).addBulk(
      events.map(({ eventId, attemptsBefore }) => ({
        name: DELIVERY_JOB,
        data: { endpointId, eventId, attemptsBefore, firstQueuedAt } satisfies WebhookDeliveryJob,
        opts: {
          ...opts,
          jobId: `${eventId}.${endpointId}`,
          delay: attemptsBefore > 0 ? webhookBackoff(attemptsBefore, this.d.opts.backoffBaseMs) : 0,
        },
      })),
    );
  }

  /**
   * POSTs the signed event once and records the attempt (the answer's status, latency, excerpt or
   * error): `recorded` settles when its row is in MySQL.
   */
  private async attempt(
    endpoint: EndpointRow,
    event: BillingEvent,
    attempt: number,
  ): Promise<{ delivered: boolean; statusCode: number | null; reason: string; recorded: Promise<void> }> {
    const body = JSON.stringify(event);
    const now = this.d.clock.now();
    const secrets = [endpoint.secret];
    if (endpoint.previous_secret && endpoint.previous_secret_until && new Date(endpoint.previous_secret_until) > now)
      secrets.push(endpoint.previous_secret);
    const started = Date.now();
    const { statusCode, excerpt, error } = await postOnce(endpoint.url, {
      headers: {
        'content-type': 'application/json',
        'user-agent': 'billing-webhooks/1',
        'x-billing-event-id': event.id,
        'x-billing-event-type': event.type,
        'x-billing-signature': signatureHeader(secrets, body, Math.floor(now.getTime() / 1000)),
      },
      body,
      timeoutMs: this.d.opts.timeoutMs,
      excerptBytes: RESPONSE_EXCERPT_BYTES,
    });
    const delivered = statusCode !== null && statusCode >= 200 && statusCode < 300;
    const recorded = this.d.endpoints.recordAttempt({
      endpoint_id: endpoint.id,
      event_id: event.id,
      attempt,
      status_code: statusCode,
      latency_ms: Date.now() - started,
      response_excerpt: excerpt,
      error,
      delivered: delivered ? 1 : 0,
    });
    return { delivered, statusCode, reason: error ?? `answered ${statusCode}`, recorded };
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
