import express, { type Express } from 'express';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/config.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { Clock } from '../lib/clock.js';
import type { RedisClient } from '../redis/connection.js';
import type { Db } from '../repositories/database.js';
import type { JobQueues } from '../jobs/queues.js';
import type { AccountService } from '../services/account.service.js';
import type { AdminService } from '../services/admin.service.js';
import type { BillingService } from '../services/billing.service.js';
import type { BatchService } from '../services/batch.service.js';
import type { CatalogueService } from '../services/catalogue.service.js';
import type { RechargeService } from '../services/recharge.service.js';
import type { ReservationService } from '../services/reservation.service.js';
import type { UsageService } from '../services/usage.service.js';
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
import { exportRoutes } from './export.routes.js';
import { statementRoutes } from './statement.routes.js';
import { openApiRoutes } from './openapi.routes.js';
import { portalRoutes, portalSessionRoutes } from './portal.routes.js';
import type { ExportService } from '../services/export.service.js';
import type { StatementService } from '../services/statement.service.js';
import type { PortalService } from '../services/portal.service.js';
import type { GrantService } from '../services/grant.service.js';
import type { AccountSettingsService } from '../services/account-settings.service.js';
import { grantAndPricingRoutes, limitsRoutes } from './money-features.routes.js';
import type { RefundService } from '../services/refund.service.js';
import { refundRoutes } from './refund.routes.js';
import type { EventService } from '../services/event.service.js';
import type { WebhookService } from '../services/webhook.service.js';
import { alertsRoutes } from './alerts.routes.js';
import { eventRoutes } from './event.routes.js';
import { webhookRoutes } from './webhook.routes.js';

/** What the HTTP API uses: the settings its routes read, the services they front, its probes. */
export interface AppDeps {
  config: Pick<Config, 'http' | 'auth' | 'payment' | 'maxCallsPerRequest' | 'maxBatchItems' | 'currency'>;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  redis: RedisClient;
  db: Db;
  queues: JobQueues;
  billing: BillingService;
  batches: BatchService;
  accounts: AccountService;
  catalogue: CatalogueService;
  usage: UsageService;
  recharges: RechargeService;
  reservations: ReservationService;
  admin: AdminService;
  recordExports: ExportService;
  statements: StatementService;
  portal: PortalService;
  grants: GrantService;
  settings: AccountSettingsService;
  refunds: RefundService;
  events: EventService;
  webhooks: WebhookService;
}

/** A caller's own correlation id is kept when it is plain printable ASCII of a sane length. */
const CORRELATION_ID = /^[\x21-\x7E]{1,128}$/;

/** The HTTP API: thin routes over the services, one error handler. Each router gets only what it uses. */
export function createApp(d: AppDeps): Express {
  const { config, logger, metrics } = d;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  // Answers are per caller and change with every call: an ETag would only cost a hash of each body. (Pages
  // sent as files keep Last-Modified; express.static keeps its own ETags.)
  app.set('etag', false);

  app.use((req, res, next) => {
    const given = req.headers['x-request-id'];
    const correlationId = typeof given === 'string' && CORRELATION_ID.test(given) ? given : randomUUID();
    res.locals.correlationId = correlationId;
    res.setHeader('X-Correlation-Id', correlationId);
    // Latency per route (the matched pattern, never the raw path: ids would explode the labels).
    const started = performance.now();
    res.on('finish', () => {
      const route = routeLabel(req);
      metrics.httpDuration.observe(
        { method: req.method, route, status: res.statusCode },
        (performance.now() - started) / 1000,
      );
      if (logger.isLevelEnabled('debug'))
        logger.debug({ correlationId, method: req.method, route, status: res.statusCode }, 'request');
    });
    next();
  });
  app.use(requireJsonContentType(['/api/', '/internal/', '/admin/v1/'], ['/internal/v1/billing/callback']));
  // A body is parsed only after its caller is authenticated: an anonymous caller costs no parsing.
  const jsonBody = express.json({ limit: config.http.bodyLimit, strict: false });
  const gateway = requireBearer(config.auth.gatewayToken);
  const admin = requireBearer(config.auth.adminToken);
  const { maxCallsPerRequest } = config;
  const { maxBatchItems } = config;
  const gatewayToken = config.auth.gatewayToken;
  gatewayRoutes(
    app,
    { billing: d.billing, batches: d.batches, maxCallsPerRequest, maxBatchItems, gatewayToken },
    gateway,
    jsonBody,
  );
  app.use(healthRoutes({ redis: d.redis, db: d.db }));
  app.use(openApiRoutes({ maxCallsPerRequest, maxBatchItems, version: '1.0' }));
  // Its own raw parser: the callback's signature covers the raw bytes.
  const { callbackSecret, callbackToleranceMs } = config.payment;
  const { bodyLimit } = config.http;
  const callbackDeps = { recharges: d.recharges, clock: d.clock, bodyLimit, callbackSecret, callbackToleranceMs };
  app.use('/internal/v1/billing/callback', callbackRoutes(callbackDeps));

  app.use(refundRoutes({ refunds: d.refunds, maxCallsPerRequest }, gateway, jsonBody));
  const reservations = reservationRoutes({ reservations: d.reservations, maxCallsPerRequest });
  app.use('/internal/v1/billing', gateway, jsonBody, reservations);
  app.use(
    '/api/v1/billing',
    gateway,
    jsonBody,
    accountRoutes({ accounts: d.accounts, catalogue: d.catalogue }),
    usageRoutes({ usage: d.usage }),
    rechargeRoutes({ recharges: d.recharges }),
    limitsRoutes({ settings: d.settings }),
  );
  app.use('/admin/v1', admin, jsonBody, adminRoutes({ admin: d.admin }));
  app.use('/admin/v1', admin, jsonBody, grantAndPricingRoutes({ grants: d.grants, settings: d.settings }));
  app.use(BOARD_PATH, ...boardRoutes({ queues: d.queues, auth: config.auth }));
  app.use('/api/v1/billing', gateway, jsonBody, alertsRoutes({ events: d.events }));
  app.use('/admin/v1', admin, jsonBody, eventRoutes({ events: d.events }), webhookRoutes({ webhooks: d.webhooks }));
  const webhookQueues = () => d.webhooks.activeQueues();
  app.use(BOARD_PATH, ...boardRoutes({ queues: d.queues, auth: config.auth, extraQueues: webhookQueues }));
  app.use('/api/v1/billing', gateway, exportRoutes(d.recordExports, logger), statementRoutes(d.statements));
  app.use('/api/v1/billing', gateway, jsonBody, portalSessionRoutes(d.portal));
  app.use(
    portalRoutes(
      {
        portal: d.portal,
        accounts: d.accounts,
        usage: d.usage,
        recharges: d.recharges,
        currency: config.currency,
        events: d.events,
      },
      jsonBody,
    ),
  );
  app.use('/metrics', admin, metricsRoutes({ queues: d.queues, metrics }));

  app.use(notFound);
  app.use(errorHandler(logger));
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
