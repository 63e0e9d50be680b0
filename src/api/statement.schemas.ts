import Joi from 'joi';
import { userId } from './common.schemas.js';

export interface StatementQuery {
  user_id: string;
  format: 'json' | 'csv';
}

export const statementQuery = Joi.object<StatementQuery>({
  user_id: userId.required(),
  format: Joi.string().valid('json', 'csv').default('json'),
});

/** The month as a path parameter; its range (1970-01 to the current month) is the service's to check. */
export const statementParams = Joi.object<{ month: string }>({
  month: Joi.string()
    .pattern(/^\d{4}-\d{2}$/)
    .required()
    .messages({ 'string.pattern.base': 'must be a month YYYY-MM' }),
});
