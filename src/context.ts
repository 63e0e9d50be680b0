import type { Config } from './config/config.js';
import { createLogger, type Logger } from './lib/logger.js';
import { BusinessCalendar, systemClock, type Clock } from './lib/clock.js';
import { createRedis, type RedisClient } from './redis/connection.js';
import { defineScripts, Scripts } from './redis/scripts.js';
import { RedisKeys } from './redis/keys.js';
import { createDatabase, type Db } from './repositories/database.js';
import { AccountRepository } from './repositories/account.repository.js';
import { GrantService } from './services/grant.service.js';
import { AccountSettingsService } from './services/account-settings.service.js';
import { LedgerRepository } from './repositories/ledger.repository.js';
import { UsageRepository } from './repositories/usage.repository.js';
import { JobQueues } from './jobs/queues.js';
import { CatalogueService } from './services/catalogue.service.js';
import { AccountService } from './services/account.service.js';
import { BillingService } from './services/billing.service.js';
import { PersistenceService } from './services/persistence.service.js';
import { UsageService } from './services/usage.service.js';
import { CreditService } from './services/credit.service.js';
import { RechargeService } from './services/recharge.service.js';
import { ReservationService } from './services/reservation.service.js';
import { ReconciliationService } from './services/reconciliation.service.js';
import { ReconciliationRepository } from './repositories/reconciliation.repository.js';
import { AdminService } from './services/admin.service.js';
import { ArchiveService } from './services/archive.service.js';
import { ArchiveRepository } from './repositories/archive.repository.js';
import { RechargeRepository } from './repositories/recharge.repository.js';
import { PaymentClient } from './payment/payment.client.js';
import { FaultPoints } from './lib/faults.js';
import { Metrics } from './lib/metrics.js';
import { BatchService } from './services/batch.service.js';
import { PaymentHintService } from './services/payment-hint.service.js';
import type { AppDeps } from './api/app.js';
import type { WorkerDeps } from './workers/workers.js';
import { ExportService } from './services/export.service.js';
import { StatementService } from './services/statement.service.js';
import { StatementRepository } from './repositories/statement.repository.js';
import { PortalService } from './services/portal.service.js';
import { RefundService } from './services/refund.service.js';
import { EventService } from './services/event.service.js';
import { WebhookService } from './services/webhook.service.js';
import { EventRepository } from './repositories/event.repository.js';
import { WebhookRepository } from './repositories/webhook.repository.js';

/**
 * What the composition root builds once from the validated config: infrastructure and services. No
 * factory takes it whole; appDeps() and workerDeps() pick what the HTTP API and the workers use.
 * Tests build their own probe from it (test/support/harness.ts) rather than reading it.
 */
export interface AppContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly redis: RedisClient;
  readonly db: Db;
  readonly keys: RedisKeys;
  readonly queues: JobQueues;
  readonly catalogue: CatalogueService;
  readonly accounts: AccountService;
  readonly billing: BillingService;
  readonly persistence: PersistenceService;
  readonly usage: UsageService;
  readonly credits: CreditService;
  readonly recharges: RechargeService;
  readonly reservations: ReservationService;
  readonly reconciliation: ReconciliationService;
  readonly admin: AdminService;
  readonly archive: ArchiveService;
  /** the capped check and batches of checks and deducts (HTTP and gRPC) */
  readonly batches: BatchService;
  /** unsigned payment results (gRPC RechargeCallback), confirmed with GetPayment */
  readonly paymentHints: PaymentHintService;
  readonly recordExports: ExportService;
  readonly statements: StatementService;
  readonly portal: PortalService;
  /** credit grants: given, voided, expired (SPEC 14) */
  readonly grants: GrantService;
  /** spending limits and per-user prices (SPEC 14) */
  readonly settings: AccountSettingsService;
  readonly refunds: RefundService;
  /** SPEC 13: alert settings, stored events and their dispatch; webhook endpoints and deliveries */
  readonly events: EventService;
  readonly webhooks: WebhookService;
  close(): Promise<void>;
}

export interface ContextOptions {
  clock?: Clock;
  logger?: Logger;
  /** the address this process's API is bound to, if it serves one: the notify URL's base unless PUBLIC_BASE_URL says */
  boundUrl?: string;
}

/** Fails early, and clearly, when a process has nowhere to keep its state. */
export function requireConnections(config: Config): void {
  if (!config.redis.url) throw new Error('REDIS_URL is not set (npm start provides a local Redis when it is unset)');
  if (!config.database.url) {
    throw new Error('DATABASE_URL is not set (npm start provides a local MariaDB when it is unset)');
  }
}

export function createContext(config: Config, opts: ContextOptions = {}): AppContext {
  requireConnections(config);
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  const calendar = new BusinessCalendar(config.businessTz);
  const metrics = new Metrics();
  const faults = new FaultPoints(config.faultCrashAt);
  const redis = createRedis(config.redis.url!, 'command');
  defineScripts(redis);
  const db = createDatabase(config.database.url!, config.database.poolMax, logger);
  const keys = new RedisKeys(config.redis.keyPrefix, config.redis.url!.startsWith('redis+cluster://'));
  const queues = new JobQueues(redis, config.queue.prefix);

  const repositories = {
    accounts: new AccountRepository(db),
    ledger: new LedgerRepository(db),
    usage: new UsageRepository(db),
    recharges: new RechargeRepository(db),
    reconciliation: new ReconciliationRepository(db),
  };
  const catalogue = new CatalogueService(config.services, config.currency);
  // The scripts load an account they do not find ('init') through the account service, built next.
  const scripts: Scripts = new Scripts(redis, keys, { load: (userId, now) => accounts.load(userId, now) }, metrics);
  const accounts = new AccountService({
    scripts,
    redis,
    keys,
    accounts: repositories.accounts,
    catalogue,
    calendar,
    clock,
    currency: config.currency,
    alertFields: (userId, balance, used, ownFree) => events.loadFields(userId, balance, used, ownFree),
  });
  const persistence = new PersistenceService({
    scripts,
    redis,
    keys,
    ledger: repositories.ledger,
    queues,
    opts: config.persistence,
    clock,
    logger,
    faults,
    onDeadLetter: () => metrics.deadLetters.inc(),
  });
  // Events of a step that journals no change of its own (a refusal, a release) are persisted like one.
  scripts.onEventsJournaled = (change) => persistence.enqueue(change);
  const eventRepository = new EventRepository(db);
  // The delivery queues on a Redis of their own when one is configured (webhooks.redis_url).
  const deliveryRedis = config.webhooks.redisUrl ? createRedis(config.webhooks.redisUrl, 'command') : redis;
  const webhooks = new WebhookService({
    endpoints: new WebhookRepository(db),
    events: eventRepository,
    connection: deliveryRedis,
    queuePrefix: config.queue.prefix,
    opts: config.webhooks,
    clock,
    logger,
  });
  const events = new EventService({
    events: eventRepository,
    scripts,
    catalogue,
    webhooks,
    queues,
    defaults: config.alerts,
    clock,
    logger,
  });
  const billing = new BillingService({
    scripts,
    catalogue,
    accounts,
    persistence,
    calendar,
    clock,
    idempotencyTtlMs: config.redis.idempotencyTtlMs,
  });
  const refunds = new RefundService({
    scripts,
    catalogue,
    persistence,
    calendar,
    clock,
    idempotencyTtlMs: config.redis.idempotencyTtlMs,
    refundWindowMs: config.refundWindowMs,
  });
  const usage = new UsageService(repositories.usage, catalogue, calendar, clock, () => archive.horizon());
  const credits = new CreditService(scripts, persistence, clock);
  const reservations = new ReservationService({
    scripts,
    redis,
    keys,
    catalogue,
    accounts,
    persistence,
    queues,
    calendar,
    clock,
    logger,
    opts: {
      defaultTtlMs: config.reservations.defaultTtlMs,
      maxTtlMs: config.reservations.maxTtlMs,
      idempotencyTtlMs: config.redis.idempotencyTtlMs,
    },
  });
  const publicBase = config.http.publicBaseUrl ?? opts.boundUrl ?? `http://${config.http.host}:${config.http.port}`;
  const payment = new PaymentClient(config.payment.grpcAddr, config.payment.timeoutMs);
  const recharges = new RechargeService({
    orders: repositories.recharges,
    ledger: repositories.ledger,
    credits,
    persistence,
    queues,
    payment,
    clock,
    faults,
    logger,
    events,
    opts: {
      currency: config.currency,
      minRecharge: config.payment.minRecharge,
      maxRecharge: config.payment.maxRecharge,
      notifyUrl: `${publicBase}/internal/v1/billing/callback`,
    },
  });
  const reconciliation = new ReconciliationService({
    runs: repositories.reconciliation,
    accountsRepo: repositories.accounts,
    orders: repositories.recharges,
    scripts,
    redis,
    keys,
    catalogue,
    accounts,
    persistence,
    recharges,
    calendar,
    clock,
    logger,
    metrics,
    opts: {
      sweepAfterMs: config.persistence.sweepAfterMs,
      pendingCheckAfterMs: config.payment.pendingCheckAfterMs,
      everyMs: config.reconcileEveryMs,
      auditPeriodMs: config.reconcileAuditPeriodMs,
    },
  });

  const batches = new BatchService(billing, config.maxCallsPerRequest, logger, metrics);
  const paymentHints = new PaymentHintService(repositories.recharges, recharges, logger);
  const archive = new ArchiveService(new ArchiveRepository(db), calendar, clock, config.retentionMonths, logger);
  const admin = new AdminService({
    ledger: repositories.ledger,
    runs: repositories.reconciliation,
    redis,
    keys,
    accounts,
    credits,
    persistence,
    queues,
    logger,
  });

  const recordExports = new ExportService(repositories.usage, catalogue, calendar);
  const statements = new StatementService(new StatementRepository(db), calendar, clock, config.currency);
  const portal = new PortalService(
    { secret: config.portal.sessionSecret, ttlMs: config.portal.sessionTtlMs, baseUrl: () => publicBase },
    usage,
    catalogue,
    clock,
  );

  const grants = new GrantService({ db, redis, keys, scripts, persistence, clock, logger });
  const settings = new AccountSettingsService({
    db,
    redis,
    keys,
    scripts,
    accounts,
    catalogue,
    calendar,
    clock,
    maxCallsPerRequest: config.maxCallsPerRequest,
  });

  return {
    config,
    logger,
    clock,
    metrics,
    redis,
    db,
    keys,
    queues,
    catalogue,
    grants,
    settings,
    accounts,
    billing,
    persistence,
    usage,
    credits,
    recharges,
    reservations,
    reconciliation,
    admin,
    archive,
    batches,
    paymentHints,
    recordExports,
    statements,
    portal,
    refunds,
    events,
    webhooks,
    async close() {
      await persistence.drainBuffer();
      await queues.close();
      await webhooks.close();
      payment.close();
      const redises = deliveryRedis === redis ? [redis] : [redis, deliveryRedis];
      await Promise.allSettled([...redises.map((r) => r.quit()), db.destroy()]);
    },
  };
}

/** What the HTTP API takes from the context (createApp slices it further per router). */
export function appDeps(ctx: AppContext): AppDeps {
  const { config, logger, metrics, clock, redis, db, queues } = ctx;
  const {
    billing,
    batches,
    accounts,
    catalogue,
    usage,
    recharges,
    reservations,
    admin,
    recordExports,
    statements,
    portal,
    grants,
    settings,
    refunds,
  } = ctx;
  return {
    grants,
    settings,
    config,
    logger,
    metrics,
    clock,
    redis,
    db,
    queues,
    billing,
    batches,
    accounts,
    catalogue,
    usage,
    recharges,
    reservations,
    admin,
    recordExports,
    statements,
    portal,
    refunds,
    events: ctx.events,
    webhooks: ctx.webhooks,
  };
}

/** What the workers take from the context: the services their handlers call, the queue settings. */
/** `deliversOnly`: the process runs nothing but webhook deliveries (its own CPU is not the gateway's). */
export function workerDeps(ctx: AppContext, deliversOnly = false): WorkerDeps {
  const { config, logger, metrics, queues, persistence, recharges, reservations, reconciliation, accounts, archive } =
    ctx;
  return {
    grants: ctx.grants,
    events: ctx.events,
    webhooks: ctx.webhooks,
    webhookRate: config.webhooks.maxPerSecondPerEndpoint,
    webhookCpuGate: { holdAbovePercent: config.webhooks.yieldAboveCpuPercent, leaveOutOwn: deliversOnly },
    persistence,
    recharges,
    reservations,
    reconciliation,
    accounts,
    archive,
    queues,
    logger,
    metrics,
    sweepAfterMs: config.persistence.sweepAfterMs,
    evictIdleAfterMs: config.redis.evictIdleAfterMs,
    redisUrl: config.redis.url!,
    deliveryRedisUrl: config.webhooks.redisUrl ?? config.redis.url!,
    queue: config.queue,
  };
}

/** What the gRPC transport takes from the context: the services it fronts, nothing else. */
export function grpcDeps(ctx: AppContext) {
  const { billing, batches, accounts, usage, recharges, reservations, catalogue, paymentHints, refunds } = ctx;
  return { billing, batches, accounts, usage, recharges, reservations, catalogue, paymentHints, refunds };
}
