import { Router } from 'express';
import type { JobQueues } from '../jobs/queues.js';
import type { Metrics } from '../lib/metrics.js';

export interface MetricsRouteDeps {
  queues: Pick<JobQueues, 'all'>;
  metrics: Pick<Metrics, 'queueJobs' | 'registry'>;
}

/** `/metrics` in Prometheus text format; queue depths are read at scrape time. */
export function metricsRoutes({ queues, metrics }: MetricsRouteDeps): Router {
  const router = Router();
  router.get('/', async (_req, res) => {
    for (const queue of queues.all()) {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
      for (const [state, n] of Object.entries(counts)) metrics.queueJobs.set({ queue: queue.name, state }, n);
    }
    res.set('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });
  return router;
}
