import { Router, type RequestHandler } from 'express';
import type { BillingService } from '../services/billing.service.js';
import { gatewaySchemas } from './gateway.schemas.js';
import { validate, ok } from './validation.js';

const BASE = '/internal/v1/billing';

export interface GatewayRouteDeps {
  billing: BillingService;
  maxCallsPerRequest: number;
}

/**
 * The gateway's check and deduct, answered from Redis. Registered with full paths and their own
 * middleware (`before`: body parser, auth) so that the app can match them first, ahead of every
 * other router: they are the hot path, called on every API call the platform serves.
 */
export function gatewayRoutes({ billing, maxCallsPerRequest }: GatewayRouteDeps, ...before: RequestHandler[]): Router {
  const router = Router();
  const schemas = gatewaySchemas(maxCallsPerRequest);

  router.post(`${BASE}/check`, ...before, async (req, res) => {
    const b = validate(schemas.check, req.body);
    res.json(ok(await billing.check({ userId: b.user_id, serviceName: b.service_name, count: b.count })));
  });

  router.post(`${BASE}/deduct`, ...before, async (req, res) => {
    const b = validate(schemas.deduct, req.body);
    res.json(ok(await billing.deduct({ requestId: b.request_id, userId: b.user_id, serviceName: b.service_name, count: b.count })));
  });

  return router;
}
