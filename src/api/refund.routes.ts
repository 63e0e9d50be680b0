import { Router, type RequestHandler } from 'express';
import type { RefundService } from '../services/refund.service.js';
import { refundSchemas } from './refund.schemas.js';
import { validate, ok } from './validation.js';

export interface RefundRouteDeps {
  refunds: RefundService;
  maxCallsPerRequest: number;
}

/** `POST /internal/v1/billing/refunds` (gateway token, given in `before` with the body parser). */
export function refundRoutes(d: RefundRouteDeps, ...before: RequestHandler[]): Router {
  const router = Router();
  const schemas = refundSchemas(d.maxCallsPerRequest);
  router.post('/internal/v1/billing/refunds', ...before, async (req, res) => {
    const b = validate(schemas.refund, req.body);
    res.json(
      ok(await d.refunds.refund({ refundId: b.refund_id, userId: b.user_id, requestId: b.request_id, count: b.count })),
    );
  });
  return router;
}
