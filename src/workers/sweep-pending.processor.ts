import type { Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import type { PersistenceService } from '../services/persistence.service.js';

export function sweepPendingProcessor(persistence: PersistenceService, defaultOlderThanMs: number) {
  return async (job: Job<JobPayloads['sweep-pending']>) => ({ reenqueued: await persistence.sweep(job.data.olderThanMs ?? defaultOlderThanMs) });
}
