import type { Config } from './config/config.js';
import { createLogger, type Logger } from './lib/logger.js';
import { BusinessCalendar, systemClock, type Clock } from './lib/clock.js';
import { createRedis, type RedisClient } from './redis/connection.js';
import { defineScripts } from './redis/scripts.js';
import { RedisKeys } from './redis/keys.js';
import { createDatabase, type Db } from './repositories/database.js';
import { AccountRepository } from './repositories/account.repository.js';
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
import { RechargeRepository } from './repositories/recharge.repository.js';
import { PaymentClient } from '../proto/payment/v1/payment.client.js';
import { FaultPoints } from './lib/faults.js';
import { Metrics } from './lib/metrics.js';
import { ExportService } from './services/export.service.js';
import { StatementService } from './services/statement.service.js';
import { StatementRepository } from './repositories/statement.repository.js';
import { PortalService } from './services/portal.service.js';

/** Everything a process needs, built once from the validated config and passed in. */
export interface AppContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly calendar: BusinessCalendar;
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
  readonly payment: PaymentClient;
  readonly recordExports: ExportService;
  readonly statements: StatementService;
  readonly portal: PortalService;
  /** Base URL callers reach this service at (the notify_url's base); set once the API listens. */
  readonly publicUrl: { base: string };
  readonly repositories: { accounts: AccountRepository; ledger: LedgerRepository; usage: UsageRepository; recharges: RechargeRepository; reconciliation: ReconciliationRepository };
  close(): Promise<void>;
}

export interface ContextOptions {
  clock?: Clock;
  logger?: Logger;
}

export function createContext(config: Config, opts: ContextOptions = {}): AppContext {
  if (!config.redis.url) throw new Error('REDIS_URL is not set (npm start provides a local Redis when it is unset)');
  if (!config.database.url) throw new Error('DATABASE_URL is not set (npm start provides a local MariaDB when it is unset)');
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  const calendar = new BusinessCalendar(config.businessTz);
  const metrics = new Metrics();
  const faults = new FaultPoints(config.faultCrashAt);
  const redis = createRedis(config.redis.url, 'command');
  defineScripts(redis);
  const db = createDatabase(config.database.url, config.database.poolMax, logger);
  const keys = new RedisKeys(config.redis.keyPrefix);
  const queues = new JobQueues(redis, config.queue.prefix);

  const repositories = { accounts: new AccountRepository(db), ledger: new LedgerRepository(db), usage: new UsageRepository(db), recharges: new RechargeRepository(db), reconciliation: new ReconciliationRepository(db) };
  const catalogue = new CatalogueService(config.services, config.currency);
  const accounts = new AccountService(redis, keys, repositories.accounts, catalogue, calendar, clock, config.currency);
  const persistence = new PersistenceService(redis, keys, repositories.ledger, queues, config.persistence, clock, logger, faults, () =>
    metrics.deadLetters.inc(),
  );
  const billing = new BillingService(redis, keys, catalogue, accounts, persistence, calendar, clock, config.redis.idempotencyTtlMs, metrics);
  const usage = new UsageService(repositories.usage, catalogue, calendar, clock);
  const credits = new CreditService(redis, keys, accounts, persistence, clock);
  const reservations = new ReservationService(redis, keys, catalogue, accounts, persistence, queues, calendar, clock, {
    defaultTtlMs: config.reservations.defaultTtlMs,
    maxTtlMs: config.reservations.maxTtlMs,
    idempotencyTtlMs: config.redis.idempotencyTtlMs,
  }, logger, metrics);
  const publicUrl = { base: config.http.publicBaseUrl ?? `http://${config.http.host}:${config.http.port}` };
  const payment = new PaymentClient(config.payment.grpcAddr, config.payment.timeoutMs);
  const recharges = new RechargeService(db, repositories.recharges, repositories.ledger, credits, persistence, queues, payment, {
    currency: config.currency,
    minRecharge: config.payment.minRecharge,
    maxRecharge: config.payment.maxRecharge,
    callbackSecret: config.payment.callbackSecret,
    callbackToleranceMs: config.payment.callbackToleranceMs,
    notifyUrl: () => `${publicUrl.base}/internal/v1/billing/callback`,
  }, clock, faults, logger);
  const reconciliation = new ReconciliationService(redis, keys, repositories.reconciliation, repositories.accounts, repositories.recharges, catalogue, accounts, persistence, recharges, calendar, clock, {
    sweepAfterMs: config.persistence.sweepAfterMs,
    pendingCheckAfterMs: config.payment.pendingCheckAfterMs,
  }, logger, metrics);

  const admin = new AdminService(redis, keys, accounts, credits, persistence, repositories.ledger, repositories.reconciliation, queues, logger);

  const recordExports = new ExportService(repositories.usage, catalogue, calendar);
  const statements = new StatementService(new StatementRepository(db), calendar, clock, config.currency);
  const portal = new PortalService({ secret: config.portal.sessionSecret, ttlMs: config.portal.sessionTtlMs, baseUrl: () => publicUrl.base }, usage, catalogue, clock);

  return {
    recordExports,
    statements,
    portal,
    config, logger, clock, metrics, calendar, redis, db, keys, queues, catalogue, accounts, billing, persistence, usage, credits, recharges, reservations, reconciliation, admin, payment, publicUrl, repositories,
    async close() {
      await persistence.drainBuffer();
      await queues.close();
      payment.close();
      await Promise.allSettled([redis.quit(), db.destroy()]);
    },
  };
}
