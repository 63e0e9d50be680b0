import express, { type Express } from 'express';
import { randomUUID } from 'node:crypto';
import type { AppContext } from '../context.js';
import { requireBearer } from './auth.middleware.js';
import { errorHandler, notFound } from './error.middleware.js';
import { gatewayRoutes } from './gateway.routes.js';
import { accountRoutes } from './account.routes.js';
import { usageRoutes } from './usage.routes.js';
import { healthRoutes } from './health.routes.js';
import { rechargeRoutes } from './recharge.routes.js';
import { callbackRoutes } from './callback.routes.js';
import { reservationRoutes } from './reservation.routes.js';
import { adminRoutes } from './admin.routes.js';
import { boardRoutes, BOARD_PATH } from './board.routes.js';
import { metricsRoutes } from './metrics.routes.js';
import { exportRoutes } from './export.routes.js';
import { statementRoutes } from './statement.routes.js';
import { openApiRoutes } from './openapi.routes.js';
import { portalRoutes, portalSessionRoutes } from './portal.routes.js';

/** The HTTP API: thin routes over the services, one error handler. */
export function createApp(ctx: AppContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    res.locals.correlationId = given && /^[\x21-\x7E]{1,128}$/.test(given) ? given : randomUUID();
    res.set('X-Correlation-Id', res.locals.correlationId as string);
    // Latency per route (the matched pattern, never the raw path: ids would explode the labels).
    const stop = ctx.metrics.httpDuration.startTimer();
    res.once('finish', () => {
      const route = req.route ? `${req.baseUrl}${req.route.path === '/' ? '' : req.route.path}` : 'unmatched';
      stop({ method: req.method, route, status: res.statusCode });
      if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ correlationId: res.locals.correlationId, method: req.method, route, status: res.statusCode }, 'request');
    });
    next();
  });
  // A body is parsed only after its caller is authenticated: an anonymous caller costs no parsing.
  const jsonBody = express.json({ limit: ctx.config.http.bodyLimit, strict: false });
  const gateway = requireBearer(ctx.config.auth.gatewayToken);
  const admin = requireBearer(ctx.config.auth.adminToken);
  app.use(gatewayRoutes(ctx, gateway, jsonBody));
  app.use(healthRoutes(ctx));
  app.use(openApiRoutes({ maxCallsPerRequest: ctx.config.maxCallsPerRequest, version: '1.0' }));
  // Its own raw parser: the callback's signature covers the raw bytes.
  app.use('/internal/v1/billing/callback', callbackRoutes(ctx));

  app.use('/internal/v1/billing', gateway, jsonBody, reservationRoutes(ctx));
  app.use('/api/v1/billing', gateway, jsonBody, accountRoutes(ctx), usageRoutes(ctx), rechargeRoutes(ctx));
  app.use('/api/v1/billing', gateway, exportRoutes(ctx.recordExports, ctx.logger), statementRoutes(ctx.statements));
  app.use('/api/v1/billing', gateway, jsonBody, portalSessionRoutes(ctx.portal));
  app.use(portalRoutes({ portal: ctx.portal, accounts: ctx.accounts, usage: ctx.usage, recharges: ctx.recharges, currency: ctx.config.currency }, jsonBody));
  app.use('/admin/v1', admin, jsonBody, adminRoutes(ctx));
  app.use(BOARD_PATH, ...boardRoutes(ctx));
  app.use('/metrics', admin, metricsRoutes(ctx));

  app.use(notFound);
  app.use(errorHandler(ctx.logger));
  return app;
}
