import express, { Router, type RequestHandler } from 'express';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import type { PortalService } from '../services/portal.service.js';
import type { AccountService } from '../services/account.service.js';
import type { UsageService } from '../services/usage.service.js';
import type { RechargeService } from '../services/recharge.service.js';
import {
  portalSessionBody,
  portalRecordsQuery,
  portalUsageQuery,
  portalRechargeBody,
  portalOrderParams,
} from './portal.schemas.js';
import { validate, ok } from './validation.js';
import type { EventService } from '../services/event.service.js';
import { portalAlertsBody } from './event.schemas.js';

const ASSETS = fileURLToPath(new URL('../portal', import.meta.url));
// chart.js exports no package.json; its main entry sits in dist/, beside the browser (UMD) build.
const CHART_UMD = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js');

/** The page may load only its own files and talk only to this service. */
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

/** `POST /api/v1/billing/portal-sessions` (gateway token): a signed portal link for one user. */
export function portalSessionRoutes(portal: PortalService): Router {
  const router = Router();
  router.post('/portal-sessions', (req, res) => {
    const b = validate(portalSessionBody, req.body);
    const { url, expiresAt } = portal.createSession(b.user_id);
    res.json(ok({ url, expiresAt }));
  });
  return router;
}

export interface PortalDeps {
  portal: PortalService;
  accounts: AccountService;
  usage: UsageService;
  recharges: RechargeService;
  currency: string;
  /** alert thresholds (SPEC 13); the section stays hidden without it */
  events?: Pick<EventService, 'getAlerts' | 'putAlerts'>;
}

/**
 * `/portal`: the page and its assets (Chart.js from node_modules), and `/portal/v1/*`, the page's own
 * data calls. Those are authenticated by the signed session in `X-Portal-Session`, never by the
 * gateway token, and act for the session's user only: no call names a user.
 */
export function portalRoutes(deps: PortalDeps, jsonBody: RequestHandler): Router {
  const router = Router();
  router.get('/portal', (_req, res) => {
    res.set(PAGE_HEADERS).sendFile(join(ASSETS, 'index.html'));
  });
  router.use(
    '/portal/assets',
    express.static(ASSETS, { index: false, setHeaders: (res) => res.set('X-Content-Type-Options', 'nosniff') }),
  );
  router.get('/portal/vendor/chart.umd.js', (_req, res) => {
    res.set('X-Content-Type-Options', 'nosniff').sendFile(CHART_UMD);
  });

  const session: RequestHandler = (req, res, next) => {
    res.locals.portalUser = deps.portal.verify(req.get('x-portal-session'));
    res.set('Cache-Control', 'no-store');
    next();
  };
  const api = Router();
  api.use(session, jsonBody);
  const user = (res: express.Response) => res.locals.portalUser as string;

  api.get('/account', async (_req, res) => {
    res.json(ok(await deps.accounts.view(user(res))));
  });
  api.get('/records', async (req, res) => {
    const q = validate(portalRecordsQuery, req.query, 'query');
    res.json(
      ok(
        await deps.usage.records({
          userId: user(res),
          serviceName: q.service_name,
          type: q.type,
          from: q.from,
          to: q.to,
          page: q.page,
          pageSize: q.page_size,
          cursor: q.cursor,
        }),
      ),
    );
  });
  api.get('/usage', async (req, res) => {
    const q = validate(portalUsageQuery, req.query, 'query');
    res.json(ok(await deps.portal.usageByService(user(res), q.from, q.to)));
  });
  api.post('/recharge', async (req, res) => {
    const b = validate(portalRechargeBody, req.body);
    res.json(
      ok(
        await deps.recharges.create({
          userId: user(res),
          amount: b.amount,
          method: b.payment_method,
          currency: deps.currency,
          clientIp: req.ip ?? '',
        }),
      ),
    );
  });
  api.get('/recharge/:order_id', async (req, res) => {
    const { order_id } = validate(portalOrderParams, req.params, 'query');
    res.json(ok(await deps.recharges.get(order_id, user(res))));
  });
  const events = deps.events;
  if (events) {
    api.get('/alerts', async (_req, res) => {
      res.json(ok(await events.getAlerts(user(res))));
    });
    api.put('/alerts', async (req, res) => {
      const b = validate(portalAlertsBody, req.body);
      res.json(ok(await events.putAlerts(user(res), b.balance_low, b.quota_low_percent)));
    });
  }
  router.use('/portal/v1', api);
  return router;
}
