/*
 * billing.v1 messages to and from the services' inputs and answers. Requests are validated with the
 * HTTP API's joi schemas (same rules over both transports); proto3 leaves unset fields at '' and 0,
 * which are passed on as "not given".
 */
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { checkWire } from './wire-types.js';
import { validate } from '../api/validation.js';
import { gatewaySchemas } from '../api/gateway.schemas.js';
import { reservationSchemas } from '../api/reservation.schemas.js';
import { refundSchemas } from '../api/refund.schemas.js';
import { rechargeBody, idempotencyKey } from '../api/recharge.schemas.js';
import { recordsQuery, statsQuery, summaryQuery } from '../api/usage.schemas.js';
import { accountQuery } from '../api/account.schemas.js';
import { AppError } from '../lib/errors.js';
import type { CheckInput, DeductInput, DeductResult } from '../services/billing.service.js';
import type { CheckAnswer, ItemOutcome } from '../services/batch.service.js';
import type { RefundInput } from '../services/refund.service.js';

/** Absent in proto3 terms: the default value. */
const given = <T>(v: T): T | undefined => (v === '' || v === 0 ? undefined : v);

/** The original's doubles, for old clients; the exact decimal string travels beside them. */
export const double = (decimal: string) => Number(decimal);

export function timestamp(iso: string | Date) {
  const ms = new Date(iso).getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (((ms % 1000) + 1000) % 1000) * 1_000_000 };
}

/** A request message as a plain record: unknown shapes are refused like a JSON body's. */
export type Msg = Record<string, unknown>;

/** Marks a request whose bytes did not decode as the rpc's message (see `tolerantDecoding`). */
const UNDECODABLE = Symbol('undecodable');
/** Marks a request refused before decoding for a repeated field of too many entries: the field's name. */
const TOO_MANY = Symbol('too many entries');

/**
 * The service definition with strict decoders that never throw: grpc-js answers a throwing decoder
 * with INTERNAL, but bytes that are not the rpc's message (garbage, or a field sent with another
 * type's wire type) are the caller's error (INVALID_ARGUMENT, 40000), and on a stream they refuse
 * that message alone. A repeated field of more than `maxRepeated` entries (a batch's items) is
 * refused from its bytes: decoded, a 1 MB message of empty items would be ~80 MB of objects, held
 * until the caller half-closes the call.
 */
export function tolerantDecoding(
  definition: grpc.ServiceDefinition,
  service: protobuf.Service,
  maxRepeated: number,
): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          try {
            const verdict = checkWire(service.methods[name].resolvedRequestType!, bytes, maxRepeated);
            if (!verdict.ok) {
              return verdict.tooMany
                ? { [TOO_MANY]: { field: verdict.tooMany, max: maxRepeated } }
                : { [UNDECODABLE]: true };
            }
            return method.requestDeserialize(bytes);
          } catch {
            return { [UNDECODABLE]: true };
          }
        },
      },
    ]),
  );
}

/** A batch of no items or of more than `max`: refused whole, before any item runs. */
export function batchSizeError(max: number, field = 'items'): AppError {
  return new AppError('VALIDATION_FAILED', 'invalid batch', [{ field, message: `must hold 1 to ${max} items` }]);
}

/** Refuses a request that did not decode. */
export function decoded(m: Msg): Msg {
  const tooMany = (m as { [TOO_MANY]?: { field: string; max: number } })[TOO_MANY];
  if (tooMany) throw batchSizeError(tooMany.max, tooMany.field);
  if ((m as { [UNDECODABLE]?: boolean })[UNDECODABLE]) {
    throw new AppError('VALIDATION_FAILED', 'the request is not a valid message of this rpc', [
      { field: 'body', message: 'is not a valid protobuf message of this rpc' },
    ]);
  }
  return m;
}

export function gatewayMessages(maxCallsPerRequest: number) {
  const schemas = gatewaySchemas(maxCallsPerRequest);
  const reservations = reservationSchemas(maxCallsPerRequest);
  const refunds = refundSchemas(maxCallsPerRequest);

  return {
    check(m: Msg): CheckInput {
      const b = validate(schemas.check, { user_id: m.userId, service_name: m.serviceName, count: given(m.count) });
      return { userId: b.user_id, serviceName: b.service_name, count: b.count };
    },

    /** `fallbackRequestId`: the call's x-request-id metadata (unary DeductQuota only). */
    deduct(m: Msg, fallbackRequestId?: string): DeductInput {
      decoded(m);
      const requestId = given(m.requestId) ?? fallbackRequestId;
      if (requestId === undefined) {
        throw new AppError(
          'VALIDATION_FAILED',
          'requestId (or x-request-id metadata) is required for an idempotent deduct',
          [{ field: 'requestId', message: 'is required (or send x-request-id metadata)' }],
        );
      }
      const b = validate(schemas.deduct, {
        request_id: requestId,
        user_id: m.userId,
        service_name: m.serviceName,
        count: given(m.count),
      });
      return { requestId: b.request_id, userId: b.user_id, serviceName: b.service_name, count: b.count };
    },

    reserve(m: Msg) {
      const b = validate(reservations.reserve, {
        request_id: m.requestId,
        user_id: m.userId,
        service_name: m.serviceName,
        count: given(m.count),
        ttl_seconds: given(m.ttlSeconds),
      });
      return {
        requestId: b.request_id,
        userId: b.user_id,
        serviceName: b.service_name,
        count: b.count,
        ttlMs: b.ttl_seconds === undefined ? undefined : b.ttl_seconds * 1000,
      };
    },

    commit(m: Msg) {
      const { id } = validate(reservations.params, { id: m.reservationId });
      // `optional` in the proto: absent is undefined and refused ("count is required"); a 0 sent releases all.
      const { count } = validate(reservations.commit, { count: m.count });
      return { id, count };
    },

    release(m: Msg) {
      return validate(reservations.params, { id: m.reservationId }).id;
    },

    refund(m: Msg): RefundInput {
      const b = validate(refunds.refund, {
        refund_id: m.refundId,
        user_id: m.userId,
        request_id: m.requestId,
        // `optional` in the proto: absent is undefined (the whole call), and a 0 sent is refused as over HTTP.
        count: m.count,
      });
      return { refundId: b.refund_id, userId: b.user_id, requestId: b.request_id, count: b.count };
    },
  };
}

export function checkReply(a: CheckAnswer) {
  return { allowed: a.allowed, reason: a.reason, freeRemaining: String(a.freeRemaining), balanceDecimal: a.balance };
}

export function deductReply(r: DeductResult) {
  return {
    success: true,
    recordId: r.recordId,
    requestId: r.requestId,
    freeCount: r.freeCount,
    paidCount: r.paidCount,
    amountDecimal: r.amount,
    balanceDecimal: r.balance,
    duplicate: r.duplicate,
  };
}

/** One item's DeductOutcome (DeductBatch, DeductStream). */
export function deductOutcome(o: ItemOutcome<DeductResult>, item: { requestId?: string; userId?: string }) {
  const ids = { index: o.index, requestId: item.requestId ?? '', userId: item.userId ?? '' };
  if (o.ok) return { ...ids, ok: true, reply: deductReply(o.value) };
  return { ...ids, ok: false, code: o.error.code, message: o.error.message };
}

export function accountRequest(m: Msg) {
  return validate(accountQuery, { user_id: m.userId }).user_id;
}

export function recordsRequest(m: Msg) {
  const q = validate(recordsQuery, {
    user_id: m.userId,
    page: given(m.page),
    page_size: given(m.pageSize),
    service_name: given(m.serviceName),
    type: given(m.type),
    cursor: given(m.cursor),
  });
  return {
    userId: q.user_id,
    serviceName: q.service_name,
    type: q.type,
    page: q.page,
    pageSize: q.page_size,
    cursor: q.cursor,
  };
}

export function statsRequest(m: Msg) {
  const q = validate(statsQuery, { user_id: m.userId, service_name: given(m.serviceName) });
  return { userId: q.user_id, serviceName: q.service_name };
}

export function summaryRequest(m: Msg) {
  return validate(summaryQuery, { user_id: m.userId }).user_id;
}

/** The original sends the amount as a double: taken by its shortest decimal form, at most 6 places. */
export function rechargeRequest(m: Msg) {
  const amount =
    given(m.amountDecimal) ?? (typeof m.amount === 'number' && m.amount !== 0 ? String(m.amount) : undefined);
  const b = validate(rechargeBody, {
    user_id: m.userId,
    amount,
    payment_method: m.paymentMethod,
    currency: given(m.currency),
  });
  const key = given(m.idempotencyKey) as string | undefined;
  if (key !== undefined && idempotencyKey.validate(key).error) {
    throw new AppError('VALIDATION_FAILED', 'invalid idempotencyKey', [
      { field: 'idempotencyKey', message: 'must be 1-128 printable ASCII characters without spaces' },
    ]);
  }
  return { userId: b.user_id, amount: b.amount, method: b.payment_method, currency: b.currency, idempotencyKey: key };
}

/** The first value of an ASCII metadata key, if any. */
export function metadataValue(metadata: grpc.Metadata, key: string): string | undefined {
  const v = metadata.get(key)[0];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export const RECORD_TYPE = { free: 1, balance: 2, mixed: 3 } as const;

/** The original's int32 fields stop at 2^31 - 1: protobufjs would wrap a larger count to a negative one. */
const INT32_MAX = 2_147_483_647;
const int32 = (n: number) => Math.min(n, INT32_MAX);

/** Call counts as the original's int32 fields (for old clients) and, exact, as int64 beside them. */
function counts(c: { totalCount: number; freeCount: number; paidCount: number }) {
  return {
    totalCount: int32(c.totalCount),
    freeCount: int32(c.freeCount),
    paidCount: int32(c.paidCount),
    totalCount64: String(c.totalCount),
    freeCount64: String(c.freeCount),
    paidCount64: String(c.paidCount),
  };
}

export function statsReply(s: {
  userId: string;
  serviceName: string | null;
  period: string;
  totalCount: number;
  freeCount: number;
  paidCount: number;
  totalCost: string;
}) {
  return {
    userId: s.userId,
    serviceName: s.serviceName ?? '',
    period: s.period,
    ...counts(s),
    totalCost: double(s.totalCost),
    totalCostDecimal: s.totalCost,
  };
}

export function summaryReply(s: {
  userId: string;
  totalCount: number;
  totalCost: string;
  services: { serviceName: string; totalCount: number; freeCount: number; paidCount: number; totalCost: string }[];
}) {
  return {
    userId: s.userId,
    totalCount: int32(s.totalCount),
    totalCount64: String(s.totalCount),
    totalCost: double(s.totalCost),
    totalCostDecimal: s.totalCost,
    services: s.services.map((x) => ({
      serviceName: x.serviceName,
      ...counts(x),
      totalCost: double(x.totalCost),
      totalCostDecimal: x.totalCost,
    })),
  };
}
