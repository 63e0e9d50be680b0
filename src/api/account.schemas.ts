import Joi from 'joi';
import { userId } from './common.schemas.js';

export const accountQuery = Joi.object<{ user_id: string }>({ user_id: userId.required() });
