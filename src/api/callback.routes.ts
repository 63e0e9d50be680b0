import express, { Router } from 'express';
import type { AppContext } from '../context.js';
import { callbackBody } from './callback.schemas.js';
import { validate } from './validation.js';
import { AppError } from '../lib/errors.js';

/**
 * `POST /internal/v1/billing/callback`: the payment service's result. Authenticated by an HMAC over
 * the raw body (not the gateway token), so it reads the body as bytes before any JSON parsing.
 */
export function callbackRoutes(ctx: AppContext): Router {
  const router = Router();
  router.post('/', express.raw({ type: () => true, limit: ctx.config.http.bodyLimit }), async (req, res) => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const { orderId, outcome } = await ctx.recharges.acceptCallback(raw, req.get('x-payment-signature'), (bytes) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(bytes.toString('utf8'));
      } catch {
        throw new AppError('VALIDATION_FAILED', 'malformed JSON body', [{ field: 'body', message: 'is not valid JSON' }]);
      }
      return validate(callbackBody, parsed);
    }, res.locals.correlationId as string);
    res.json({ success: true, data: { orderId, outcome } });
  });
  return router;
}
