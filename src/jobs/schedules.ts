import type { Config } from '../config/config.js';
import type { JobQueues } from './queues.js';

/** Repeating jobs, registered idempotently (BullMQ job schedulers live in Redis, run by workers). */
export async function registerSchedules(queues: JobQueues, config: Config): Promise<void> {
  await queues
    .queueOf('sweep-pending')
    .upsertJobScheduler(
      'sweep-pending',
      { every: config.persistence.sweepEveryMs },
      { name: 'sweep-pending', data: {} },
    );
  // 00:10 every day in the business time zone.
  await queues
    .queueOf('prune-quota-periods')
    .upsertJobScheduler(
      'prune-quota-periods',
      { pattern: '10 0 * * *', tz: config.businessTz },
      { name: 'prune-quota-periods', data: {} },
    );
  await queues
    .queueOf('reconcile')
    .upsertJobScheduler(
      'reconcile',
      { every: config.reconcileEveryMs },
      { name: 'reconcile', data: { trigger: 'schedule' } },
    );
  await queues
    .queueOf('evict-idle-accounts')
    .upsertJobScheduler(
      'evict-idle-accounts',
      { every: config.redis.evictEveryMs },
      { name: 'evict-idle-accounts', data: {} },
    );
  // 00:20 every day in the business time zone.
  await queues
    .queueOf('archive-old-rows')
    .upsertJobScheduler(
      'archive-old-rows',
      { pattern: '20 0 * * *', tz: config.businessTz },
      { name: 'archive-old-rows', data: {} },
    );
  // A grant is never spent past its expiry whatever this job's delay; it books the remainder leaving.
  await queues
    .queueOf('expire-grants')
    .upsertJobScheduler('expire-grants', { every: 60_000 }, { name: 'expire-grants', data: {} });
  await queues
    .queueOf('dispatch-events')
    .upsertJobScheduler(
      'dispatch-events',
      { every: config.webhooks.dispatchEveryMs },
      { name: 'dispatch-events', data: {} },
    );
  await queues
    .queueOf('expire-reservations')
    .upsertJobScheduler(
      'expire-reservations',
      { every: config.reservations.sweepEveryMs },
      { name: 'expire-reservations', data: {} },
    );
}
