import { AppError } from '../lib/errors.js';
import { Router } from 'express';
import type { AdminService } from '../services/admin.service.js';
import {
  adjustmentBody,
  userParams,
  ledgerQuery,
  runsQuery,
  runParams,
  deadLetterQuery,
  deadLetterRetryBody,
  jobParams,
  jobRetryBody,
  runBody,
} from './admin.schemas.js';
import { validate, ok } from './validation.js';

export interface AdminRouteDeps {
  admin: AdminService;
}

/** `/admin/v1`: adjustments, ledger and account look-ups, reconciliation runs (admin token). */
export function adminRoutes({ admin }: AdminRouteDeps): Router {
  const router = Router();

  router.post('/accounts/:user_id/adjustments', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    const b = validate(adjustmentBody, req.body);
    res.json(
      ok(
        await admin.adjust({
          userId: user_id,
          amount: b.amount,
          reason: b.reason,
          idempotencyKey: b.idempotency_key,
          allowNegative: b.allow_negative,
        }),
      ),
    );
  });

  router.get('/accounts/:user_id/ledger', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    const q = validate(ledgerQuery, req.query, 'query');
    res.json(ok(await admin.ledgerOf(user_id, q.page_size, q.cursor)));
  });

  router.get('/accounts/:user_id', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    res.json(ok(await admin.accountDetail(user_id)));
  });

  router.get('/reconciliation/runs', async (req, res) => {
    const q = validate(runsQuery, req.query, 'query');
    res.json(ok({ runs: await admin.reconciliationRuns(q.limit, q.before_id) }));
  });

  router.get('/reconciliation/runs/:id', async (req, res) => {
    const { id } = validate(runParams, req.params, 'query');
    const run = await admin.reconciliationRun(id);
    if (!run) throw new AppError('NOT_FOUND', `no reconciliation run ${id}`);
    res.json(ok({ ...run, repairs: await admin.reconciliationRepairs(id) }));
  });

  /**
   * Records a run and queues it: the answer is the run (status "running"); GET runs/:id follows it.
   * One manual run of a kind at a time: asking again while one waits or runs answers that one.
   */
  router.post('/reconciliation/runs', async (req, res) => {
    const { full } = validate(runBody, req.body ?? {});
    const run = await admin.requestReconciliation(full, res.locals.correlationId as string);
    res.status(202).location(`${req.baseUrl}/reconciliation/runs/${run.id}`).json(ok(run));
  });

  /** Changes MySQL refused even alone (SPEC 10.4): their money is still in Redis; fix the cause, then retry. */
  router.get('/dead-letters', async (req, res) => {
    const q = validate(deadLetterQuery, req.query, 'query');
    res.json(ok({ deadLetters: await admin.deadLetters(q.limit) }));
  });

  router.post('/dead-letters/retry', async (req, res) => {
    const b = validate(deadLetterRetryBody, req.body);
    res.json(
      ok(
        await admin.retryDeadLetter({
          userId: b.user_id,
          changeId: b.change_id,
          operator: b.operator,
          reason: b.reason,
        }),
      ),
    );
  });

  /** The one way to retry a failed money job (the board is read-only for them); logged with who and why. */
  router.post('/jobs/:queue/:job_id/retry', async (req, res) => {
    const p = validate(jobParams, req.params, 'query');
    const b = validate(jobRetryBody, req.body);
    res.json(ok(await admin.retryJob({ queue: p.queue, jobId: p.job_id, operator: b.operator, reason: b.reason })));
  });

  return router;
}
