import Joi from 'joi';
import { userId, requestId, serviceName } from './common.schemas.js';

export interface CheckBody {
  user_id: string;
  service_name: string;
  count: number;
}

export interface DeductBody extends CheckBody {
  request_id: string;
}

export interface BatchBody<T> {
  items: T[];
}

export function gatewaySchemas(maxCalls: number, maxBatchItems = 1000) {
  const count = Joi.number().integer().min(1).max(maxCalls).default(1);
  // A check may ask about more calls than one request may carry: it is answered "too_many_calls".
  const checkCount = Joi.number().integer().min(1).default(1);
  const check = Joi.object<CheckBody>({
    user_id: userId.required(),
    service_name: serviceName.required(),
    count: checkCount,
  });
  const deduct = Joi.object<DeductBody>({
    request_id: requestId.required(),
    user_id: userId.required(),
    service_name: serviceName.required(),
    count,
  });
  const items = (item: Joi.ObjectSchema) => Joi.array().items(item.required()).min(1).max(maxBatchItems).required();
  return {
    check,
    deduct,
    /**
     * A batch's envelope: its items are counted before any is looked at, then each is validated as a
     * single call (validateBatch), so a hostile batch costs at most its bound. checkBatch and deductBatch
     * are the same rules whole, as documented.
     */
    batch: Joi.object<BatchBody<unknown>>({ items: Joi.array().min(1).max(maxBatchItems).required() }),
    /** The items' keys are snake_case or camelCase, as in a single call (renamed before validation). */
    checkBatch: Joi.object<BatchBody<CheckBody>>({ items: items(check) }),
    deductBatch: Joi.object<BatchBody<DeductBody>>({ items: items(deduct) }),
  };
}
