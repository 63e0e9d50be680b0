import Joi from 'joi';

/** Field rules shared by every endpoint (SPEC section 2). */
export const userId = Joi.string()
  .pattern(/^[A-Za-z0-9_.:@-]{1,64}$/)
  .messages({ 'string.pattern.base': 'must be 1-64 characters of A-Z a-z 0-9 _ . : @ -' });
export const requestId = Joi.string()
  .pattern(/^[\x20-\x7E]{1,128}$/)
  .messages({ 'string.pattern.base': 'must be 1-128 printable ASCII characters' });
export const serviceName = Joi.string().min(1).max(64);
export const day = Joi.string()
  .pattern(/^\d{4}-\d{2}-\d{2}$/)
  .messages({ 'string.pattern.base': 'must be a date YYYY-MM-DD' });
export const dayOrInstant = Joi.string()
  .max(40)
  .pattern(/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/)
  .messages({ 'string.pattern.base': 'must be a date YYYY-MM-DD or an ISO 8601 timestamp' });
