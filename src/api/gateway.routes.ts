import express, { type IRouter, type RequestHandler } from 'express';
import type { BatchService, ItemOutcome } from '../services/batch.service.js';
import type { BillingService } from '../services/billing.service.js';
import { gatewaySchemas } from './gateway.schemas.js';
import { requireBearer } from './auth.middleware.js';
import { validate, validateBatch, ok } from './validation.js';

const BASE = '/internal/v1/billing';
/** Body bytes allowed per batch item: a single call's body is far smaller, escapes included. */
const BATCH_BYTES_PER_ITEM = 512;

/** A batch's answers in item order: each one the single call's answer, or its refusal. */
function batchAnswer<T extends object>(outcomes: ItemOutcome<T>[]) {
  return {
    results: outcomes.map((o) =>
      o.ok
        ? { index: o.index, ok: true, ...o.value }
        : { index: o.index, ok: false, code: o.error.code, message: o.error.message },
    ),
  };
}

/**
 * The gateway's check and deduct, answered from Redis. Registered with full paths and their own
 * middleware (`before`: body parser, auth) on the app itself, ahead of every other router: they are
 * the hot path, called on every API call the platform serves, and a router of their own would add a
 * level of matching to each call.
 */
export interface GatewayRouteDeps {
  billing: BillingService;
  batches: BatchService;
  maxCallsPerRequest: number;
  maxBatchItems: number;
  gatewayToken: string;
}

export function gatewayRoutes(router: IRouter, d: GatewayRouteDeps, ...before: RequestHandler[]): void {
  const schemas = gatewaySchemas(d.maxCallsPerRequest, d.maxBatchItems);
  // A batch's body is larger than a single call's: authenticated first, then parsed with its own
  // bound (the parser given in `before` then finds the body read and skips).
  const batchBody = [
    requireBearer(d.gatewayToken),
    express.json({ limit: d.maxBatchItems * BATCH_BYTES_PER_ITEM, strict: false }),
  ];

  router.post(`${BASE}/check`, ...before, async (req, res) => {
    const b = validate(schemas.check, req.body);
    res.json(ok(await d.batches.check({ userId: b.user_id, serviceName: b.service_name, count: b.count })));
  });

  router.post(`${BASE}/deduct`, ...before, async (req, res) => {
    const b = validate(schemas.deduct, req.body);
    res.json(
      ok(
        await d.billing.deduct({
          requestId: b.request_id,
          userId: b.user_id,
          serviceName: b.service_name,
          count: b.count,
        }),
      ),
    );
  });

  router.post(`${BASE}/deduct/batch`, ...batchBody, ...before, async (req, res) => {
    const items = validateBatch(schemas.batch, schemas.deduct, req.body).map((i) => ({
      requestId: i.request_id,
      userId: i.user_id,
      serviceName: i.service_name,
      count: i.count,
    }));
    res.json(ok(batchAnswer(await d.batches.deductBatch(items))));
  });

  router.post(`${BASE}/check/batch`, ...batchBody, ...before, async (req, res) => {
    const items = validateBatch(schemas.batch, schemas.check, req.body).map((i) => ({
      userId: i.user_id,
      serviceName: i.service_name,
      count: i.count,
    }));
    res.json(ok(batchAnswer(await d.batches.checkBatch(items))));
  });
}
