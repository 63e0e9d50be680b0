import { Router } from 'express';
import type { RedisClient } from '../redis/connection.js';
import type { Db } from '../repositories/database.js';
import { AppError } from '../lib/errors.js';

export interface HealthRouteDeps {
  redis: Pick<RedisClient, 'ping'>;
  db: Pick<Db, 'raw'>;
}

/** Liveness (the process answers) and readiness (Redis and MySQL answer). */
export function healthRoutes({ redis, db }: HealthRouteDeps): Router {
  const router = Router();
  // The original platform's health answer, for its load balancers and probes (SPEC 11).
  router.get('/health', (_req, res) => {
    res.json({ status: 'UP', service: 'billing-service' });
  });
  router.get('/healthz', (_req, res) => {
    res.json({ success: true, data: { status: 'ok' } });
  });
  router.get('/readyz', async (_req, res) => {
    const [redisUp, mysqlUp] = await Promise.allSettled([redis.ping(), db.raw('SELECT 1')]);
    const checks = {
      redis: redisUp.status === 'fulfilled' ? 'ok' : 'down',
      mysql: mysqlUp.status === 'fulfilled' ? 'ok' : 'down',
    };
    if (checks.redis !== 'ok' || checks.mysql !== 'ok') {
      throw new AppError('DEPENDENCY_UNAVAILABLE', `not ready: redis ${checks.redis}, mysql ${checks.mysql}`);
    }
    res.json({ success: true, data: { status: 'ready', ...checks } });
  });
  return router;
}
