import { Router } from 'express';
import type { AppContext } from '../context.js';
import { accountQuery } from './account.schemas.js';
import { validate, ok } from './validation.js';

/** `/api/v1/billing`: the account and the service catalogue. */
export function accountRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/account', async (req, res) => {
    const q = validate(accountQuery, req.query, 'query');
    res.json(ok(await ctx.accounts.view(q.user_id)));
  });
  router.get('/services', (_req, res) => {
    res.json(ok(ctx.catalogue.list()));
  });
  return router;
}
