import Joi from 'joi';
import { userId, requestId } from './common.schemas.js';

export interface RefundBody {
  refund_id: string;
  user_id: string;
  request_id: string;
  count?: number;
}

/** SPEC 14: a refund of a deduct's calls, whole (count omitted) or in part. */
export function refundSchemas(maxCalls: number) {
  return {
    refund: Joi.object<RefundBody>({
      // Same rules as a request id: 1-128 printable ASCII characters.
      refund_id: requestId.required(),
      user_id: userId.required(),
      request_id: requestId.required(),
      count: Joi.number().integer().min(1).max(maxCalls),
    }),
  };
}
