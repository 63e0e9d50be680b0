import { Router } from 'express';
import type { AccountService } from '../services/account.service.js';
import type { CatalogueService } from '../services/catalogue.service.js';
import { accountQuery } from './account.schemas.js';
import { validate, ok } from './validation.js';

/** `/api/v1/billing`: the account and the service catalogue. */
export interface AccountRouteDeps {
  accounts: AccountService;
  catalogue: CatalogueService;
}

export function accountRoutes({ accounts, catalogue }: AccountRouteDeps): Router {
  const router = Router();
  router.get('/account', async (req, res) => {
    const q = validate(accountQuery, req.query, 'query');
    res.json(ok(await accounts.view(q.user_id)));
  });
  router.get('/services', (_req, res) => {
    res.json(ok(catalogue.list()));
  });
  return router;
}
