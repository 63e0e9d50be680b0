import Joi from 'joi';
import { userId, serviceName, day, dayOrInstant } from './common.schemas.js';
import { amount } from './recharge.schemas.js';
import type { Micros } from '../lib/money.js';

/** Gateway: a portal link for one user. */
export const portalSessionBody = Joi.object<{ user_id: string }>({ user_id: userId.required() });

// The portal's own calls never name a user: the session does. A user_id here is an unknown field (400).
export const portalRecordsQuery = Joi.object<{
  page: number;
  page_size: number;
  service_name?: string;
  type?: 'free' | 'balance' | 'mixed';
  from?: string;
  to?: string;
  cursor?: string;
}>({
  page: Joi.number().integer().min(1).max(10_000).default(1),
  page_size: Joi.number().integer().min(1).max(100).default(20),
  service_name: serviceName,
  type: Joi.string().valid('free', 'balance', 'mixed'),
  from: dayOrInstant,
  to: dayOrInstant,
  cursor: Joi.string()
    .max(200)
    .pattern(/^[A-Za-z0-9_-]+$/),
});

export const portalUsageQuery = Joi.object<{ from?: string; to?: string }>({ from: day, to: day });

export const portalRechargeBody = Joi.object<{ amount: Micros; payment_method: 'wechat' | 'alipay' }>({
  amount: amount.required(),
  payment_method: Joi.string().valid('wechat', 'alipay').required(),
});

export const portalOrderParams = Joi.object<{ order_id: string }>({
  order_id: Joi.string()
    .pattern(/^[A-Za-z0-9_-]{1,40}$/)
    .required(),
});
