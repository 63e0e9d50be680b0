import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../lib/logger.js';
import { AppError, dependencyUnavailable, isAppError, isDependencyError } from '../lib/errors.js';

export const notFound: RequestHandler = (req) => {
  throw new AppError('NOT_FOUND', `no route for ${req.method} ${req.path}`);
};

/** The one place where errors become responses: SPEC codes, never a stack trace. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const correlationId = res.locals.correlationId as string | undefined;
    let appErr: AppError;
    const bodyError = err as { type?: string; status?: number };
    if (isAppError(err)) {
      appErr = err;
    } else if (bodyError.type === 'entity.too.large') {
      appErr = new AppError('PAYLOAD_TOO_LARGE', 'request body too large');
    } else if (bodyError.type === 'entity.parse.failed') {
      appErr = new AppError('VALIDATION_FAILED', 'malformed JSON body', [
        { field: 'body', message: 'is not valid JSON' },
      ]);
    } else if (typeof bodyError.status === 'number' && bodyError.status >= 400 && bodyError.status < 500) {
      appErr = new AppError('VALIDATION_FAILED', 'unreadable request', [
        { field: 'body', message: String((err as Error).message) },
      ]);
    } else if (isDependencyError(err)) {
      logger.warn({ correlationId, err: (err as Error).message, path: req.path }, 'dependency unavailable');
      appErr = dependencyUnavailable(`retry later (correlation id ${correlationId})`);
    } else {
      logger.error({ correlationId, err, path: req.path }, 'unhandled error');
      appErr = new AppError('INTERNAL', `internal error (correlation id ${correlationId})`);
    }
    res.status(appErr.status).json({
      success: false,
      code: appErr.code,
      message: appErr.message,
      ...(appErr.details ? { details: appErr.details } : {}),
      ...(appErr.code >= 50000 ? { correlationId } : {}),
    });
  };
}
