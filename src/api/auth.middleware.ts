import { hash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';

// One-shot hashing: no Hash object per call (every gateway call checks its token).
const digest = (s: string) => hash('sha256', s, 'buffer');

/**
 * A constant-time check against one configured secret that does not leak its length. The secret's
 * digest is computed here, once: every gateway call is checked against one.
 */
export function secretMatcher(expected: string): (given: string) => boolean {
  const want = digest(expected);
  return (given) => timingSafeEqual(digest(given), want);
}

/** `Authorization: Bearer <token>` must match one of the configured tokens. */
export function requireBearer(...tokens: string[]): RequestHandler {
  const matchers = tokens.map(secretMatcher);
  return (req, _res, next) => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m || !matchers.some((matches) => matches(m[1])))
      throw new AppError('UNAUTHORIZED', 'missing or bad bearer token');
    next();
  };
}
