import { Worker, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { createRedis } from '../redis/connection.js';
import { QueueNames, type JobName, type QueueName } from '../jobs/jobs.js';
import { backoffStrategy } from '../jobs/queues.js';
import { persistChangesProcessor } from './persist-changes.processor.js';
import { sweepPendingProcessor } from './sweep-pending.processor.js';
import { applyPaymentProcessor } from './apply-payment.processor.js';
import { reconcileProcessor } from './reconcile.processor.js';
import { expireReservationProcessor, expireReservationsProcessor } from './expire-reservation.processor.js';

type Processor = (job: Job) => Promise<unknown>;

/** The start-up sweep runs this long after a worker starts and takes journal entries at least this old. */
const START_SWEEP_AFTER_MS = 3_000;

/** Starts one BullMQ worker per queue, dispatching each job to its processor by job name. */
export function startWorkers(ctx: AppContext, queues: readonly QueueName[] = QueueNames): { workers: Worker[]; close(): Promise<void> } {
  const processors: Record<JobName, Processor> = {
    'persist-changes': persistChangesProcessor(ctx.persistence) as Processor,
    'apply-payment': applyPaymentProcessor(ctx.recharges) as Processor,
    'sweep-pending': sweepPendingProcessor(ctx.persistence, ctx.config.persistence.sweepAfterMs) as Processor,
    'expire-reservation': expireReservationProcessor(ctx.reservations) as Processor,
    'expire-reservations': expireReservationsProcessor(ctx.reservations) as Processor,
    reconcile: reconcileProcessor(ctx.reconciliation) as Processor,
    'prune-quota-periods': (async () => ({ deleted: await ctx.accounts.prunePeriods() })) as Processor,
  };
  const connection = createRedis(ctx.config.redis.url!, 'blocking');
  const workers = queues.map((queue) => {
    const worker = new Worker(
      queue,
      async (job) => {
        const processor = processors[job.name as JobName];
        if (!processor) throw new Error(`no processor for job ${job.name}`);
        const log = ctx.logger.child({ job: job.name, jobId: job.id, attempt: job.attemptsMade + 1, correlationId: (job.data as { correlationId?: string })?.correlationId ?? job.id });
        const stop = ctx.metrics.jobDuration.startTimer({ job: job.name });
        try {
          const result = await processor(job);
          stop({ result: 'ok' });
          const lag = (result as { lagMs?: number } | undefined)?.lagMs;
          if (typeof lag === 'number') ctx.metrics.persistenceLag.observe(lag / 1000);
          log.debug('job done');
          return result;
        } catch (err) {
          stop({ result: 'failed' });
          throw err;
        }
      },
      {
        connection,
        prefix: ctx.config.queue.prefix,
        concurrency: ctx.config.queue.workerConcurrency,
        lockDuration: ctx.config.queue.lockDurationMs,
        stalledInterval: ctx.config.queue.stalledIntervalMs,
        settings: { backoffStrategy },
      },
    );
    worker.on('failed', (job, err) => ctx.logger.warn({ job: job?.name, jobId: job?.id, correlationId: job?.data?.correlationId ?? job?.id, attempts: job?.attemptsMade, err: err.message }, 'job failed'));
    worker.on('error', (err) => ctx.logger.error({ err: err.message, queue }, 'worker error'));
    return worker;
  });
  // What a dead process left unpersisted (its buffer, a job it never enqueued) is recovered at once,
  // not at the sweep's usual age: entries older than a few seconds are past any live API's buffer.
  void ctx.queues
    .add('sweep-pending', { olderThanMs: START_SWEEP_AFTER_MS }, { delay: START_SWEEP_AFTER_MS })
    .catch((err: Error) => ctx.logger.warn({ err: err.message }, 'start-up sweep not queued; the scheduled one follows'));
  return {
    workers,
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await connection.quit().catch(() => undefined);
    },
  };
}
