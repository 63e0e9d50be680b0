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

export function gatewaySchemas(maxCalls: number) {
  const count = Joi.number().integer().min(1).max(maxCalls).default(1);
  return {
    check: Joi.object<CheckBody>({ user_id: userId.required(), service_name: serviceName.required(), count }),
    deduct: Joi.object<DeductBody>({ request_id: requestId.required(), user_id: userId.required(), service_name: serviceName.required(), count }),
  };
}
