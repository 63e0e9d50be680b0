import Joi from 'joi';
import { DateTime } from 'luxon';
import type { CallbackBody } from '../services/recharge.service.js';

/** Latest paid_at accepted (2100-01-01): anything later is no payment time and no MySQL DATETIME either. */
export const MAX_PAID_AT_SECONDS = 4_102_444_800;

const orderId = Joi.string()
  .pattern(/^[A-Za-z0-9_-]{1,40}$/)
  .required();
const paymentId = Joi.string()
  .pattern(/^[A-Za-z0-9_.-]{1,64}$/)
  .required();

/** The payment service's callback. Fields it may add later are let through. */
export const callbackBody = Joi.object<CallbackBody>({
  order_id: orderId,
  payment_id: paymentId,
  amount: Joi.alternatives(Joi.string().max(32), Joi.number()).required(),
  currency: Joi.string()
    .pattern(/^[A-Z]{3}$/)
    .required(),
  status: Joi.string().valid('success', 'failed', 'closed').required(),
  paid_at: Joi.alternatives(
    Joi.number().integer().min(0).max(MAX_PAID_AT_SECONDS),
    Joi.string()
      .max(40)
      .isoDate()
      .custom((v: string, h) => {
        // A real instant (Luxon refuses 2026-02-30, which Date.parse rolls over to 2 March), 1970-2099.
        const t = DateTime.fromISO(v, { setZone: true });
        return t.isValid && t.toMillis() >= 0 && t.toMillis() <= MAX_PAID_AT_SECONDS * 1000 ? v : h.error('date.max');
      })
      .messages({ 'date.max': 'must be a real time from 1970 to 2099' }),
  ),
}).unknown(true);

/**
 * gRPC RechargeCallback's hint: the ids alone, with the HTTP callback's rules. Its status and amount
 * are not trusted: the payment service's GetPayment says whether and what was paid.
 */
export const callbackHint = Joi.object<{ order_id: string; payment_id: string }>({
  order_id: orderId,
  payment_id: paymentId,
});
