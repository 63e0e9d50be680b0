import type * as grpc from '@grpc/grpc-js';
import { AppError } from '../lib/errors.js';
import { secretEquals } from '../api/auth.middleware.js';

/** `authorization: Bearer <token>` metadata must match the token (constant-time, as over HTTP). */
export function requireBearer(metadata: grpc.Metadata, token: string): void {
  const given = metadata.get('authorization')[0];
  const m = typeof given === 'string' ? /^Bearer (.+)$/.exec(given) : null;
  if (!m || !secretEquals(m[1], token)) throw new AppError('UNAUTHORIZED', 'missing or bad bearer token');
}
