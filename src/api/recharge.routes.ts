import { Router } from 'express';
import type { RechargeService } from '../services/recharge.service.js';
import { rechargeBody, idempotencyKey, orderParams, orderQuery } from './recharge.schemas.js';
import { validate, ok } from './validation.js';
import { AppError } from '../lib/errors.js';

/** `/api/v1/billing/recharge`: start a recharge, look at an order. */
export interface RechargeRouteDeps {
  recharges: RechargeService;
}

export function rechargeRoutes({ recharges }: RechargeRouteDeps): Router {
  const router = Router();

  router.post('/recharge', async (req, res) => {
    const b = validate(rechargeBody, req.body);
    const key = req.get('idempotency-key');
    if (key !== undefined && idempotencyKey.validate(key).error) {
      throw new AppError('VALIDATION_FAILED', 'invalid Idempotency-Key', [
        { field: 'Idempotency-Key', message: 'must be 1-128 printable ASCII characters without spaces' },
      ]);
    }
    const order = await recharges.create({
      userId: b.user_id,
      amount: b.amount,
      method: b.payment_method,
      currency: b.currency,
      idempotencyKey: key,
      clientIp: req.ip ?? '',
    });
    res.json(ok(order));
  });

  router.get('/recharge/:order_id', async (req, res) => {
    const { order_id } = validate(orderParams, req.params, 'query');
    const q = validate(orderQuery, req.query, 'query');
    res.json(ok(await recharges.get(order_id, q.user_id)));
  });

  return router;
}
