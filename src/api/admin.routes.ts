import { AppError } from '../lib/errors.js';
import { Router } from 'express';
import type { AppContext } from '../context.js';
import { adjustmentBody, userParams, ledgerQuery, runsQuery, runParams } from './admin.schemas.js';
import { validate, ok } from './validation.js';

/** `/admin/v1`: adjustments, ledger and account look-ups, reconciliation runs (admin token). */
export function adminRoutes(ctx: AppContext): Router {
  const router = Router();

  router.post('/accounts/:user_id/adjustments', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    const b = validate(adjustmentBody, req.body);
    res.json(ok(await ctx.admin.adjust({ userId: user_id, amount: b.amount, reason: b.reason, idempotencyKey: b.idempotency_key, allowNegative: b.allow_negative })));
  });

  router.get('/accounts/:user_id/ledger', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    const q = validate(ledgerQuery, req.query, 'query');
    res.json(ok(await ctx.admin.ledgerOf(user_id, q.page_size, q.cursor)));
  });

  router.get('/accounts/:user_id', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    res.json(ok(await ctx.admin.accountDetail(user_id)));
  });

  router.get('/reconciliation/runs', async (req, res) => {
    const q = validate(runsQuery, req.query, 'query');
    res.json(ok({ runs: await ctx.admin.reconciliationRuns(q.limit, q.before_id) }));
  });

  router.get('/reconciliation/runs/:id', async (req, res) => {
    const { id } = validate(runParams, req.params, 'query');
    const run = await runById(id);
    if (!run) throw new AppError('NOT_FOUND', `no reconciliation run ${id}`);
    res.json(ok({ ...run, repairs: await ctx.admin.reconciliationRepairs(id) }));
  });

  /** Records a run and queues it: the answer is the run (status "running"); GET runs/:id follows it. */
  router.post('/reconciliation/runs', async (_req, res) => {
    const runId = await ctx.reconciliation.createRun('manual');
    await ctx.queues.add('reconcile', { trigger: 'manual', runId, correlationId: res.locals.correlationId as string });
    res.status(202).location(`${res.req.baseUrl}/reconciliation/runs/${runId}`).json(ok(await runById(runId)));
  });

  // The newest run at or below `id` is `id` itself when it exists.
  const runById = async (id: number) =>
    (await ctx.admin.reconciliationRuns(1, id + 1)).find((r) => r.id === id) ?? null;

  return router;
}
