import { Router } from 'express';
import type { WebhookService } from '../services/webhook.service.js';
import { deliveriesQuery, emptyBody, resendBody, webhookBody, webhookParams } from './event.schemas.js';
import { ok, validate } from './validation.js';

/** `/admin/v1/webhooks`: operators' endpoints, their secrets and delivery attempts (SPEC 13). */
export function webhookRoutes({ webhooks }: { webhooks: WebhookService }): Router {
  const router = Router();
  router.post('/webhooks', async (req, res) => {
    const b = validate(webhookBody, req.body);
    res.status(201).json(ok(await webhooks.create(b)));
  });
  router.get('/webhooks', async (_req, res) => {
    res.json(ok({ endpoints: await webhooks.list() }));
  });
  router.get('/webhooks/:id', async (req, res) => {
    const { id } = validate(webhookParams, req.params, 'query');
    res.json(ok(await webhooks.get(id)));
  });
  router.delete('/webhooks/:id', async (req, res) => {
    const { id } = validate(webhookParams, req.params, 'query');
    await webhooks.remove(id);
    res.json(ok({ id, deleted: true }));
  });
  router.post('/webhooks/:id/rotate-secret', async (req, res) => {
    const { id } = validate(webhookParams, req.params, 'query');
    validate(emptyBody, req.body);
    res.json(ok(await webhooks.rotateSecret(id)));
  });
  router.get('/webhooks/:id/deliveries', async (req, res) => {
    const { id } = validate(webhookParams, req.params, 'query');
    const q = validate(deliveriesQuery, req.query, 'query');
    res.json(ok(await webhooks.deliveries(id, q.page_size, q.cursor, q.event_id)));
  });
  router.post('/webhooks/:id/resend', async (req, res) => {
    const { id } = validate(webhookParams, req.params, 'query');
    const b = validate(resendBody, req.body);
    res.status(202).json(ok({ endpointId: id, eventId: b.event_id, ...(await webhooks.resend(id, b.event_id)) }));
  });
  return router;
}
