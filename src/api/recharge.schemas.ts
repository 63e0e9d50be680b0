import Joi from 'joi';
import { userId } from './common.schemas.js';
import { parseMoney, type Micros } from '../lib/money.js';

/** An amount: a decimal string or a JSON number with at most 6 fractional digits, as micro-units. */
export const amount = Joi.alternatives(Joi.string().max(32), Joi.number())
  .custom((value, helpers) => {
    const micros = parseMoney(value);
    return micros === null ? helpers.error('amount.invalid') : micros;
  })
  .messages({
    'amount.invalid': 'must be a decimal string or number with at most 6 fractional digits',
    'alternatives.types': 'must be a decimal string or number',
  });

/** `wechatpay` (the original platform's name, SPEC 11) is taken as `wechat`. */
const METHODS: Record<string, 'wechat' | 'alipay'> = { wechat: 'wechat', wechatpay: 'wechat', alipay: 'alipay' };
const paymentMethod = Joi.string().custom((value: string, helpers) =>
  Object.hasOwn(METHODS, value) ? METHODS[value] : helpers.error('any.only', { valids: Object.keys(METHODS) }),
);

export interface RechargeBody {
  user_id: string;
  amount: Micros;
  payment_method: 'wechat' | 'alipay';
  currency: string;
}

export const rechargeBody = Joi.object<RechargeBody>({
  user_id: userId.required(),
  amount: amount.required(),
  payment_method: paymentMethod.required(),
  currency: Joi.string()
    .pattern(/^[A-Z]{3}$/)
    .default('CNY'),
});

export const idempotencyKey = Joi.string()
  .pattern(/^[\x21-\x7E]{1,128}$/)
  .messages({ 'string.pattern.base': 'must be 1-128 printable ASCII characters without spaces' });

export const orderParams = Joi.object<{ order_id: string }>({
  order_id: Joi.string()
    .pattern(/^[A-Za-z0-9_-]{1,40}$/)
    .required(),
});
export const orderQuery = Joi.object<{ user_id: string }>({ user_id: userId.required() });
