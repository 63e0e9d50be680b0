import Joi from 'joi';
import { userId, requestId, serviceName } from './common.schemas.js';

export interface ReserveBody {
  request_id: string;
  user_id: string;
  service_name: string;
  count: number;
  ttl_seconds?: number;
}

export function reservationSchemas(maxCalls: number) {
  return {
    reserve: Joi.object<ReserveBody>({
      request_id: requestId.required(),
      user_id: userId.required(),
      service_name: serviceName.required(),
      count: Joi.number().integer().min(1).max(maxCalls).required(),
      ttl_seconds: Joi.number()
        .integer()
        .min(1)
        .max(7 * 86_400),
    }),
    // Committing 0 calls is allowed: nothing was used, everything returns (like a release).
    commit: Joi.object<{ count: number }>({ count: Joi.number().integer().min(0).max(maxCalls).required() }),
    release: Joi.object({}),
    params: Joi.object<{ id: string }>({
      id: Joi.string()
        .max(200)
        .pattern(/^[A-Za-z0-9_.-]+$/)
        .required(),
    }),
  };
}
