import { Router } from 'express';
import type { GrantService } from '../services/grant.service.js';
import type { AccountSettingsService } from '../services/account-settings.service.js';
import {
  grantBody,
  grantParams,
  voidBody,
  limitsBody,
  limitsQuery,
  pricingParams,
  pricingBody,
} from './money-features.schemas.js';
import { userParams } from './admin.schemas.js';
import { validate, ok } from './validation.js';

/** `/admin/v1`: credit grants and per-user prices (SPEC 14, admin token). */
export function grantAndPricingRoutes(d: { grants: GrantService; settings: AccountSettingsService }): Router {
  const router = Router();

  router.post('/accounts/:user_id/grants', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    const b = validate(grantBody, req.body);
    res.json(
      ok(
        await d.grants.create({
          userId: user_id,
          grantId: b.grant_id,
          amount: b.amount,
          category: b.category,
          priority: b.priority,
          expiresAt: b.expires_at ?? null,
          note: b.note,
        }),
      ),
    );
  });

  router.get('/accounts/:user_id/grants', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    res.json(ok({ grants: await d.grants.list(user_id) }));
  });

  router.post('/accounts/:user_id/grants/:grant_id/void', async (req, res) => {
    const { user_id, grant_id } = validate(grantParams, req.params, 'query');
    validate(voidBody, req.body ?? {});
    res.json(ok(await d.grants.void(user_id, grant_id)));
  });

  router.put('/accounts/:user_id/pricing/:service_name', async (req, res) => {
    const { user_id, service_name } = validate(pricingParams, req.params, 'query');
    const b = validate(pricingBody, req.body);
    res.json(ok(await d.settings.setPricing(user_id, service_name, b.free_quota, b.unit_price)));
  });

  router.get('/accounts/:user_id/pricing', async (req, res) => {
    const { user_id } = validate(userParams, req.params, 'query');
    res.json(ok({ pricing: await d.settings.pricing(user_id) }));
  });

  return router;
}

/** `/api/v1/billing/limits`: a user's spending limits (SPEC 14, gateway token). */
export function limitsRoutes(d: { settings: AccountSettingsService }): Router {
  const router = Router();
  router.put('/limits', async (req, res) => {
    const b = validate(limitsBody, req.body);
    res.json(ok(await d.settings.setLimits(b.user_id, b.daily, b.monthly)));
  });
  router.get('/limits', async (req, res) => {
    const q = validate(limitsQuery, req.query, 'query');
    res.json(ok(await d.settings.limits(q.user_id)));
  });
  return router;
}
