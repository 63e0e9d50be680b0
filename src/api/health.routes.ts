import { Router } from 'express';
import type { AppContext } from '../context.js';
import { AppError } from '../lib/errors.js';

/** Liveness (the process answers) and readiness (Redis and MySQL answer). */
export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  // The original platform's health answer, for its load balancers and probes (SPEC 11).
  router.get('/health', (_req, res) => {
    res.json({ status: 'UP', service: 'billing-service' });
  });
  router.get('/healthz', (_req, res) => {
    res.json({ success: true, data: { status: 'ok' } });
  });
  router.get('/readyz', async (_req, res) => {
    const [redis, mysql] = await Promise.allSettled([ctx.redis.ping(), ctx.db.raw('SELECT 1')]);
    const checks = { redis: redis.status === 'fulfilled' ? 'ok' : 'down', mysql: mysql.status === 'fulfilled' ? 'ok' : 'down' };
    if (checks.redis !== 'ok' || checks.mysql !== 'ok') {
      throw new AppError('DEPENDENCY_UNAVAILABLE', `not ready: redis ${checks.redis}, mysql ${checks.mysql}`);
    }
    res.json({ success: true, data: { status: 'ready', ...checks } });
  });
  return router;
}
