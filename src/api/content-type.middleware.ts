import type { RequestHandler } from 'express';
import { AppError } from '../lib/errors.js';

const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i;

/**
 * A body the JSON parser would skip (sent as a form, text, or with no content-type at all) would
 * otherwise reach validation empty and be answered "user_id is required": say what is wrong.
 * Only for requests that carry a body; the payment callback (raw bytes, signed) is left alone.
 */
export function requireJsonContentType(prefixes: string[], except: string[]): RequestHandler {
  return (req, _res, next) => {
    // Headers read directly, and the raw URL's prefix unless it is in absolute form (http://host/...,
    // which the router matches by its path): this runs before every route.
    const { headers } = req;
    const hasBody = Number(headers['content-length'] ?? 0) > 0 || headers['transfer-encoding'] !== undefined;
    if (!hasBody) return next();
    const path = req.url.startsWith('/') ? req.url : req.path;
    if (!prefixes.some((p) => path.startsWith(p)) || except.some((p) => path.startsWith(p))) return next();
    const type = headers['content-type'];
    if (type && JSON_TYPE.test(type)) return next();
    next(
      new AppError(
        'VALIDATION_FAILED',
        'request body must be JSON: send the header content-type: application/json' +
          (type ? ` (got ${type.slice(0, 64)})` : ''),
        [{ field: 'content-type', message: 'must be application/json' }],
      ),
    );
  };
}
