import type Joi from 'joi';
import { createRequire } from 'node:module';
import { ErrorCodes, type ErrorKind } from '../lib/errors.js';
import { gatewaySchemas } from './gateway.schemas.js';
import { reservationSchemas } from './reservation.schemas.js';
import { accountQuery } from './account.schemas.js';
import { recordsQuery, statsQuery, summaryQuery, dailyQuery } from './usage.schemas.js';
import { rechargeBody, orderParams, orderQuery } from './recharge.schemas.js';
import { callbackBody } from './callback.schemas.js';
import {
  adjustmentBody,
  userParams,
  ledgerQuery,
  runsQuery,
  runParams,
  runBody,
  deadLetterQuery,
  deadLetterRetryBody,
  jobParams,
  jobRetryBody,
} from './admin.schemas.js';
import { exportQuery } from './export.schemas.js';
import {
  grantBody,
  grantParams,
  voidBody,
  limitsBody,
  limitsQuery,
  pricingParams,
  pricingBody,
} from './money-features.schemas.js';
import { refundSchemas } from './refund.schemas.js';
import {
  alertsBody,
  alertsQuery,
  eventsQuery,
  eventParams,
  webhookBody,
  webhookParams,
  deliveriesQuery,
  resendBody,
  emptyBody,
  portalAlertsBody,
} from './event.schemas.js';
import { EVENT_TYPES } from '../lib/events.js';
import { statementParams, statementQuery } from './statement.schemas.js';
import {
  portalSessionBody,
  portalRecordsQuery,
  portalUsageQuery,
  portalRechargeBody,
  portalOrderParams,
} from './portal.schemas.js';

/*
 * The OpenAPI 3.1 document of the HTTP API. Requests are converted from the very joi schemas that
 * validate them (joi-to-json), so the document cannot drift from what is enforced; answers are JSON
 * Schemas written once here, under components, and checked against every answer the tests receive.
 */

// The package is CommonJS whose typings declare a default export it does not have: load it as it is.
const joiToJson = createRequire(import.meta.url)('joi-to-json') as typeof import('joi-to-json').parse;

type Json = Record<string, unknown>;
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const str = (extra: Json = {}): Json => ({ type: 'string', ...extra });
const int = (extra: Json = {}): Json => ({ type: 'integer', ...extra });
const bool: Json = { type: 'boolean' };
const nullable = (schema: Json): Json => ({ anyOf: [schema, { type: 'null' }] });
const money = ref('Money');
const instant = str({ format: 'date-time' });
/** An object with exactly these properties; `optional` ones may be absent. */
function obj(props: Record<string, Json>, optional: string[] = [], open = false): Json {
  return {
    type: 'object',
    properties: props,
    required: Object.keys(props).filter((k) => !optional.includes(k)),
    additionalProperties: open,
  };
}
const arrayOf = (items: Json): Json => ({ type: 'array', items });

const usageSums = { totalCount: int(), freeCount: int(), paidCount: int(), totalCost: money };
const figure = obj({ entries: int({ minimum: 0 }), amount: money });

const CHECK = {
  allowed: bool,
  reason: str({
    enum: ['free', 'balance', 'insufficient_balance', 'insufficient_quota', 'limit_reached', 'too_many_calls'],
  }),
  freeRemaining: int(),
  balance: money,
};
const DEDUCT = {
  success: bool,
  recordId: str(),
  requestId: str(),
  freeCount: int(),
  paidCount: int(),
  amount: money,
  balance: money,
  duplicate: bool,
};
/**
 * A batch's answers in item order: each the single call's answer (`ok: true`), or its error: a refusal, or
 * 50300 (an outage: the item may have applied; retry it with the same request id).
 */
const batchOf = (answer: Record<string, Json>): Json =>
  obj({
    results: arrayOf({
      anyOf: [
        obj({ index: int(), ok: { const: true }, ...answer }),
        {
          ...obj({ index: int(), ok: { const: false }, code: int(), message: str() }),
          description:
            'a refusal (changed nothing), or 50300: an outage, after which the item may have applied; retry it ' +
            'with the same request_id, which answers the first outcome if it did',
        },
      ],
    }),
  });

/** Answers (the `data` of a success), each described once. */
const ANSWERS: Record<string, Json> = {
  Money: str({
    pattern: '^-?\\d+\\.\\d{2,6}$',
    description: 'exact decimal amount in currency units (micro-unit precision)',
    examples: ['100.00', '0.0015'],
  }),
  Error: obj(
    {
      success: { const: false },
      code: int({ enum: [...new Set(Object.values(ErrorCodes).map((e) => e.code))] }),
      message: str(),
      details: arrayOf(obj({ field: str(), message: str() })),
      correlationId: str({ description: 'for 5xx answers: the id under which the error was logged' }),
    },
    ['details', 'correlationId'],
  ),
  CheckResult: obj(CHECK),
  DeductResult: obj(DEDUCT),
  CheckBatch: batchOf(CHECK),
  DeductBatch: batchOf(DEDUCT),
  Reservation: obj(
    {
      reservationId: str(),
      requestId: str(),
      status: str({ enum: ['held'] }),
      expiresAt: instant,
      count: int(),
      freeCount: int(),
      paidCount: int(),
      heldAmount: money,
      balance: money,
      duplicate: bool,
    },
    ['count'],
  ),
  ReservationCommit: obj(
    {
      reservationId: str(),
      status: str({ enum: ['committed'] }),
      recordId: nullable(str()),
      count: int(),
      freeCount: int(),
      paidCount: int(),
      amount: money,
      releasedAmount: money,
      balance: money,
      duplicate: bool,
    },
    ['recordId'],
  ),
  Refund: obj({
    refundId: str(),
    recordId: str(),
    count: int(),
    freeCount: int(),
    paidCount: int(),
    amount: money,
    balance: money,
    duplicate: bool,
  }),
  ReservationRelease: obj({
    reservationId: str(),
    status: str({ enum: ['released'] }),
    releasedAmount: money,
    balance: money,
    duplicate: bool,
  }),
  Account: obj({
    userId: str(),
    balance: money,
    heldAmount: money,
    currency: str(),
    grants: arrayOf(obj({ grantId: str(), category: str(), remaining: money, expiresAt: nullable(instant) })),
    quotas: arrayOf(
      obj({ serviceName: str(), totalQuota: int(), usedQuota: int(), remainingQuota: int(), period: str() }),
    ),
  }),
  Services: arrayOf(obj({ serviceName: str(), freeQuota: int(), unitPrice: nullable(money), currency: str() })),
  Records: obj({
    records: arrayOf(
      obj({
        id: str(),
        requestId: str(),
        serviceName: str(),
        type: str({ enum: ['free', 'balance', 'mixed'] }),
        count: int(),
        freeCount: int(),
        paidCount: int(),
        amount: money,
        unitPrice: nullable(money),
        refundedCount: int({ minimum: 0 }),
        refundedAmount: money,
        createdAt: instant,
      }),
    ),
    total: int(),
    page: int(),
    pageSize: int(),
    nextCursor: nullable(str()),
  }),
  PeriodStats: obj(
    {
      userId: str(),
      serviceName: nullable(str()),
      period: str({ enum: ['today', 'month'] }),
      day: str(),
      month: str(),
      ...usageSums,
    },
    ['day', 'month'],
  ),
  SummaryStats: obj({
    userId: str(),
    totalCount: int(),
    totalCost: money,
    services: arrayOf(obj({ serviceName: str(), ...usageSums })),
  }),
  DailyStats: obj({
    userId: str(),
    serviceName: nullable(str()),
    from: str({ format: 'date' }),
    to: str({ format: 'date' }),
    days: arrayOf(obj({ day: str({ format: 'date' }), ...usageSums })),
  }),
  RechargeOrder: obj(
    {
      orderId: str(),
      userId: str(),
      paymentId: nullable(str()),
      paymentUrl: nullable(str()),
      payCode: str(),
      payParams: { type: 'object' },
      status: str({ enum: ['pending', 'paid', 'failed', 'closed'] }),
      amount: money,
      currency: str(),
      paymentMethod: str({ enum: ['wechat', 'alipay'] }),
      createdAt: instant,
      paidAt: nullable(instant),
      failureReason: str(),
      underReview: bool,
      duplicate: bool,
    },
    ['payCode', 'payParams', 'failureReason', 'underReview', 'duplicate'],
  ),
  CallbackResult: obj({ orderId: str(), outcome: str({ enum: ['queued', 'already_paid', 'closed'] }) }),
  Statement: obj({
    userId: str(),
    month: str({ pattern: '^\\d{4}-\\d{2}$' }),
    timeZone: str(),
    currency: str(),
    periodStart: instant,
    periodEnd: instant,
    closed: bool,
    openingBalance: money,
    recharges: figure,
    charges: {
      ...figure,
      properties: {
        ...(figure.properties as Json),
        services: arrayOf(obj({ serviceName: str(), entries: int(), amount: money })),
      },
      required: ['entries', 'amount', 'services'],
    },
    refunds: figure,
    adjustments: figure,
    otherEntries: arrayOf(obj({ entryType: str(), entries: int(), amount: money })),
    closingBalance: money,
    openingGrantBalance: money,
    grants: figure,
    grantSpending: figure,
    grantRefunds: figure,
    grantExpiries: figure,
    closingGrantBalance: money,
  }),
  PortalSession: obj({ url: str({ format: 'uri' }), expiresAt: instant }),
  PortalUsage: obj({
    userId: str(),
    from: str({ format: 'date' }),
    to: str({ format: 'date' }),
    days: arrayOf(str({ format: 'date' })),
    services: arrayOf(obj({ serviceName: str(), calls: arrayOf(int()), cost: arrayOf(money) })),
  }),
  Health: obj({ status: str({ enum: ['ok'] }) }),
  LegacyHealth: obj({ status: str({ enum: ['UP'] }), service: str() }),
  Ready: obj({ status: str({ enum: ['ready'] }), redis: str(), mysql: str() }),
  // Operators' answers: their main fields are fixed, more may be added for diagnosis.
  Grant: obj(
    {
      grantId: str(),
      userId: str(),
      category: str({ enum: ['promotional', 'paid'] }),
      priority: int(),
      amount: money,
      remaining: money,
      expiresAt: nullable(instant),
      createdAt: instant,
      status: str({ enum: ['active', 'expired', 'voided'] }),
      duplicate: bool,
    },
    ['duplicate'],
  ),
  Grants: obj({ grants: arrayOf(ref('Grant')) }),
  GrantVoid: obj({ grantId: str(), voided: money, pending: bool }),
  PricingList: obj({ pricing: arrayOf(ref('Pricing')) }),
  Limits: obj({
    userId: str(),
    daily: nullable(money),
    monthly: nullable(money),
    spentToday: money,
    spentThisMonth: money,
  }),
  Pricing: obj({
    userId: str(),
    serviceName: str(),
    freeQuota: int(),
    unitPrice: nullable(money),
    overridden: bool,
  }),
  Adjustment: obj({ userId: str(), idempotencyKey: str(), amount: money, applied: bool, balance: money }),
  Ledger: obj(
    {
      userId: str(),
      entries: arrayOf(
        obj({ id: str(), type: str(), ref: str(), amount: money, note: nullable(str()), createdAt: instant }, [], true),
      ),
    },
    [],
    true,
  ),
  AccountDetail: obj(
    { userId: str(), balance: money, mysqlBalance: money, ledgerSum: money, unpersistedChanges: int() },
    [],
    true,
  ),
  ReconciliationRuns: obj({
    runs: arrayOf({ type: 'object', properties: { id: int(), status: str() }, required: ['id', 'status'] }),
  }),
  ReconciliationRunStarted: { type: 'object', properties: { id: int(), status: str() }, required: ['id', 'status'] },
  ReconciliationRun: obj(
    {
      id: int(),
      status: str(),
      repairs: arrayOf(
        obj(
          {
            userId: nullable(str()),
            kind: str(),
            subject: str(),
            before: nullable(str()),
            after: nullable(str()),
            repaired: bool,
            note: nullable(str()),
          },
          [],
          true,
        ),
      ),
    },
    [],
    true,
  ),
  DeadLetters: obj({ deadLetters: arrayOf({ type: 'object' }) }),
  DeadLetterRetry: obj({ userId: str(), changeId: str(), status: str({ enum: ['queued'] }) }),
  JobRetry: obj({ queue: str(), jobId: str(), job: str(), status: str({ enum: ['retried'] }) }),
  AlertSettings: obj({
    userId: str(),
    balanceLow: money,
    quotaLowPercent: int({ minimum: 1, maximum: 100 }),
    defaults: obj({ balanceLow: bool, quotaLowPercent: bool }),
  }),
  Event: obj({
    id: str(),
    type: str({ enum: [...EVENT_TYPES] }),
    userId: str(),
    createdAt: instant,
    data: { type: 'object', additionalProperties: str() },
  }),
  Events: obj({ events: arrayOf(ref('Event')), nextCursor: nullable(str()) }),
  WebhookEndpoint: obj(
    {
      id: str(),
      url: str(),
      events: arrayOf(str()),
      description: str(),
      createdAt: instant,
      previousSecretUntil: nullable(instant),
      secret: str({ description: 'only when created or rotated' }),
    },
    ['secret'],
  ),
  WebhookEndpoints: obj({ endpoints: arrayOf(ref('WebhookEndpoint')) }),
  WebhookDeleted: obj({ id: str(), deleted: { const: true } }),
  WebhookDeliveries: obj({
    deliveries: arrayOf(
      obj({
        id: str(),
        eventId: str(),
        attempt: int(),
        statusCode: nullable(int()),
        latencyMs: int(),
        responseExcerpt: nullable(str({ maxLength: 1024 })),
        error: nullable(str()),
        delivered: bool,
        at: instant,
      }),
    ),
    nextCursor: nullable(str()),
  }),
  WebhookResend: obj({ endpointId: str(), eventId: str(), jobId: str() }),
};

type Auth = 'gateway' | 'admin' | 'signature' | 'board' | 'portal' | 'none';

interface Operation {
  method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI path, parameters in braces */
  path: string;
  tag: string;
  summary: string;
  auth: Auth;
  params?: Joi.ObjectSchema;
  query?: Joi.ObjectSchema;
  body?: Joi.ObjectSchema;
  /** extra request headers (name → description) */
  headers?: Record<string, string>;
  /** name of the answer under components.schemas, wrapped in the success envelope */
  answer?: string;
  /** name of an answer sent as it is, without the envelope */
  bare?: string;
  /** a non-JSON answer: its content type and description */
  raw?: { type: string; description: string };
  /** HTTP status of the success answer (default 200) */
  status?: number;
  errors?: ErrorKind[];
}

const SECURITY: Record<Exclude<Auth, 'none'>, Json> = {
  gateway: { type: 'http', scheme: 'bearer', description: 'the gateway token (GATEWAY_TOKEN)' },
  admin: { type: 'http', scheme: 'bearer', description: 'the admin token (ADMIN_TOKEN)' },
  signature: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Payment-Signature',
    description: 't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
  },
  board: { type: 'http', scheme: 'basic', description: 'Bull Board user and password (or the admin bearer token)' },
  portal: {
    type: 'apiKey',
    in: 'header',
    name: 'X-Portal-Session',
    description: 'the signed session of a portal link',
  },
};

/** Every HTTP endpoint of the service. */
function operations(maxCalls: number, maxBatchItems: number): Operation[] {
  const gw = gatewaySchemas(maxCalls, maxBatchItems);
  const rsv = reservationSchemas(maxCalls);
  const G = '/internal/v1/billing';
  const U = '/api/v1/billing';
  return [
    {
      method: 'post',
      path: `${G}/check`,
      tag: 'gateway',
      summary: 'May this call be served? (read-only)',
      auth: 'gateway',
      body: gw.check,
      answer: 'CheckResult',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'post',
      path: `${G}/deduct`,
      tag: 'gateway',
      summary: 'Charge a call, idempotent by request_id',
      auth: 'gateway',
      body: gw.deduct,
      answer: 'DeductResult',
      errors: [
        'VALIDATION_FAILED',
        'UNKNOWN_SERVICE',
        'INSUFFICIENT_BALANCE',
        'INSUFFICIENT_QUOTA',
        'SPENDING_LIMIT_REACHED',
        'REQUEST_ID_REUSED',
      ],
    },
    {
      method: 'post',
      path: `${G}/check/batch`,
      tag: 'gateway',
      summary: 'Checks in one request, answered in item order',
      auth: 'gateway',
      body: gw.checkBatch,
      answer: 'CheckBatch',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: `${G}/deduct/batch`,
      tag: 'gateway',
      summary: 'Deducts in one request, each atomic and idempotent on its own',
      auth: 'gateway',
      body: gw.deductBatch,
      answer: 'DeductBatch',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: `${G}/reservations`,
      tag: 'gateway',
      summary: 'Hold free quota and balance for a call',
      auth: 'gateway',
      body: rsv.reserve,
      answer: 'Reservation',
      errors: [
        'VALIDATION_FAILED',
        'UNKNOWN_SERVICE',
        'INSUFFICIENT_BALANCE',
        'INSUFFICIENT_QUOTA',
        'SPENDING_LIMIT_REACHED',
        'REQUEST_ID_REUSED',
      ],
    },
    {
      method: 'post',
      path: `${G}/reservations/{id}/commit`,
      tag: 'gateway',
      summary: 'Charge what was used of a hold, return the rest',
      auth: 'gateway',
      params: rsv.params,
      body: rsv.commit,
      answer: 'ReservationCommit',
      errors: ['VALIDATION_FAILED', 'RESERVATION_NOT_FOUND', 'REQUEST_ID_REUSED'],
    },
    {
      method: 'post',
      path: `${G}/reservations/{id}/release`,
      tag: 'gateway',
      summary: 'Return a whole hold',
      auth: 'gateway',
      params: rsv.params,
      body: rsv.release,
      answer: 'ReservationRelease',
      errors: ['VALIDATION_FAILED', 'RESERVATION_NOT_FOUND'],
    },
    {
      method: 'post',
      path: `${G}/refunds`,
      tag: 'gateway',
      summary: 'Refund calls of a deduct (paid first, then free), idempotent by refund_id',
      auth: 'gateway',
      body: refundSchemas(maxCalls).refund,
      answer: 'Refund',
      errors: ['VALIDATION_FAILED', 'REFUND_NOT_POSSIBLE', 'REFUND_NOT_FOUND'],
    },
    {
      method: 'post',
      path: `${G}/callback`,
      tag: 'payment',
      summary: 'Result of a payment (payment service)',
      auth: 'signature',
      body: callbackBody,
      answer: 'CallbackResult',
      errors: ['VALIDATION_FAILED', 'ORDER_NOT_FOUND', 'CALLBACK_MISMATCH', 'DUPLICATE_RECHARGE', 'PAYLOAD_TOO_LARGE'],
    },
    {
      method: 'get',
      path: `${U}/account`,
      tag: 'user',
      summary: "Balance and this month's free quotas",
      auth: 'gateway',
      query: accountQuery,
      answer: 'Account',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: `${U}/services`,
      tag: 'user',
      summary: 'The service catalogue',
      auth: 'gateway',
      answer: 'Services',
    },
    {
      method: 'get',
      path: `${U}/records`,
      tag: 'user',
      summary: 'Consumption records, newest first',
      auth: 'gateway',
      query: recordsQuery,
      answer: 'Records',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: `${U}/records/export`,
      tag: 'user',
      summary: 'Consumption records as a CSV download (streamed, any range)',
      auth: 'gateway',
      query: exportQuery,
      raw: { type: 'text/csv', description: 'CSV (RFC 4180, CRLF), spreadsheet-safe cells, as an attachment' },
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: `${U}/stats/today`,
      tag: 'user',
      summary: 'Calls and cost today',
      auth: 'gateway',
      query: statsQuery,
      answer: 'PeriodStats',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: `${U}/stats/month`,
      tag: 'user',
      summary: 'Calls and cost this month',
      auth: 'gateway',
      query: statsQuery,
      answer: 'PeriodStats',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: `${U}/stats/summary`,
      tag: 'user',
      summary: 'Calls and cost per service, all time',
      auth: 'gateway',
      query: summaryQuery,
      answer: 'SummaryStats',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: `${U}/stats/daily`,
      tag: 'user',
      summary: 'One row per business day, for charts',
      auth: 'gateway',
      query: dailyQuery,
      answer: 'DailyStats',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: `${U}/statements/{month}`,
      tag: 'user',
      summary: 'Monthly statement from the ledger (format=csv: a CSV attachment)',
      auth: 'gateway',
      params: statementParams,
      query: statementQuery,
      answer: 'Statement',
      raw: { type: 'text/csv', description: 'with format=csv: line, service_name, entries, amount' },
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: `${U}/recharge`,
      tag: 'user',
      summary: 'Start a recharge: an order and its payment',
      auth: 'gateway',
      body: rechargeBody,
      headers: { 'Idempotency-Key': '1-128 printable ASCII characters: a repeat returns the same order' },
      answer: 'RechargeOrder',
      errors: ['VALIDATION_FAILED', 'PAYMENT_UNAVAILABLE', 'REQUEST_ID_REUSED'],
    },
    {
      method: 'get',
      path: `${U}/recharge/{order_id}`,
      tag: 'user',
      summary: 'A recharge order and its status',
      auth: 'gateway',
      params: orderParams,
      query: orderQuery,
      answer: 'RechargeOrder',
      errors: ['VALIDATION_FAILED', 'ORDER_NOT_FOUND'],
    },
    {
      method: 'post',
      path: `${U}/portal-sessions`,
      tag: 'portal',
      summary: 'A signed customer-portal link, valid one hour',
      auth: 'gateway',
      body: portalSessionBody,
      answer: 'PortalSession',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/portal/v1/account',
      tag: 'portal',
      summary: "The session user's balance and free quotas",
      auth: 'portal',
      answer: 'Account',
    },
    {
      method: 'get',
      path: '/portal/v1/records',
      tag: 'portal',
      summary: "The session user's records",
      auth: 'portal',
      query: portalRecordsQuery,
      answer: 'Records',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: '/portal/v1/usage',
      tag: 'portal',
      summary: "The session user's calls and cost per day and service",
      auth: 'portal',
      query: portalUsageQuery,
      answer: 'PortalUsage',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: '/portal/v1/recharge',
      tag: 'portal',
      summary: 'Start a recharge for the session user',
      auth: 'portal',
      body: portalRechargeBody,
      answer: 'RechargeOrder',
      errors: ['VALIDATION_FAILED', 'PAYMENT_UNAVAILABLE'],
    },
    {
      method: 'get',
      path: '/portal/v1/recharge/{order_id}',
      tag: 'portal',
      summary: "One of the session user's orders",
      auth: 'portal',
      params: portalOrderParams,
      answer: 'RechargeOrder',
      errors: ['VALIDATION_FAILED', 'ORDER_NOT_FOUND'],
    },
    {
      method: 'get',
      path: '/portal',
      tag: 'portal',
      summary: "The customer portal page (the link's token is in the fragment)",
      auth: 'none',
      raw: {
        type: 'text/html',
        description: 'the portal page; its scripts and styles under /portal/assets and /portal/vendor',
      },
    },
    {
      method: 'get',
      path: `${U}/alerts`,
      tag: 'user',
      summary: "A user's alert thresholds (balance.low, quota.low)",
      auth: 'gateway',
      query: alertsQuery,
      answer: 'AlertSettings',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'put',
      path: `${U}/alerts`,
      tag: 'user',
      summary: 'Set alert thresholds (null: back to the default); used from the next change',
      auth: 'gateway',
      body: alertsBody,
      answer: 'AlertSettings',
    },
    {
      method: 'get',
      path: '/portal/v1/alerts',
      tag: 'portal',
      summary: "The session user's alert thresholds",
      auth: 'portal',
      answer: 'AlertSettings',
    },
    {
      method: 'put',
      path: '/portal/v1/alerts',
      tag: 'portal',
      summary: "Set the session user's alert thresholds",
      auth: 'portal',
      body: portalAlertsBody,
      answer: 'AlertSettings',
    },
    {
      method: 'get',
      path: '/admin/v1/events',
      tag: 'admin',
      summary: 'Stored events, newest first, by cursor',
      auth: 'admin',
      query: eventsQuery,
      answer: 'Events',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/admin/v1/events/{id}',
      tag: 'admin',
      summary: 'One stored event',
      auth: 'admin',
      params: eventParams,
      answer: 'Event',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'post',
      path: '/admin/v1/webhooks',
      tag: 'admin',
      summary: 'Create a webhook endpoint; its signing secret is shown once',
      auth: 'admin',
      body: webhookBody,
      answer: 'WebhookEndpoint',
      status: 201,
    },
    {
      method: 'get',
      path: '/admin/v1/webhooks',
      tag: 'admin',
      summary: 'Webhook endpoints',
      auth: 'admin',
      answer: 'WebhookEndpoints',
    },
    {
      method: 'get',
      path: '/admin/v1/webhooks/{id}',
      tag: 'admin',
      summary: 'One webhook endpoint',
      auth: 'admin',
      params: webhookParams,
      answer: 'WebhookEndpoint',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'delete',
      path: '/admin/v1/webhooks/{id}',
      tag: 'admin',
      summary: 'Delete a webhook endpoint (its queued deliveries stop)',
      auth: 'admin',
      params: webhookParams,
      answer: 'WebhookDeleted',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'post',
      path: '/admin/v1/webhooks/{id}/rotate-secret',
      tag: 'admin',
      summary: 'A new signing secret; the old one keeps signing beside it for webhooks.secret_overlap',
      auth: 'admin',
      params: webhookParams,
      body: emptyBody,
      answer: 'WebhookEndpoint',
      errors: ['NOT_FOUND'],
    },
    {
      method: 'get',
      path: '/admin/v1/webhooks/{id}/deliveries',
      tag: 'admin',
      summary: 'Every delivery attempt to an endpoint, newest first',
      auth: 'admin',
      params: webhookParams,
      query: deliveriesQuery,
      answer: 'WebhookDeliveries',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'post',
      path: '/admin/v1/webhooks/{id}/resend',
      tag: 'admin',
      summary: 'Send an event to an endpoint again (a new delivery job)',
      auth: 'admin',
      params: webhookParams,
      body: resendBody,
      answer: 'WebhookResend',
      status: 202,
      errors: ['NOT_FOUND'],
    },
    {
      method: 'post',
      path: '/admin/v1/accounts/{user_id}/adjustments',
      tag: 'admin',
      summary: 'Credit or debit a balance through the ledger',
      auth: 'admin',
      params: userParams,
      body: adjustmentBody,
      answer: 'Adjustment',
      errors: ['VALIDATION_FAILED', 'INSUFFICIENT_BALANCE', 'REQUEST_ID_REUSED'],
    },
    {
      method: 'post',
      path: '/admin/v1/accounts/{user_id}/grants',
      tag: 'admin',
      summary: 'Give a credit grant (promotional or paid, priority, optional expiry); idempotent by grant_id',
      auth: 'admin',
      params: userParams,
      body: grantBody,
      answer: 'Grant',
      errors: ['VALIDATION_FAILED', 'REQUEST_ID_REUSED'],
    },
    {
      method: 'get',
      path: '/admin/v1/accounts/{user_id}/grants',
      tag: 'admin',
      summary: "A user's credit grants, newest first",
      auth: 'admin',
      params: userParams,
      answer: 'Grants',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: '/admin/v1/accounts/{user_id}/grants/{grant_id}/void',
      tag: 'admin',
      summary: 'Void a grant: what is left of it leaves by the ledger',
      auth: 'admin',
      params: grantParams,
      body: voidBody,
      answer: 'GrantVoid',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'put',
      path: '/admin/v1/accounts/{user_id}/pricing/{service_name}',
      tag: 'admin',
      summary: "Override a service's free quota and unit price for one user (null: the catalogue's)",
      auth: 'admin',
      params: pricingParams,
      body: pricingBody,
      answer: 'Pricing',
      errors: ['VALIDATION_FAILED', 'UNKNOWN_SERVICE'],
    },
    {
      method: 'get',
      path: '/admin/v1/accounts/{user_id}/pricing',
      tag: 'admin',
      summary: 'The free quota and unit price a user is charged, per service',
      auth: 'admin',
      params: userParams,
      answer: 'PricingList',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'put',
      path: '/api/v1/billing/limits',
      tag: 'user',
      summary: 'Set spending limits per business day and month (null removes one)',
      auth: 'gateway',
      body: limitsBody,
      answer: 'Limits',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/api/v1/billing/limits',
      tag: 'user',
      summary: "A user's spending limits and what was spent today and this month",
      auth: 'gateway',
      query: limitsQuery,
      answer: 'Limits',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/admin/v1/accounts/{user_id}/ledger',
      tag: 'admin',
      summary: 'Ledger entries of a user, newest first',
      auth: 'admin',
      params: userParams,
      query: ledgerQuery,
      answer: 'Ledger',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/admin/v1/accounts/{user_id}',
      tag: 'admin',
      summary: "A user's balances in Redis and MySQL, and the ledger sum",
      auth: 'admin',
      params: userParams,
      answer: 'AccountDetail',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/admin/v1/reconciliation/runs',
      tag: 'admin',
      summary: 'Reconciliation runs, newest first',
      auth: 'admin',
      query: runsQuery,
      answer: 'ReconciliationRuns',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: '/admin/v1/reconciliation/runs',
      tag: 'admin',
      summary: 'Queue a reconciliation run now',
      auth: 'admin',
      body: runBody,
      answer: 'ReconciliationRunStarted',
      status: 202,
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'get',
      path: '/admin/v1/reconciliation/runs/{id}',
      tag: 'admin',
      summary: 'What a run found and repaired',
      auth: 'admin',
      params: runParams,
      answer: 'ReconciliationRun',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'get',
      path: '/admin/v1/dead-letters',
      tag: 'admin',
      summary: 'Changes MySQL refused even alone',
      auth: 'admin',
      query: deadLetterQuery,
      answer: 'DeadLetters',
      errors: ['VALIDATION_FAILED'],
    },
    {
      method: 'post',
      path: '/admin/v1/dead-letters/retry',
      tag: 'admin',
      summary: 'Retry a dead letter (who and why are logged)',
      auth: 'admin',
      body: deadLetterRetryBody,
      answer: 'DeadLetterRetry',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'post',
      path: '/admin/v1/jobs/{queue}/{job_id}/retry',
      tag: 'admin',
      summary: 'Retry a failed job (who and why are logged)',
      auth: 'admin',
      params: jobParams,
      body: jobRetryBody,
      answer: 'JobRetry',
      errors: ['VALIDATION_FAILED', 'NOT_FOUND'],
    },
    {
      method: 'get',
      path: '/admin/queues',
      tag: 'admin',
      summary: 'Bull Board (read-only for money queues)',
      auth: 'board',
      raw: { type: 'text/html', description: 'the Bull Board UI' },
    },
    {
      method: 'get',
      path: '/metrics',
      tag: 'admin',
      summary: 'Prometheus metrics',
      auth: 'admin',
      raw: { type: 'text/plain', description: 'Prometheus text exposition format' },
    },
    {
      method: 'get',
      path: '/health',
      tag: 'health',
      summary: "Liveness, in the original platform's form",
      auth: 'none',
      bare: 'LegacyHealth',
    },
    { method: 'get', path: '/healthz', tag: 'health', summary: 'Liveness', auth: 'none', answer: 'Health' },
    {
      method: 'get',
      path: '/readyz',
      tag: 'health',
      summary: 'Readiness: Redis and MySQL answer',
      auth: 'none',
      answer: 'Ready',
    },
    {
      method: 'get',
      path: '/openapi.json',
      tag: 'docs',
      summary: 'This document',
      auth: 'none',
      raw: { type: 'application/json', description: 'OpenAPI 3.1' },
    },
    {
      method: 'get',
      path: '/docs',
      tag: 'docs',
      summary: 'This document rendered (Swagger UI, served locally)',
      auth: 'none',
      raw: { type: 'text/html', description: 'the API reference page' },
    },
  ];
}

/** `postInternalV1BillingReservationsById_idCommit`: method and path in camelCase, unique per operation. */
function operationId(op: Operation): string {
  const path = op.path.replace(/\{([^}]+)\}/g, 'By_$1');
  return `${op.method}${path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`;
}

const toJson = (schema: Joi.Schema): Json => joiToJson(schema, 'open-api-3.1') as Json;

/** Query or path parameters from a joi object schema, one per key. */
function parameters(schema: Joi.ObjectSchema, where: 'query' | 'path'): Json[] {
  const json = toJson(schema);
  const props = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: s,
  }));
}

const envelope = (answer: string): Json => obj({ success: { const: true }, data: ref(answer) });

function errorResponses(op: Operation): Record<string, Json> {
  const kinds: ErrorKind[] = [...(op.errors ?? [])];
  // Any JSON body may be malformed or too large, whatever the route.
  if (op.body) kinds.push('VALIDATION_FAILED', 'PAYLOAD_TOO_LARGE');
  if (op.auth !== 'none') kinds.push('UNAUTHORIZED');
  kinds.push('INTERNAL', 'DEPENDENCY_UNAVAILABLE');
  const byStatus = new Map<number, Set<number>>();
  for (const k of kinds) {
    const { status, code } = ErrorCodes[k];
    byStatus.set(status, (byStatus.get(status) ?? new Set()).add(code));
  }
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus.entries()].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: `error, code ${[...codes].join(' or ')}`,
      content: {
        'application/json': { schema: { allOf: [ref('Error'), { properties: { code: { enum: [...codes] } } }] } },
      },
    };
  }
  return out;
}

export interface OpenApiOptions {
  maxCallsPerRequest: number;
  maxBatchItems: number;
  version: string;
}

/** The document, built once per process from the schemas the routes validate with. */
export function buildOpenApiDocument(opts: OpenApiOptions): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const op of operations(opts.maxCallsPerRequest, opts.maxBatchItems)) {
    const content: Json = {};
    if (op.answer) content['application/json'] = { schema: envelope(op.answer) };
    if (op.bare) content['application/json'] = { schema: ref(op.bare) };
    if (op.raw)
      content[op.raw.type] = { schema: op.raw.type === 'application/json' ? { type: 'object' } : { type: 'string' } };
    const parametersOf = [
      ...(op.params ? parameters(op.params, 'path') : []),
      ...(op.query ? parameters(op.query, 'query') : []),
      ...Object.entries(op.headers ?? {}).map(([name, description]) => ({
        name,
        in: 'header',
        required: false,
        description,
        schema: { type: 'string' },
      })),
    ];
    paths[op.path] ??= {};
    paths[op.path][op.method] = {
      operationId: operationId(op),
      tags: [op.tag],
      summary: op.summary,
      security: op.auth === 'none' ? [] : [{ [op.auth]: [] }],
      ...(parametersOf.length > 0 ? { parameters: parametersOf } : {}),
      ...(op.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: toJson(op.body) } } } }
        : {}),
      responses: {
        [String(op.status ?? 200)]: { description: op.raw && !op.answer ? op.raw.description : 'success', content },
        ...errorResponses(op),
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Billing service API',
      version: opts.version,
      description:
        'Free monthly quotas, prepaid balance, exactly-once recharges. Request fields are accepted in snake_case ' +
        'and camelCase; answers are camelCase in `{"success": true, "data": ...}`, errors are `{"success": false, ' +
        '"code", "message", "details"?}`. Amounts are decimal strings. An unknown route is 404 / 40400.',
    },
    servers: [{ url: '/' }],
    tags: ['gateway', 'user', 'payment', 'portal', 'admin', 'health', 'docs'].map((name) => ({ name })),
    paths,
    components: { schemas: ANSWERS, securitySchemes: SECURITY },
  };
}
