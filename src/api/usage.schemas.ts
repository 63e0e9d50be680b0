import Joi from 'joi';
import { userId, serviceName, day, dayOrInstant } from './common.schemas.js';

export interface RecordsQuery {
  user_id: string;
  page: number;
  page_size: number;
  service_name?: string;
  type?: 'free' | 'balance' | 'mixed';
  from?: string;
  to?: string;
  cursor?: string;
}

export const recordsQuery = Joi.object<RecordsQuery>({
  user_id: userId.required(),
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

export const statsQuery = Joi.object<{ user_id: string; service_name?: string }>({
  user_id: userId.required(),
  service_name: serviceName,
});

export const summaryQuery = Joi.object<{ user_id: string }>({ user_id: userId.required() });

export const dailyQuery = Joi.object<{ user_id: string; service_name?: string; from?: string; to?: string }>({
  user_id: userId.required(),
  service_name: serviceName,
  from: day,
  to: day,
});
