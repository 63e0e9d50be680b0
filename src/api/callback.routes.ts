import express, { Router } from 'express';
import type { RechargeService } from '../services/recharge.service.js';
import type { Clock } from '../lib/clock.js';
import { callbackBody } from './callback.schemas.js';
import { validate } from './validation.js';
import { AppError } from '../lib/errors.js';
import { verifySignature } from '../lib/payment-signature.js';

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new AppError('VALIDATION_FAILED', 'malformed JSON body', [{ field: 'body', message: 'is not valid JSON' }]);
  }
}

export interface CallbackRouteDeps {
  recharges: RechargeService;
  clock: Clock;
  bodyLimit: string;
  callbackSecret: string;
  callbackToleranceMs: number;
}

/**
 * `POST /internal/v1/billing/callback`: the payment service's result. Authenticated by an HMAC over
 * the raw body (not the gateway token), so it reads the body as bytes before any JSON parsing.
 */
export function callbackRoutes(deps: CallbackRouteDeps): Router {
  const { recharges, clock, bodyLimit, callbackSecret, callbackToleranceMs } = deps;
  const router = Router();
  router.post('/', express.raw({ type: () => true, limit: bodyLimit }), async (req, res) => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    // Verified at the edge, on the raw bytes, before anything is parsed: the service gets a typed body.
    const nowMs = clock.now().getTime();
    const check = verifySignature(callbackSecret, raw, req.get('x-payment-signature'), nowMs, callbackToleranceMs);
    if (!check.ok) throw new AppError('UNAUTHORIZED', check.reason);
    const body = validate(callbackBody, parseJson(raw));
    const { orderId, outcome } = await recharges.acceptCallback(body, res.locals.correlationId as string);
    res.json({ success: true, data: { orderId, outcome } });
  });
  return router;
}
