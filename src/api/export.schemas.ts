import Joi from 'joi';
import { userId, serviceName, dayOrInstant } from './common.schemas.js';

export interface ExportQueryInput {
  user_id: string;
  service_name?: string;
  from?: string;
  to?: string;
}

export const exportQuery = Joi.object<ExportQueryInput>({
  user_id: userId.required(),
  service_name: serviceName,
  from: dayOrInstant,
  to: dayOrInstant,
});
