import Joi from 'joi';
import { DateTime } from 'luxon';
import { userId, serviceName } from './common.schemas.js';
import { amount } from './recharge.schemas.js';
import type { Micros } from '../lib/money.js';

/** Grant ids follow the user id's rule (SPEC 2): they are shown, stored and keyed like one. */
const grantId = userId;
const positiveAmount = amount
  .custom((value: Micros, helpers) => (value > 0n ? value : helpers.error('amount.positive')))
  .messages({ 'amount.positive': 'must be greater than 0' });
const nonNegativeAmount = amount
  .custom((value: Micros, helpers) => (value >= 0n ? value : helpers.error('amount.negative')))
  .messages({ 'amount.negative': 'must be 0 or more' });

/** 2100-01-01: a later expiry is no expiry a MySQL DATETIME or a person means. */
const LATEST_EXPIRY_MS = 4_102_444_800_000;

export interface GrantBody {
  grant_id: string;
  amount: Micros;
  category: 'promotional' | 'paid';
  priority: number;
  expires_at?: Date;
  note: string;
}

export const grantBody = Joi.object<GrantBody>({
  grant_id: grantId.required(),
  amount: positiveAmount.required(),
  category: Joi.string().valid('promotional', 'paid').required(),
  priority: Joi.number().integer().min(0).max(1000).default(50),
  expires_at: Joi.string()
    .max(40)
    .isoDate()
    .custom((v: string, h) => {
      // A real instant (Luxon refuses 2026-02-30, which Date.parse rolls over to 2 March), before 2100.
      const t = DateTime.fromISO(v, { setZone: true });
      return t.isValid && t.toMillis() < LATEST_EXPIRY_MS ? new Date(t.toMillis()) : h.error('date.max');
    })
    .messages({ 'date.max': 'must be a real time before 2100' }),
  note: Joi.string().max(255).allow('').default(''),
});

export const grantParams = Joi.object<{ user_id: string; grant_id: string }>({
  user_id: userId.required(),
  grant_id: grantId.required(),
});

export const voidBody = Joi.object<{ note: string }>({ note: Joi.string().max(255).allow('').default('') });

export interface LimitsBody {
  user_id: string;
  daily?: Micros | null;
  monthly?: Micros | null;
}

export const limitsBody = Joi.object<LimitsBody>({
  user_id: userId.required(),
  daily: nonNegativeAmount.allow(null),
  monthly: nonNegativeAmount.allow(null),
});

export const limitsQuery = Joi.object<{ user_id: string }>({ user_id: userId.required() });

export const pricingParams = Joi.object<{ user_id: string; service_name: string }>({
  user_id: userId.required(),
  service_name: serviceName.required(),
});

export interface PricingBody {
  free_quota?: number | null;
  unit_price?: Micros | null;
}

export const pricingBody = Joi.object<PricingBody>({
  free_quota: Joi.number().integer().min(0).max(1_000_000_000).allow(null),
  unit_price: nonNegativeAmount.allow(null),
});
