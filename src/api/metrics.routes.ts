import { Router } from 'express';
import type { AppContext } from '../context.js';

/** `/metrics` in Prometheus text format; queue depths are read at scrape time. */
export function metricsRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/', async (_req, res) => {
    for (const queue of ctx.queues.all()) {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
      for (const [state, n] of Object.entries(counts)) ctx.metrics.queueJobs.set({ queue: queue.name, state }, n);
    }
    res.set('Content-Type', ctx.metrics.registry.contentType);
    res.send(await ctx.metrics.registry.metrics());
  });
  return router;
}
