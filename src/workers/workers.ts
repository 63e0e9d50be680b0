import { Worker, type Job } from 'bullmq';
import type { Config } from '../config/config.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { JobQueues } from '../jobs/queues.js';
import { createRedis } from '../redis/connection.js';
import { QueueNames, type JobName, type JobPayloads, type QueueName } from '../jobs/jobs.js';
import { backoffStrategy } from '../jobs/queues.js';
import { deliverWebhook, jobHandlers, runJob, type HandlerDeps } from './handlers.js';
import { queueName } from '../services/webhook.service.js';
import type { WebhookBatchJob, WebhookDeliveryJob } from '../jobs/jobs.js';
import { pacer } from '../lib/pacer.js';
import { cpuGate, type CpuGateOptions } from '../lib/cpu-gate.js';

/** How often the worker looks for webhook endpoints created or deleted since (their queues come and go). */
const ENDPOINT_POLL_MS = 2_000;
/** Deliveries in flight per endpoint: a slow endpoint holds only its own. */
const DELIVERIES_PER_ENDPOINT = 4;
/** While the machine's CPU is busy, a delivery waits at most this long before it goes on anyway. */
const CPU_MAX_HOLD_MS = 5_000;
/** How often the delivering process reads the machine's CPU use. */
const CPU_SAMPLE_MS = 500;

type AnyJob = Job<JobPayloads[JobName], unknown, JobName>;

/** How long a stopping worker lets its running jobs finish before it closes by force. */
const CLOSE_GRACE_MS = 10_000;

/** The start-up sweep runs this long after a worker starts and takes journal entries at least this old. */
const START_SWEEP_AFTER_MS = 3_000;

/** The correlation id of the request that queued the job, else the job id. */
const correlationOf = (job: AnyJob | undefined) =>
  (job?.data as { correlationId?: string } | undefined)?.correlationId ?? job?.id;

/** What the workers use: the handlers' services, the queue settings, a Redis URL for their own connection. */
export interface WorkerDeps extends HandlerDeps {
  /** deliveries started per second and webhook endpoint (webhooks.max_per_second_per_endpoint) */
  webhookRate: number;
  /**
   * Deliveries wait while other work keeps the machine's CPU busier than `holdAbovePercent`
   * (webhooks.yield_above_cpu_percent); `leaveOutOwn` when the process does nothing but deliver. Tests
   * may set how long a wait lasts at most (default CPU_MAX_HOLD_MS) and feed /proc/stat.
   */
  webhookCpuGate: Pick<CpuGateOptions, 'holdAbovePercent' | 'leaveOutOwn'> &
    Partial<Pick<CpuGateOptions, 'maxHoldMs' | 'readStat'>>;
  redisUrl: string;
  /** the Redis of the webhook delivery queues (webhooks.redis_url, else redisUrl) */
  deliveryRedisUrl: string;
  queue: Config['queue'];
  queues: Pick<JobQueues, 'add'>;
  logger: Logger;
  metrics: Pick<Metrics, 'jobDuration' | 'persistenceLag'>;
}

/** Starts one BullMQ worker per queue, dispatching each job to its handler by job name. */
export function startWorkers(
  d: WorkerDeps,
  queues: readonly QueueName[] = QueueNames,
  /** the webhook endpoints' delivery workers too (default: when every queue is worked) */
  withWebhooks = queues === QueueNames,
): { workers: Worker<JobPayloads[JobName], unknown, JobName>[]; close(): Promise<void> } {
  const handlers = jobHandlers(d);
  const connection = createRedis(d.redisUrl, 'blocking');
  const workers = queues.map((queue) => {
    const worker = new Worker<JobPayloads[JobName], unknown, JobName>(
      queue,
      async (job) => {
        const log = d.logger.child({
          job: job.name,
          jobId: job.id,
          attempt: job.attemptsMade + 1,
          correlationId: correlationOf(job),
        });
        const stop = d.metrics.jobDuration.startTimer({ job: job.name });
        try {
          const result = await runJob(handlers, job);
          stop({ result: 'ok' });
          const lag = (result as { lagMs?: number } | undefined)?.lagMs;
          if (typeof lag === 'number') d.metrics.persistenceLag.observe(lag / 1000);
          log.debug('job done');
          return result;
        } catch (err) {
          stop({ result: 'failed' });
          throw err;
        }
      },
      {
        connection,
        prefix: d.queue.prefix,
        // The fan-out one job at a time: two dispatches reading the same undispatched events at once
        // would queue them twice, in batches of other ids.
        concurrency: queue === 'webhooks' ? 1 : d.queue.workerConcurrency,
        lockDuration: d.queue.lockDurationMs,
        stalledInterval: d.queue.stalledIntervalMs,
        settings: { backoffStrategy },
      },
    );
    worker.on('failed', (job, err) =>
      d.logger.warn(
        {
          job: job?.name,
          jobId: job?.id,
          correlationId: correlationOf(job),
          attempts: job?.attemptsMade,
          err: err.message,
        },
        'job failed',
      ),
    );
    worker.on('error', (err) => d.logger.error({ err: err.message, queue }, 'worker error'));
    return worker;
  });
  const webhooks = withWebhooks ? startWebhookWorkers(d) : { close: async () => undefined };
  // What a dead process left unpersisted (its buffer, a job it never enqueued) is recovered at once,
  // not at the sweep's usual age: entries older than a few seconds are past any live API's buffer.
  if (queues.includes('persistence')) {
    void d.queues
      .add('sweep-pending', { olderThanMs: START_SWEEP_AFTER_MS }, { delay: START_SWEEP_AFTER_MS })
      .catch((err: Error) =>
        d.logger.warn({ err: err.message }, 'start-up sweep not queued; the scheduled one follows'),
      );
  }
  return {
    workers,
    /**
     * Lets running jobs finish for CLOSE_GRACE_MS, then forces the close: after a Redis restart
     * BullMQ's close can wait forever on the reconnecting blocking connection. A job cut short is
     * stalled and runs again elsewhere (every job is idempotent).
     */
    async close() {
      const closed = Promise.all([...workers.map((w) => w.close()), webhooks.close()]).then(() => true);
      const inTime = await Promise.race([
        closed,
        new Promise<false>((r) => setTimeout(() => r(false), CLOSE_GRACE_MS).unref()),
      ]);
      if (!inTime) {
        d.logger.warn({ graceMs: CLOSE_GRACE_MS }, 'workers did not stop in time; closing them by force');
        connection.disconnect();
        await Promise.race([
          Promise.all(workers.map((w) => w.close(true))),
          new Promise((r) => setTimeout(r, 2_000).unref()),
        ]);
      }
      await connection.quit().catch(() => undefined);
    },
  };
}

/**
 * One BullMQ worker per webhook endpoint, on the endpoint's own queue (see webhook.service.ts): a dead
 * endpoint's attempts wait out their timeouts in its worker alone. Endpoints created or deleted are
 * picked up within ENDPOINT_POLL_MS.
 */
function startWebhookWorkers(d: WorkerDeps): { close(): Promise<void> } {
  const running = new Map<string, Worker<WebhookDeliveryJob | WebhookBatchJob>>();
  // Shared like the other workers' (each worker still blocks on a duplicate of its own).
  const connection = createRedis(d.deliveryRedisUrl, 'blocking');
  let stopped = false;
  // On a machine shared with the gateway path, deliveries wait while it keeps the cores busy (cpu-gate.ts).
  const gate = cpuGate({
    maxHoldMs: CPU_MAX_HOLD_MS,
    ...d.webhookCpuGate,
    sampleMs: CPU_SAMPLE_MS,
    onChange: (holding, busy, err) =>
      err
        ? d.logger.warn({ err: err.message }, 'machine CPU not read; deliveries go on without waiting for it')
        : d.logger.debug(
            { busyPercent: busy === null ? null : Math.round(busy) },
            holding ? 'CPU busy: deliveries held' : 'deliveries resumed',
          ),
  });
  const sync = async () => {
    const ids = new Set(await d.webhooks.activeEndpointIds());
    for (const id of ids) {
      if (running.has(id) || stopped) continue;
      // Each POST waits for its turn at the endpoint's rate (a batch job makes many); BullMQ's limiter
      // bounds the jobs started, across processes too.
      const endpointPace = pacer(d.webhookRate);
      const worker = new Worker<WebhookDeliveryJob | WebhookBatchJob>(
        queueName(id),
        async (job, token) => {
          // A job's reads (its endpoint, its events) wait for spare CPU too, and so does each attempt
          // after its first: every attempt waits CPU_MAX_HOLD_MS at most, a batch's as a single job's.
          await gate.wait();
          let waited = true;
          const pace = async () => {
            if (!waited) await gate.wait();
            waited = false;
            await endpointPace();
          };
          return deliverWebhook(d, job, pace, () => stopped, token);
        },
        {
          connection,
          prefix: d.queue.prefix,
          concurrency: DELIVERIES_PER_ENDPOINT,
          limiter: { max: d.webhookRate, duration: 1000 },
          // A batch job runs for seconds: a process killed twice during one must not fail it for good (a
          // re-run skips what was delivered).
          maxStalledCount: 20,
          lockDuration: d.queue.lockDurationMs,
          stalledInterval: d.queue.stalledIntervalMs,
          settings: { backoffStrategy },
        },
      );
      worker.on('failed', (job, err) =>
        d.logger.info(
          { queue: queueName(id), jobId: job?.id, attempts: job?.attemptsMade, err: err.message },
          'webhook attempt failed',
        ),
      );
      worker.on('error', (err) => d.logger.error({ err: err.message, queue: queueName(id) }, 'webhook worker error'));
      running.set(id, worker);
    }
    for (const [id, worker] of running) {
      if (ids.has(id)) continue;
      running.delete(id);
      void worker.close().catch(() => undefined);
    }
  };
  const poll = async () => {
    await sync().catch((err: Error) => d.logger.warn({ err: err.message }, 'webhook endpoints not listed'));
    if (!stopped) timer = setTimeout(() => void poll(), ENDPOINT_POLL_MS);
  };
  let timer: NodeJS.Timeout | undefined;
  void poll();
  return {
    async close() {
      stopped = true;
      clearTimeout(timer);
      gate.stop();
      await Promise.all([...running.values()].map((w) => w.close()));
      running.clear();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
