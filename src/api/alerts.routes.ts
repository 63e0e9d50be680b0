import { Router } from 'express';
import type { EventService } from '../services/event.service.js';
import { alertsBody, alertsQuery } from './event.schemas.js';
import { ok, validate } from './validation.js';

/** `/api/v1/billing/alerts`: a user's alert thresholds (SPEC 13). */
export function alertsRoutes({ events }: { events: Pick<EventService, 'getAlerts' | 'putAlerts'> }): Router {
  const router = Router();
  router.get('/alerts', async (req, res) => {
    const q = validate(alertsQuery, req.query, 'query');
    res.json(ok(await events.getAlerts(q.user_id)));
  });
  router.put('/alerts', async (req, res) => {
    const b = validate(alertsBody, req.body);
    res.json(ok(await events.putAlerts(b.user_id, b.balance_low, b.quota_low_percent)));
  });
  return router;
}
