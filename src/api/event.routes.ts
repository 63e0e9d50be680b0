import { Router } from 'express';
import type { EventService } from '../services/event.service.js';
import { eventParams, eventsQuery } from './event.schemas.js';
import { ok, validate } from './validation.js';

/** `/admin/v1/events`: stored events, newest first, by cursor (SPEC 13). */
export function eventRoutes({ events }: { events: Pick<EventService, 'list' | 'get'> }): Router {
  const router = Router();
  router.get('/events', async (req, res) => {
    const q = validate(eventsQuery, req.query, 'query');
    res.json(ok(await events.list({ userId: q.user_id, type: q.type, cursor: q.cursor, pageSize: q.page_size })));
  });
  router.get('/events/:id', async (req, res) => {
    const { id } = validate(eventParams, req.params, 'query');
    res.json(ok(await events.get(id)));
  });
  return router;
}
