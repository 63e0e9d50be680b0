import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();
/** Digests of the configured secrets (a handful), computed once: every gateway call compares one. */
const expectedDigests = new Map<string, Buffer>();

/** Constant-time comparison that does not leak the secret's length. */
export function secretEquals(given: string, expected: string): boolean {
  let want = expectedDigests.get(expected);
  if (!want) {
    want = digest(expected);
    if (expectedDigests.size < 64) expectedDigests.set(expected, want);
  }
  return timingSafeEqual(digest(given), want);
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
