import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from '../lib/logger.js';
import type { BillingService } from '../services/billing.service.js';
import type { BatchService } from '../services/batch.service.js';
import type { AccountService } from '../services/account.service.js';
import type { UsageService } from '../services/usage.service.js';
import type { RechargeService } from '../services/recharge.service.js';
import type { ReservationService } from '../services/reservation.service.js';
import type { CatalogueService } from '../services/catalogue.service.js';
import type { PaymentHintService } from '../services/payment-hint.service.js';
import type { RefundService } from '../services/refund.service.js';
import { AppError } from '../lib/errors.js';
import { validate } from '../api/validation.js';
import { callbackHint } from '../api/callback.schemas.js';
import {
  BILLING_SERVICES,
  billingServices,
  loadBillingDefinition,
  loadBillingRoot,
} from '../../proto/billing/v1/billing.grpc.js';
import { authenticateFirst, bearerCheck, type AuthCheck } from './auth.js';
import { toServiceError } from './errors.js';
import { serveDeductStream } from './deduct-stream.js';
import {
  RECORD_TYPE,
  decoded,
  tolerantDecoding,
  batchSizeError,
  accountRequest,
  checkReply,
  deductOutcome,
  deductReply,
  double,
  gatewayMessages,
  metadataValue,
  rechargeRequest,
  recordsRequest,
  statsReply,
  statsRequest,
  summaryReply,
  summaryRequest,
  timestamp,
  type Msg,
} from './messages.js';

export interface GrpcServices {
  billing: BillingService;
  batches: BatchService;
  accounts: AccountService;
  usage: UsageService;
  recharges: RechargeService;
  reservations: ReservationService;
  catalogue: CatalogueService;
  paymentHints: PaymentHintService;
  refunds: RefundService;
}

export interface GrpcOptions {
  gatewayToken: string;
  callbackSecret: string;
  maxCallsPerRequest: number;
  maxBatchItems: number;
  /** largest request message accepted (a larger one is RESOURCE_EXHAUSTED before it is decoded) */
  maxMessageBytes: number;
}

export interface BillingGrpcServer {
  /** Binds host:port (0: a free port) and answers the address actually bound, as host:port. */
  listen(host: string, port: number): Promise<string>;
  /** Health NOT_SERVING, no new calls, running calls finish (forced after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

/** HTTP/2 streams one connection may have open at once: calls in flight plus DeductStreams. */
const MAX_STREAMS_PER_CONNECTION = 1000;

type Unary = (request: Msg, call: grpc.ServerUnaryCall<Msg, unknown>) => Promise<unknown>;

/**
 * The billing.v1 gRPC API (SPEC 11) over the same services as HTTP. Every rpc authenticates by
 * metadata, validates with the HTTP API's rules, and maps errors once (errors.ts).
 */
export function createGrpcServer(services: GrpcServices, opts: GrpcOptions, logger: Logger): BillingGrpcServer {
  const { billing, batches, accounts, usage, recharges, reservations, catalogue, paymentHints, refunds } = services;
  const messages = gatewayMessages(opts.maxCallsPerRequest);
  const definition = loadBillingDefinition();
  const root = loadBillingRoot();
  const { BillingService: UserApi, BillingInternalService: InternalApi } = billingServices(definition);

  // Every rpc of billing.v1 is authenticated before its message is read: the payment service's
  // callback by the callback secret, the rest by the gateway token. Health and reflection are open.
  const gatewayAuth = bearerCheck(opts.gatewayToken);
  const callbackAuth = bearerCheck(opts.callbackSecret);
  const callbackPath = `/${BILLING_SERVICES[1]}/RechargeCallback`;
  const billingPrefixes = BILLING_SERVICES.map((name) => `/${name}/`);
  const checkOf = (path: string): AuthCheck | undefined => {
    if (path === callbackPath) return callbackAuth;
    return billingPrefixes.some((prefix) => path.startsWith(prefix)) ? gatewayAuth : undefined;
  };

  const server = new grpc.Server({
    interceptors: [authenticateFirst(checkOf, logger)],
    // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (Node's default: 2^32 - 1)
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
    'grpc.max_receive_message_length': opts.maxMessageBytes,
    'grpc.max_send_message_length': 16 * opts.maxMessageBytes,
    // No channelz: its per-call bookkeeping was ~2.5 % of the API's CPU per gRPC deduct, for a
    // debugging service nothing here serves.
    'grpc.enable_channelz': 0,
  });

  // Authenticated already (authenticateFirst).
  const unary =
    (method: string, handle: Unary): grpc.handleUnaryCall<Msg, unknown> =>
    (call, callback) => {
      (async () => handle(decoded(call.request), call))().then(
        (reply) => callback(null, reply),
        (err: unknown) => callback(toServiceError(err, logger, method)),
      );
    };

  const batchItems = (request: Msg): Msg[] => {
    const items = request.items as Msg[]; // decoded: an array, maybe empty
    if (items.length === 0 || items.length > opts.maxBatchItems) throw batchSizeError(opts.maxBatchItems);
    return items;
  };

  server.addService(tolerantDecoding(UserApi.service, root.lookupService(BILLING_SERVICES[0]), opts.maxBatchItems), {
    GetAccount: unary('GetAccount', async (req) => {
      const a = await accounts.view(accountRequest(req));
      return {
        userId: a.userId,
        balance: double(a.balance),
        balanceDecimal: a.balance,
        heldAmountDecimal: a.heldAmount,
        currency: a.currency,
        quotas: a.quotas.map((q) => ({
          serviceName: q.serviceName,
          totalQuota: q.totalQuota,
          usedQuota: q.usedQuota,
          remainingQuota: q.remainingQuota,
          resetMonth: q.period,
        })),
      };
    }),
    Recharge: unary('Recharge', async (req, call) => {
      const peer = call
        .getPeer()
        .replace(/:\d+$/, '')
        .replace(/^\[|\]$/g, '');
      const order = await recharges.create({ ...rechargeRequest(req), clientIp: peer });
      return {
        rechargeOrderId: order.orderId,
        paymentUrl: order.paymentUrl ?? '',
        paymentId: order.paymentId ?? '',
        status: order.status,
        amountDecimal: order.amount,
        payCode: order.payCode ?? '',
      };
    }),
    ListRecords: unary('ListRecords', async (req) => {
      const page = await usage.records(recordsRequest(req));
      return {
        records: page.records.map((r) => ({
          id: r.id,
          serviceName: r.serviceName,
          type: RECORD_TYPE[r.type as keyof typeof RECORD_TYPE] ?? 0,
          amount: double(r.amount),
          count: r.count,
          createdAt: timestamp(r.createdAt),
          amountDecimal: r.amount,
          requestId: r.requestId,
          freeCount: r.freeCount,
          paidCount: r.paidCount,
          unitPriceDecimal: r.unitPrice ?? '',
          refundedCount: r.refundedCount,
          refundedAmountDecimal: r.refundedAmount,
        })),
        total: page.total,
        nextCursor: page.nextCursor ?? '',
        page: page.page,
        pageSize: page.pageSize,
      };
    }),
    GetStatsToday: unary('GetStatsToday', async (req) => {
      const q = statsRequest(req);
      return statsReply(await usage.today(q.userId, q.serviceName));
    }),
    GetStatsMonth: unary('GetStatsMonth', async (req) => {
      const q = statsRequest(req);
      return statsReply(await usage.month(q.userId, q.serviceName));
    }),
    GetStatsSummary: unary('GetStatsSummary', async (req) => summaryReply(await usage.summary(summaryRequest(req)))),
    ListServices: unary('ListServices', async () => ({
      services: catalogue.list().map((s) => ({
        serviceName: s.serviceName,
        freeQuota: String(s.freeQuota),
        unitPrice: s.unitPrice ?? '',
        currency: s.currency,
      })),
    })),
  });

  server.addService(
    tolerantDecoding(InternalApi.service, root.lookupService(BILLING_SERVICES[1]), opts.maxBatchItems),
    {
      CheckQuota: unary('CheckQuota', async (req) => checkReply(await batches.check(messages.check(req)))),
      DeductQuota: unary('DeductQuota', async (req, call) =>
        deductReply(await billing.deduct(messages.deduct(req, metadataValue(call.metadata, 'x-request-id')))),
      ),
      RechargeCallback: unary('RechargeCallback', async (req) => {
        const hint = validate(callbackHint, { order_id: req.rechargeOrderId, payment_id: req.paymentId });
        const outcome = await paymentHints.confirm(hint.order_id, hint.payment_id);
        return { success: outcome !== 'not_paid', outcome };
      }),
      DeductBatch: unary('DeductBatch', async (req) => {
        // The whole envelope is validated before any item runs: one bad item refuses the batch.
        const inputs = batchItems(req).map((item, index) => {
          try {
            return messages.deduct(item);
          } catch (err) {
            if (err instanceof AppError && err.details) {
              throw new AppError(
                err.kind,
                `items[${index}]: ${err.message}`,
                err.details.map((d) => ({ ...d, field: `items[${index}].${d.field}` })),
              );
            }
            throw err;
          }
        });
        const outcomes = await batches.deductBatch(inputs);
        return { results: outcomes.map((o) => deductOutcome(o, inputs[o.index])) };
      }),
      DeductStream: (call: grpc.ServerDuplexStream<Msg, unknown>) => {
        serveDeductStream(call, batches, (m) => messages.deduct(m), logger);
      },
      Reserve: unary('Reserve', async (req) => {
        const r = await reservations.reserve(messages.reserve(req));
        return {
          reservationId: r.reservationId,
          requestId: r.requestId,
          status: r.status,
          expiresAt: timestamp(r.expiresAt),
          freeCount: r.freeCount,
          paidCount: r.paidCount,
          heldAmountDecimal: r.heldAmount,
          balanceDecimal: r.balance,
          duplicate: r.duplicate,
        };
      }),
      CommitReservation: unary('CommitReservation', async (req) => {
        const { id, count } = messages.commit(req);
        const r = await reservations.commit(id, count);
        return {
          reservationId: r.reservationId,
          status: r.status,
          recordId: r.recordId ?? '',
          count: r.count,
          freeCount: r.freeCount,
          paidCount: r.paidCount,
          amountDecimal: r.amount,
          releasedAmountDecimal: r.releasedAmount,
          balanceDecimal: r.balance,
          duplicate: r.duplicate,
        };
      }),
      ReleaseReservation: unary('ReleaseReservation', async (req) => {
        const r = await reservations.release(messages.release(req));
        return {
          reservationId: r.reservationId,
          status: r.status,
          releasedAmountDecimal: r.releasedAmount,
          balanceDecimal: r.balance,
          duplicate: r.duplicate,
        };
      }),
      Refund: unary('Refund', async (req) => {
        const r = await refunds.refund(messages.refund(req));
        const { amount, balance, ...rest } = r;
        return { ...rest, amountDecimal: amount, balanceDecimal: balance };
      }),
    },
  );

  const health = new HealthImplementation(
    Object.fromEntries(['', ...BILLING_SERVICES].map((name) => [name, 'SERVING'])),
  );
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.bindAsync(
          `${host.includes(':') ? `[${host}]` : host}:${port}`,
          grpc.ServerCredentials.createInsecure(),
          (err, bound) => {
            if (err) reject(err);
            else resolve(`${host.includes(':') ? `[${host}]` : host}:${bound}`);
          },
        );
      });
    },
    stop(graceMs = 10_000) {
      for (const name of ['', ...BILLING_SERVICES]) health.setStatus(name, 'NOT_SERVING');
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
