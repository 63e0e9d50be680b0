import { Router } from 'express';
import type { UsageService } from '../services/usage.service.js';
import { recordsQuery, statsQuery, summaryQuery, dailyQuery } from './usage.schemas.js';
import { validate, ok } from './validation.js';

/** `/api/v1/billing`: consumption records and call statistics. */
export interface UsageRouteDeps {
  usage: UsageService;
}

export function usageRoutes({ usage }: UsageRouteDeps): Router {
  const router = Router();

  router.get('/records', async (req, res) => {
    const q = validate(recordsQuery, req.query, 'query');
    res.json(
      ok(
        await usage.records({
          userId: q.user_id,
          serviceName: q.service_name,
          type: q.type,
          from: q.from,
          to: q.to,
          page: q.page,
          pageSize: q.page_size,
          cursor: q.cursor,
        }),
      ),
    );
  });

  router.get('/stats/today', async (req, res) => {
    const q = validate(statsQuery, req.query, 'query');
    res.json(ok(await usage.today(q.user_id, q.service_name)));
  });

  router.get('/stats/month', async (req, res) => {
    const q = validate(statsQuery, req.query, 'query');
    res.json(ok(await usage.month(q.user_id, q.service_name)));
  });

  router.get('/stats/summary', async (req, res) => {
    const q = validate(summaryQuery, req.query, 'query');
    res.json(ok(await usage.summary(q.user_id)));
  });

  router.get('/stats/daily', async (req, res) => {
    const q = validate(dailyQuery, req.query, 'query');
    res.json(ok(await usage.daily(q.user_id, q.service_name, q.from, q.to)));
  });

  return router;
}
