import type { Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import type { PersistenceService } from '../services/persistence.service.js';

/** Bad changes are parked as dead letters inside `persist`; what is left to throw is worth a retry. */
export function persistChangesProcessor(persistence: PersistenceService) {
  return (job: Job<JobPayloads['persist-changes']>) => persistence.persist(job.data.changes);
}
