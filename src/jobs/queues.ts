import { Queue, type MinimalJob, type JobsOptions, type ConnectionOptions } from 'bullmq';
import { QueueNames, Jobs, type QueueName, type JobName, type JobPayloads } from './jobs.js';

/** Retries for jobs that touch MySQL: exponential from 500 ms, capped at 30 s (see backoffStrategy). */
export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 40,
  backoff: { type: 'capped-exponential', delay: 500 },
  removeOnComplete: { count: 1000, age: 3600 },
  removeOnFail: { count: 5000 },
};

/** Webhook retries never wait longer than this between attempts. */
const MAX_WEBHOOK_BACKOFF_MS = 3_600_000;

/** The delay before webhook retry `attemptsMade` (1: the first retry): doubling from `baseMs`, at most an hour. */
export function webhookBackoff(attemptsMade: number, baseMs: number): number {
  return Math.min(MAX_WEBHOOK_BACKOFF_MS, baseMs * 2 ** Math.max(0, attemptsMade - 1));
}

export function backoffStrategy(attemptsMade: number, type?: string, _err?: Error, job?: MinimalJob): number {
  // Webhook deliveries: doubling from the job's own base delay (webhooks.backoff_base), at most 1 h.
  if (type === 'webhook') {
    const backoff = job?.opts.backoff;
    // A retry queued by a batch job after its first attempt goes on with the doubling from there.
    const before = Number((job?.data as { attemptsBefore?: unknown } | undefined)?.attemptsBefore) || 0;
    return webhookBackoff(attemptsMade + before, (typeof backoff === 'object' ? backoff.delay : undefined) || 10_000);
  }
  if (type !== 'capped-exponential') return 1000;
  return Math.min(30_000, 500 * 2 ** Math.max(0, attemptsMade - 1));
}

/** The queues, typed by job name: `queues.add('persist-changes', { changes })`. */
export class JobQueues {
  readonly byName: Readonly<Record<QueueName, Queue>>;

  constructor(connection: ConnectionOptions, prefix: string) {
    const entries = QueueNames.map((name) => [
      name,
      new Queue(name, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS }),
    ]);
    this.byName = Object.fromEntries(entries);
  }

  queueOf(name: JobName): Queue {
    return this.byName[Jobs[name].queue];
  }

  add<N extends JobName>(name: N, data: JobPayloads[N], opts?: JobsOptions) {
    return this.queueOf(name).add(name, data, { ...Jobs[name].options, ...opts });
  }

  all(): Queue[] {
    return Object.values(this.byName);
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((q) => q.close()));
  }
}
