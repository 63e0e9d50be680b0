import { UnrecoverableError, type Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import { MalformedChangeError, type PersistenceService } from '../services/persistence.service.js';

export function persistChangesProcessor(persistence: PersistenceService) {
  return async (job: Job<JobPayloads['persist-changes']>) => {
    try {
      return await persistence.persist(job.data.changes);
    } catch (err) {
      if (err instanceof MalformedChangeError) throw new UnrecoverableError(err.message);
      throw err;
    }
  };
}
