/** The error codes of SPEC section 8, with their HTTP statuses. */
export const ErrorCodes = {
  INSUFFICIENT_BALANCE: { code: 10001, status: 402 },
  INSUFFICIENT_QUOTA: { code: 10002, status: 402 },
  ORDER_NOT_FOUND: { code: 10003, status: 404 },
  DUPLICATE_RECHARGE: { code: 10004, status: 409 },
  CALLBACK_MISMATCH: { code: 10005, status: 400 },
  UNKNOWN_SERVICE: { code: 10006, status: 400 },
  REQUEST_ID_REUSED: { code: 10007, status: 409 },
  RESERVATION_NOT_FOUND: { code: 10008, status: 404 },
  PAYMENT_UNAVAILABLE: { code: 10009, status: 503 },
  SPENDING_LIMIT_REACHED: { code: 10011, status: 402 },
  /** a refund asks for more calls than are left to refund, or reuses a refund_id with another payload */
  REFUND_NOT_POSSIBLE: { code: 10010, status: 409 },
  /** the call to refund is unknown or past the refund window */
  REFUND_NOT_FOUND: { code: 10010, status: 404 },
  VALIDATION_FAILED: { code: 40000, status: 400 },
  UNAUTHORIZED: { code: 40100, status: 401 },
  NOT_FOUND: { code: 40400, status: 404 },
  PAYLOAD_TOO_LARGE: { code: 40000, status: 413 },
  INTERNAL: { code: 50000, status: 500 },
  DEPENDENCY_UNAVAILABLE: { code: 50300, status: 503 },
} as const;

export type ErrorKind = keyof typeof ErrorCodes;

export interface ErrorDetail {
  field: string;
  message: string;
}

/** The one error type that reaches callers: a SPEC code, its HTTP status, a message and details. */
export class AppError extends Error {
  readonly code: number;
  readonly status: number;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly details?: ErrorDetail[],
  ) {
    super(message);
    this.name = 'AppError';
    this.code = ErrorCodes[kind].code;
    this.status = ErrorCodes[kind].status;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** The 50300 an outage is answered with, in every transport and batch: its message ends with what to do. */
export function dependencyUnavailable(whatToDo: string): AppError {
  return new AppError('DEPENDENCY_UNAVAILABLE', `a dependency is unavailable; ${whatToDo}`);
}

/** Error names of clients (ioredis, knex) that mean the server could not be reached or answer. */
const OUTAGE_NAMES = new Set(['MaxRetriesPerRequestError', 'KnexTimeoutError', 'ClusterAllFailedError', 'AbortError']);
/** Socket, DNS and MySQL codes of an unreachable or stopping server. */
const OUTAGE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
]);
/** Messages of ioredis and mysql2 when a connection is gone, and Redis's own "not now" replies. */
const OUTAGE_MESSAGE = new RegExp(
  [
    "Connection is closed|Stream isn't writeable|Command timed out|enableOfflineQueue|LOADING|CLUSTERDOWN|TRYAGAIN",
    'Too many Cluster redirections|None of startup nodes is available|connection is in closed state',
    '^(BUSY|MASTERDOWN|READONLY|OOM) ',
  ].join('|'),
);

/**
 * Errors that mean Redis or MySQL cannot be reached or cannot answer now: the caller may retry later
 * (503 / 50300). A command that met one may have run (it was sent before the connection went).
 */
export function isDependencyError(err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string };
  if (!e || typeof e !== 'object') return false;
  if (OUTAGE_NAMES.has(e.name ?? '') || OUTAGE_CODES.has(e.code ?? '')) return true;
  return OUTAGE_MESSAGE.test(e.message ?? '');
}
