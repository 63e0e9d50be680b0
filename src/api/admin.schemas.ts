import Joi from 'joi';
import { userId } from './common.schemas.js';
import { amount } from './recharge.schemas.js';
import type { Micros } from '../lib/money.js';

export interface AdjustmentBody {
  amount: Micros;
  reason: string;
  idempotency_key: string;
  allow_negative: boolean;
}

export const userParams = Joi.object<{ user_id: string }>({ user_id: userId.required() });

export const adjustmentBody = Joi.object<AdjustmentBody>({
  amount: amount.required(),
  reason: Joi.string().min(3).max(200).required(),
  idempotency_key: Joi.string()
    .pattern(/^[\x21-\x7E]{1,64}$/)
    .required(),
  allow_negative: Joi.boolean().default(false),
});

export const ledgerQuery = Joi.object<{ page_size: number; cursor?: string }>({
  page_size: Joi.number().integer().min(1).max(100).default(20),
  cursor: Joi.string().max(20),
});

export const runsQuery = Joi.object<{ limit: number; before_id?: number }>({
  limit: Joi.number().integer().min(1).max(100).default(20),
  before_id: Joi.number().integer().min(1),
});

/** `full`: a full audit (every account, whole ledger) instead of a run over what changed. */
export const runBody = Joi.object<{ full: boolean }>({ full: Joi.boolean().default(false) });

export const runParams = Joi.object<{ id: number }>({ id: Joi.number().integer().min(1).required() });

const audit = {
  operator: Joi.string()
    .pattern(/^[\x21-\x7E]{1,64}$/)
    .required(),
  reason: Joi.string().min(3).max(200).required(),
};

export const deadLetterQuery = Joi.object<{ limit: number }>({
  limit: Joi.number().integer().min(1).max(100).default(50),
});

export const deadLetterRetryBody = Joi.object<{ user_id: string; change_id: string; operator: string; reason: string }>(
  {
    user_id: userId.required(),
    change_id: Joi.string()
      .pattern(/^[\x21-\x7E]{1,200}$/)
      .required(),
    ...audit,
  },
);

export const jobParams = Joi.object<{ queue: string; job_id: string }>({
  queue: Joi.string()
    .pattern(/^[a-z-]{1,32}$/)
    .required(),
  job_id: Joi.string()
    .pattern(/^[\x21-\x7E]{1,200}$/)
    .required(),
});

export const jobRetryBody = Joi.object<{ operator: string; reason: string }>(audit);
