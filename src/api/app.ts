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
import { requireJsonContentType } from './content-type.middleware.js';

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
      const route = routeLabel(req);
      stop({ method: req.method, route, status: res.statusCode });
      if (ctx.logger.isLevelEnabled('debug')) ctx.logger.debug({ correlationId: res.locals.correlationId, method: req.method, route, status: res.statusCode }, 'request');
    });
    next();
  });
  app.use(requireJsonContentType(['/api/', '/internal/', '/admin/v1/'], ['/internal/v1/billing/callback']));
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

// Where routers are mounted: an error leaving a router resets req.baseUrl before the response, so
// the label is rebuilt from the path. The board is one label for its pages and one for its API.
const MOUNTS = ['/internal/v1/billing/callback', '/internal/v1/billing', '/api/v1/billing', '/admin/v1', '/metrics'];

/** The metric label of a request: its matched route pattern, never the raw path (ids would explode it). */
function routeLabel(req: express.Request): string {
  const path = req.originalUrl.split('?')[0];
  if (path === BOARD_PATH || path.startsWith(`${BOARD_PATH}/`)) {
    return path.startsWith(`${BOARD_PATH}/api/`) ? `${BOARD_PATH}/api` : BOARD_PATH;
  }
  if (!req.route) return 'unmatched';
  const pattern = String(req.route.path);
  const base = req.baseUrl || MOUNTS.find((m) => path === m || path.startsWith(`${m}/`)) || '';
  if (pattern.startsWith(base) && base !== '' && !req.baseUrl) return pattern;
  return `${base}${pattern === '/' ? '' : pattern}` || '/';
}
