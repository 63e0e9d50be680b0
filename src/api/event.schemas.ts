import Joi from 'joi';
import { userId } from './common.schemas.js';
import { amount } from './recharge.schemas.js';
import { EVENT_TYPES, type EventType } from '../lib/events.js';
import type { Micros } from '../lib/money.js';

/* SPEC 13: alert settings (gateway), stored events and webhook endpoints (operators). */

export interface AlertsBody {
  user_id: string;
  /** null: back to the configured default */
  balance_low?: Micros | null;
  quota_low_percent?: number | null;
}

/** The portal's own call: the session names the user, so the body never does. */
export const portalAlertsBody = Joi.object<Omit<AlertsBody, 'user_id'>>({
  balance_low: amount
    .custom((v: Micros, h) => (v < 0n ? h.error('amount.negative') : v))
    .messages({ 'amount.negative': 'must not be negative' })
    .allow(null),
  quota_low_percent: Joi.number().integer().min(1).max(100).allow(null),
});

export const alertsQuery = Joi.object<{ user_id: string }>({ user_id: userId.required() });

export const alertsBody = Joi.object<AlertsBody>({
  user_id: userId.required(),
  balance_low: amount
    .custom((v: Micros, h) => (v < 0n ? h.error('amount.negative') : v))
    .messages({ 'amount.negative': 'must not be negative' })
    .allow(null),
  quota_low_percent: Joi.number().integer().min(1).max(100).allow(null),
});

const eventType = Joi.string()
  .valid(...EVENT_TYPES)
  .messages({ 'any.only': `must be one of: ${EVENT_TYPES.join(', ')}` });

export const eventsQuery = Joi.object<{ user_id?: string; type?: EventType; cursor?: string; page_size: number }>({
  user_id: userId,
  type: eventType,
  cursor: Joi.string().max(40),
  page_size: Joi.number().integer().min(1).max(100).default(20),
});

const generatedId = Joi.string()
  .max(40)
  .pattern(/^[A-Za-z0-9_]+$/)
  .messages({ 'string.pattern.base': 'is not an id of this service' });

export const eventParams = Joi.object<{ id: string }>({ id: generatedId.required() });

/**
 * A receiver's URL: http or https, no user name or password in it (they would be stored and logged
 * with the URL), at most 2,048 characters.
 */
const webhookUrl = Joi.string()
  .max(2048)
  .custom((value: string, h) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return h.error('url.invalid');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return h.error('url.scheme');
    if (url.username !== '' || url.password !== '') return h.error('url.credentials');
    if (url.hostname === '') return h.error('url.invalid');
    return url.toString();
  })
  .messages({
    'url.invalid': 'must be an absolute URL',
    'url.scheme': 'must be an http or https URL',
    'url.credentials': 'must not carry a user name or password',
  });

export interface WebhookBody {
  url: string;
  events: string[];
  description?: string;
}

export const webhookBody = Joi.object<WebhookBody>({
  url: webhookUrl.required(),
  events: Joi.alternatives(
    Joi.array().items(Joi.string().valid('*')).length(1),
    Joi.array().items(eventType).min(1).max(EVENT_TYPES.length).unique(),
  )
    .required()
    .messages({ 'alternatives.match': `must be ["*"] or a list of event types: ${EVENT_TYPES.join(', ')}` }),
  description: Joi.string().max(255).allow(''),
});

export const webhookParams = Joi.object<{ id: string }>({ id: generatedId.required() });

export const deliveriesQuery = Joi.object<{ cursor?: string; page_size: number; event_id?: string }>({
  cursor: Joi.string().max(20),
  page_size: Joi.number().integer().min(1).max(100).default(20),
  event_id: generatedId,
});

export const resendBody = Joi.object<{ event_id: string }>({ event_id: generatedId.required() });

export const emptyBody = Joi.object({});
