import Joi from 'joi';
import type { CallbackBody } from '../services/recharge.service.js';

/** The payment service's callback. Fields it may add later are let through. */
export const callbackBody = Joi.object<CallbackBody>({
  order_id: Joi.string().pattern(/^[A-Za-z0-9_-]{1,40}$/).required(),
  payment_id: Joi.string().pattern(/^[A-Za-z0-9_.-]{1,64}$/).required(),
  amount: Joi.alternatives(Joi.string().max(32), Joi.number()).required(),
  currency: Joi.string().pattern(/^[A-Z]{3}$/).required(),
  status: Joi.string().valid('success', 'failed', 'closed').required(),
  paid_at: Joi.alternatives(Joi.number().integer().min(0), Joi.string().isoDate()),
}).unknown(true);
