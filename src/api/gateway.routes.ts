import { Router } from 'express';
import type { AppContext } from '../context.js';
import { gatewaySchemas } from './gateway.schemas.js';
import { validate, ok } from './validation.js';

/** `/internal/v1/billing`: the gateway's check and deduct, answered from Redis. */
export function gatewayRoutes(ctx: AppContext): Router {
  const router = Router();
  const schemas = gatewaySchemas(ctx.config.maxCallsPerRequest);

  router.post('/check', async (req, res) => {
    const b = validate(schemas.check, req.body);
    res.json(ok(await ctx.billing.check({ userId: b.user_id, serviceName: b.service_name, count: b.count })));
  });

  router.post('/deduct', async (req, res) => {
    const b = validate(schemas.deduct, req.body);
    res.json(ok(await ctx.billing.deduct({ requestId: b.request_id, userId: b.user_id, serviceName: b.service_name, count: b.count })));
  });

  return router;
}
