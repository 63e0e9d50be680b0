import type { Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import type { ReconciliationService } from '../services/reconciliation.service.js';

export function reconcileProcessor(reconciliation: ReconciliationService) {
  return async (job: Job<JobPayloads['reconcile']>) => reconciliation.run(job.data.trigger, (phase, done) => void job.updateProgress({ phase, done }), job.data.runId);
}
