import type * as grpc from '@grpc/grpc-js';
import { AppError } from '../lib/errors.js';
import { secretMatcher } from '../api/auth.middleware.js';

/**
 * A check that `authorization: Bearer <token>` metadata matches the token (constant-time, as over HTTP),
 * built once per token.
 */
export function bearerCheck(token: string): (metadata: grpc.Metadata) => void {
  const matches = secretMatcher(token);
  return (metadata) => {
    const given = metadata.get('authorization')[0];
    const m = typeof given === 'string' ? /^Bearer (.+)$/.exec(given) : null;
    if (!m || !matches(m[1])) throw new AppError('UNAUTHORIZED', 'missing or bad bearer token');
  };
}
