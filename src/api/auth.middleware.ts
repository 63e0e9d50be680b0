import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison that does not leak the secret's length. */
export function secretEquals(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** `Authorization: Bearer <token>` must match one of the configured tokens. */
export function requireBearer(...tokens: string[]): RequestHandler {
  return (req, _res, next) => {
    const m = /^Bearer (.+)$/.exec(req.get('authorization') ?? '');
    if (!m || !tokens.some((t) => secretEquals(m[1], t)))
      throw new AppError('UNAUTHORIZED', 'missing or bad bearer token');
    next();
  };
}
