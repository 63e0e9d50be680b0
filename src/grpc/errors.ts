import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../lib/logger.js';
import { AppError, dependencyUnavailable, isAppError, isDependencyError, type ErrorKind } from '../lib/errors.js';

/** SPEC section 11: each section 8 code as a gRPC status. */
const STATUS_OF: Record<ErrorKind, grpc.status> = {
  INSUFFICIENT_BALANCE: grpc.status.FAILED_PRECONDITION,
  INSUFFICIENT_QUOTA: grpc.status.FAILED_PRECONDITION,
  ORDER_NOT_FOUND: grpc.status.NOT_FOUND,
  DUPLICATE_RECHARGE: grpc.status.ALREADY_EXISTS,
  CALLBACK_MISMATCH: grpc.status.INVALID_ARGUMENT,
  UNKNOWN_SERVICE: grpc.status.INVALID_ARGUMENT,
  REQUEST_ID_REUSED: grpc.status.ALREADY_EXISTS,
  RESERVATION_NOT_FOUND: grpc.status.NOT_FOUND,
  SPENDING_LIMIT_REACHED: grpc.status.RESOURCE_EXHAUSTED,
  PAYMENT_UNAVAILABLE: grpc.status.UNAVAILABLE,
  REFUND_NOT_POSSIBLE: grpc.status.FAILED_PRECONDITION,
  REFUND_NOT_FOUND: grpc.status.NOT_FOUND,
  VALIDATION_FAILED: grpc.status.INVALID_ARGUMENT,
  UNAUTHORIZED: grpc.status.UNAUTHENTICATED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  PAYLOAD_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  INTERNAL: grpc.status.INTERNAL,
  DEPENDENCY_UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/** Metadata values must be printable ASCII; caller-supplied text in a message may not be. */
const ascii = (text: string) => text.replace(/[^\x20-\x7E]/g, '?');

/**
 * Any error thrown by a handler as an AppError: the SPEC code kept, a dependency outage as 50300,
 * anything else logged with a correlation id and answered as 50000 without its details.
 */
export function asAppError(err: unknown, logger: Logger, method: string): AppError {
  if (isAppError(err)) return err;
  const correlationId = randomUUID();
  if (isDependencyError(err)) {
    logger.warn({ correlationId, err: (err as Error).message, method }, 'dependency unavailable');
    return dependencyUnavailable(`retry later (correlation id ${correlationId})`);
  }
  logger.error({ correlationId, err, method }, 'unhandled error');
  return new AppError('INTERNAL', `internal error (correlation id ${correlationId})`);
}

/**
 * The one mapping of errors to gRPC: the status, the message as its details, the section 8 code in
 * trailing metadata `billing-code`, and validation details as JSON in `billing-details`.
 */
export function toServiceError(err: unknown, logger: Logger, method: string): Partial<grpc.StatusObject> {
  const appErr = asAppError(err, logger, method);
  const metadata = new grpc.Metadata();
  metadata.set('billing-code', String(appErr.code));
  if (appErr.details?.length) metadata.set('billing-details', ascii(JSON.stringify(appErr.details)));
  return { code: STATUS_OF[appErr.kind], details: appErr.message, metadata };
}
