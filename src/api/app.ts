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
  const jsonBody = express.json({ limit: ctx.config.http.bodyLimit, strict: false });
  const gateway = requireBearer(ctx.config.auth.gatewayToken);
  app.use(gatewayRoutes(ctx, jsonBody, gateway));
  app.use(healthRoutes(ctx));
  // Before the JSON parser: the callback's signature covers the raw bytes.
  app.use('/internal/v1/billing/callback', callbackRoutes(ctx));
  app.use(jsonBody);

  app.use('/internal/v1/billing', gateway, reservationRoutes(ctx));
  app.use('/api/v1/billing', gateway, accountRoutes(ctx), usageRoutes(ctx), rechargeRoutes(ctx));
  app.use('/admin/v1', requireBearer(ctx.config.auth.adminToken), adminRoutes(ctx));
  app.use(BOARD_PATH, ...boardRoutes(ctx));
  app.use('/metrics', requireBearer(ctx.config.auth.adminToken), metricsRoutes(ctx));

  app.use(notFound);
  app.use(errorHandler(ctx.logger));
  return app;
}
