import { readFileSync, existsSync } from 'node:fs';
import Joi from 'joi';
import { parseMoney, MAX_MICROS, type Micros } from '../lib/money.js';
import { parseDuration } from '../lib/duration.js';

/** A billable service of the catalogue. `unitPrice` null means free-only (refused past the quota). */
export interface ServiceConfig {
  readonly name: string;
  readonly freeQuota: number;
  readonly unitPrice: Micros | null;
}

export interface Config {
  readonly env: 'development' | 'production' | 'test';
  readonly logLevel: string;
  /** publicBaseUrl: set explicitly, or null for http://HOST:<the port listened on> */
  readonly http: {
    readonly host: string;
    readonly port: number;
    readonly bodyLimit: string;
    readonly publicBaseUrl: string | null;
  };
  /** gRPC listen address of the api role; host defaults to http.host. maxMessageBytes bounds a request. */
  readonly grpc: { readonly host: string; readonly port: number; readonly maxMessageBytes: number };
  /** items of one batch deduct / check (HTTP and gRPC) */
  readonly maxBatchItems: number;
  readonly redis: {
    readonly url: string | null;
    readonly keyPrefix: string;
    readonly idempotencyTtlMs: number;
    readonly evictIdleAfterMs: number;
    readonly evictEveryMs: number;
  };
  readonly database: { readonly url: string | null; readonly poolMax: number };
  readonly queue: {
    readonly prefix: string;
    readonly workerConcurrency: number;
    readonly lockDurationMs: number;
    readonly stalledIntervalMs: number;
  };
  /** fault-injection crash point (tests only; refused in production) */
  readonly faultCrashAt: string | null;
  readonly businessTz: string;
  readonly currency: string;
  readonly maxCallsPerRequest: number;
  /** a deduct can be refunded this long after it was first seen; at most the idempotency window */
  readonly refundWindowMs: number;
  readonly services: readonly ServiceConfig[];
  readonly auth: {
    readonly gatewayToken: string;
    readonly adminToken: string;
    readonly boardUser: string;
    readonly boardPassword: string;
  };
  readonly payment: {
    readonly grpcAddr: string;
    readonly timeoutMs: number;
    readonly callbackSecret: string;
    readonly callbackToleranceMs: number;
    readonly minRecharge: Micros;
    readonly maxRecharge: Micros;
    readonly pendingCheckAfterMs: number;
  };
  readonly persistence: {
    readonly batchSize: number;
    readonly flushMs: number;
    readonly sweepAfterMs: number;
    readonly sweepEveryMs: number;
  };
  readonly reconcileEveryMs: number;
  readonly reconcileAuditPeriodMs: number;
  readonly retentionMonths: number;
  readonly reservations: { readonly defaultTtlMs: number; readonly maxTtlMs: number; readonly sweepEveryMs: number };
  /** Customer portal: the HMAC secret that signs portal links, and how long a link is valid. */
  readonly portal: { readonly sessionSecret: string; readonly sessionTtlMs: number };
  /** SPEC 13: default thresholds of balance.low (micro-units) and quota.low (percent used). */
  readonly alerts: { readonly balanceLowThreshold: Micros; readonly quotaLowPercent: number };
  /** SPEC 13: webhook deliveries retry for this long; each attempt waits at most timeoutMs. */
  readonly webhooks: {
    readonly retryForMs: number;
    readonly timeoutMs: number;
    readonly secretOverlapMs: number;
    readonly backoffBaseMs: number;
    readonly dispatchEveryMs: number;
    readonly maxPerSecondPerEndpoint: number;
    /** deliveries run in a webhooks process of their own (src/main/webhooks.ts), not in the worker role */
    readonly ownProcess: boolean;
    /** the CPU priority (nice, 0-19) that webhooks process lowers itself to */
    readonly nice: number;
    /** that process also moves itself to the SCHED_IDLE scheduling class (Linux) */
    readonly schedIdle: boolean;
    /** a delivering process holds its attempts while other work keeps the machine's CPU busier than this (percent) */
    readonly yieldAboveCpuPercent: number;
    /** the Redis of the delivery queues (null: the Redis of the counters, redis.url) */
    readonly redisUrl: string | null;
  };
  /** Secrets still at their development defaults; logged as a warning at start-up. */
  readonly defaultedSecrets: readonly string[];
}

const DEV_SECRETS = {
  gateway_token: 'dev-gateway-token',
  admin_token: 'dev-admin-token',
  board_password: 'dev-board-password',
  callback_secret: 'dev-callback-secret',
  portal_session_secret: 'dev-portal-session-secret',
};

const duration = Joi.alternatives(Joi.string().pattern(/^\d+(ms|s|m|h|d)?$/), Joi.number().integer().min(0));
const money = Joi.alternatives(Joi.string(), Joi.number()).custom((v, h) => {
  const m = parseMoney(v);
  return m === null || m < 0n ? h.error('any.invalid') : v;
});

const schema = Joi.object({
  env: Joi.string().valid('development', 'production', 'test').default('development'),
  log_level: Joi.string().valid('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent').default('info'),
  http: Joi.object({
    host: Joi.string().default('127.0.0.1'),
    port: Joi.number().integer().min(0).max(65535).default(8107),
    body_limit: Joi.string().default('16kb'),
    public_base_url: Joi.string()
      .uri({ scheme: ['http', 'https'] })
      .allow(null)
      .default(null),
  }).default(),
  grpc: Joi.object({
    host: Joi.string().allow(null).default(null),
    port: Joi.number().integer().min(0).max(65535).default(9107),
    max_message_bytes: Joi.number()
      .integer()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
  }).default(),
  max_batch_items: Joi.number().integer().min(1).max(100_000).default(1000),
  redis: Joi.object({
    url: Joi.string()
      .pattern(/^(rediss?|redis\+cluster):\/\//)
      .allow(null)
      .default(null),
    key_prefix: Joi.string()
      .pattern(/^[A-Za-z0-9_.-]+$/)
      .default('bill'),
    idempotency_ttl: duration.default('24h'),
    // Accounts unchanged this long leave Redis (MySQL holds them); at least 10 minutes, far longer
    // than any account load's MySQL read, so a load can never write back what an eviction removed.
    evict_idle_after: duration.default('24h'),
    evict_every: duration.default('10m'),
  }).default(),
  database: Joi.object({
    url: Joi.string()
      .pattern(/^mysql:\/\//)
      .allow(null)
      .default(null),
    pool_max: Joi.number().integer().min(1).max(200).default(20),
  }).default(),
  queue: Joi.object({
    // The braces make every BullMQ key of the service share one Redis Cluster slot.
    prefix: Joi.string()
      .pattern(/^\{[A-Za-z0-9_.-]+\}$/)
      .default('{billing}'),
    worker_concurrency: Joi.number().integer().min(1).max(64).default(4),
    // A killed worker's job is run again once its lock lapses and the stalled check sees it.
    lock_duration: duration.default('30s'),
    stalled_interval: duration.default('30s'),
  }).default(),
  fault_crash_at: Joi.string()
    .pattern(/^[a-z-]+$/)
    .allow(null)
    .default(null),
  business_tz: Joi.string().default('Asia/Shanghai'),
  currency: Joi.string()
    .pattern(/^[A-Z]{3}$/)
    .default('CNY'),
  max_calls_per_request: Joi.number().integer().min(1).max(1_000_000).default(10_000),
  // SPEC 14: null means the idempotency window (redis.idempotency_ttl), the longest Redis remembers a deduct.
  refund_window: duration.allow(null).default(null),
  services: Joi.array()
    .items(
      Joi.object({
        name: Joi.string()
          .pattern(/^[a-z][a-z0-9_-]{0,31}$/)
          .required(),
        free_quota: Joi.number().integer().min(0).max(1_000_000_000).required(),
        unit_price: money.allow(null).default(null),
      }),
    )
    .min(1)
    .unique('name')
    .default([
      { name: 'passport', free_quota: 10_000, unit_price: '0.001' },
      { name: 'payment', free_quota: 1_000, unit_price: '0.001' },
      { name: 'asset', free_quota: 1_000, unit_price: '0.001' },
    ]),
  auth: Joi.object({
    gateway_token: Joi.string().min(1).default(DEV_SECRETS.gateway_token),
    admin_token: Joi.string().min(1).default(DEV_SECRETS.admin_token),
    board_user: Joi.string().min(1).default('admin'),
    board_password: Joi.string().min(1).default(DEV_SECRETS.board_password),
  }).default(),
  payment_service: Joi.object({
    grpc_addr: Joi.string()
      .pattern(/^[^\s:]+:\d+$/)
      .default('127.0.0.1:9101'),
    timeout: duration.default('5s'),
    callback_secret: Joi.string().min(1).default(DEV_SECRETS.callback_secret),
    callback_tolerance: duration.default('5m'),
    min_recharge: money.default('0.01'),
    max_recharge: money.default('50000.00'),
    pending_check_after: duration.default('10m'),
    // The bundled simulator pays any order for free: production refuses it unless this says "demo".
    allow_simulator: Joi.boolean().default(false),
  }).default(),
  persistence: Joi.object({
    batch_size: Joi.number().integer().min(1).max(5000).default(500),
    // 50 ms, not 10: a job's fixed cost (transaction, statements, queue round trips) is most of the
    // worker's CPU per change in small jobs; 50 ms cut it by a third to a half at saturation (README
    // "Performance").
    flush_ms: Joi.number().integer().min(0).max(10_000).default(50),
    sweep_after: duration.default('60s'),
    sweep_every: duration.default('30s'),
  }).default(),
  reconcile_every: duration.default('10m'),
  // Every account's whole ledger is audited within this period, a slice per run (SPEC 16).
  reconcile_audit_period: duration.default('7d'),
  // Records and ledger entries older than this many whole business months move to archive tables.
  retention_months: Joi.number().integer().min(2).max(1200).default(13),
  reservations: Joi.object({
    default_ttl: duration.default('5m'),
    max_ttl: duration.default('24h'),
    sweep_every: duration.default('30s'),
  }).default(),
  portal: Joi.object({
    session_secret: Joi.string().min(1).default(DEV_SECRETS.portal_session_secret),
    // SPEC 15: a portal link is valid one hour; shorter is allowed, longer is not.
    session_ttl: duration
      .default('1h')
      .custom((v, h) => (parseDuration(v)! > 3_600_000 || parseDuration(v)! < 1000 ? h.error('any.invalid') : v)),
  }).default(),
  alerts: Joi.object({
    balance_low_threshold: money.default('10.00'),
    quota_low_percent: Joi.number().integer().min(1).max(100).default(80),
  }).default(),
  webhooks: Joi.object({
    retry_for: duration.default('3d'),
    timeout: duration.default('10s'),
    // how long a rotated secret still signs deliveries beside the new one
    secret_overlap: duration.default('24h'),
    // the first retry's delay; each next one doubles, up to an hour
    backoff_base: duration.default('10s'),
    // how often events a crash left undispatched are queued
    dispatch_every: duration.default('30s'),
    // deliveries started per second and endpoint (by each delivering process): a burst of events is
    // spread out, not fought over with the gateway path for CPU, Redis and MySQL
    max_per_second_per_endpoint: Joi.number().integer().min(1).max(10_000).default(25),
    // deliveries in a webhooks process of their own (npm start and compose run one): the worker role
    // then leaves them to it
    own_process: Joi.boolean().default(false),
    // that process's CPU priority: on shared cores, delivering yields to the gateway path and persistence
    nice: Joi.number().integer().min(0).max(19).default(10),
    // and, on Linux, its scheduling class: SCHED_IDLE (through `chrt`) runs it only on CPU the gateway
    // path, persistence and the databases leave idle; under sustained saturation deliveries wait
    sched_idle: Joi.boolean().default(true),
    // a delivering process holds its attempts (each goes on after 5 s at most) while work at normal
    // priority keeps the machine's CPU busier than this, in percent of all cores (Linux, /proc/stat):
    // at saturation a delivery on one core takes CPU a deduct waiting on the other wants. 100: never.
    yield_above_cpu_percent: Joi.number().integer().min(1).max(100).default(75),
    // the delivery queues' Redis: a burst of deliveries then never queues behind or ahead of the
    // counters' scripts on one Redis thread (null: redis.url). One server; not a cluster.
    redis_url: Joi.string()
      .pattern(/^rediss?:\/\//)
      .allow(null)
      .default(null),
  }).default(),
});

/** Environment variables of SPEC section 9 (and a few more), mapped onto config keys. */
const ENV_KEYS: Record<string, string[]> = {
  NODE_ENV: ['env'],
  LOG_LEVEL: ['log_level'],
  PORT: ['http', 'port'],
  HOST: ['http', 'host'],
  PUBLIC_BASE_URL: ['http', 'public_base_url'],
  GRPC_PORT: ['grpc', 'port'],
  GRPC_HOST: ['grpc', 'host'],
  GRPC_MAX_MESSAGE_BYTES: ['grpc', 'max_message_bytes'],
  MAX_BATCH_ITEMS: ['max_batch_items'],
  REDIS_URL: ['redis', 'url'],
  REDIS_KEY_PREFIX: ['redis', 'key_prefix'],
  REDIS_EVICT_IDLE_AFTER: ['redis', 'evict_idle_after'],
  DATABASE_URL: ['database', 'url'],
  DATABASE_POOL_MAX: ['database', 'pool_max'],
  QUEUE_PREFIX: ['queue', 'prefix'],
  WORKER_CONCURRENCY: ['queue', 'worker_concurrency'],
  QUEUE_LOCK_DURATION: ['queue', 'lock_duration'],
  QUEUE_STALLED_INTERVAL: ['queue', 'stalled_interval'],
  BILLING_FAULT_CRASH_AT: ['fault_crash_at'],
  BUSINESS_TZ: ['business_tz'],
  ALERTS_BALANCE_LOW_THRESHOLD: ['alerts', 'balance_low_threshold'],
  ALERTS_QUOTA_LOW_PERCENT: ['alerts', 'quota_low_percent'],
  WEBHOOKS_RETRY_FOR: ['webhooks', 'retry_for'],
  WEBHOOKS_TIMEOUT: ['webhooks', 'timeout'],
  WEBHOOKS_SECRET_OVERLAP: ['webhooks', 'secret_overlap'],
  WEBHOOKS_BACKOFF_BASE: ['webhooks', 'backoff_base'],
  WEBHOOKS_MAX_PER_SECOND_PER_ENDPOINT: ['webhooks', 'max_per_second_per_endpoint'],
  WEBHOOKS_OWN_PROCESS: ['webhooks', 'own_process'],
  WEBHOOKS_NICE: ['webhooks', 'nice'],
  WEBHOOKS_SCHED_IDLE: ['webhooks', 'sched_idle'],
  WEBHOOKS_YIELD_ABOVE_CPU_PERCENT: ['webhooks', 'yield_above_cpu_percent'],
  WEBHOOKS_REDIS_URL: ['webhooks', 'redis_url'],
  GATEWAY_TOKEN: ['auth', 'gateway_token'],
  ADMIN_TOKEN: ['auth', 'admin_token'],
  BULL_BOARD_USER: ['auth', 'board_user'],
  BULL_BOARD_PASSWORD: ['auth', 'board_password'],
  PAYMENT_CALLBACK_SECRET: ['payment_service', 'callback_secret'],
  PAYMENT_GRPC_ADDR: ['payment_service', 'grpc_addr'],
  PAYMENT_TIMEOUT: ['payment_service', 'timeout'],
  RECONCILE_AUDIT_PERIOD: ['reconcile_audit_period'],
  RETENTION_MONTHS: ['retention_months'],
  REFUND_WINDOW: ['refund_window'],
  ALLOW_PAYMENT_SIMULATOR: ['payment_service', 'allow_simulator'],
  PORTAL_SESSION_SECRET: ['portal', 'session_secret'],
};

/** `PORT / http.port` for a key an environment variable sets, else the key: errors name what to fix. */
function label(key: string): string {
  const name = Object.entries(ENV_KEYS).find(([, path]) => path.join('.') === key)?.[0];
  return name ? `${name} / ${key}` : key;
}

/** Host names under which the bundled payment simulator runs (docker-compose's service name). */
const SIMULATOR_HOSTS = ['payment-simulator'];

export class ConfigError extends Error {}

/** A deduct is refundable only while Redis remembers it: the refund window cannot outlast the idempotency one. */
function refundWindowMs(value: string | number | null, idempotencyTtlMs: number): number {
  if (value === null) return idempotencyTtlMs;
  const windowMs = parseDuration(value)!;
  if (windowMs > idempotencyTtlMs) {
    throw new ConfigError(
      `invalid configuration:\n  ${label('refund_window')}: must not be longer than redis.idempotency_ttl`,
    );
  }
  return windowMs;
}

/** Shortest secret accepted in production: 16 characters leave no token to guess by brute force. */
export const MIN_SECRET_LENGTH = 16;

/**
 * In production every secret is long enough and each is its own: a gateway that knows its token must
 * not thereby hold the admin token, nor be able to sign payment callbacks (SPEC 1, 10.6).
 */
function productionSecretRules(auth: Raw, payment: Raw, portal: Raw): void {
  const secrets: [string, string][] = [
    ['auth.gateway_token (GATEWAY_TOKEN)', auth.gateway_token as string],
    ['auth.admin_token (ADMIN_TOKEN)', auth.admin_token as string],
    ['auth.board_password (BULL_BOARD_PASSWORD)', auth.board_password as string],
    ['payment_service.callback_secret (PAYMENT_CALLBACK_SECRET)', payment.callback_secret as string],
    ['portal.session_secret (PORTAL_SESSION_SECRET)', portal.session_secret as string],
  ];
  const problems = secrets
    .filter(([, value]) => value.length < MIN_SECRET_LENGTH)
    .map(([key]) => `  ${key}: must be at least ${MIN_SECRET_LENGTH} characters in production`);
  secrets.forEach(([key, value], i) => {
    const same = secrets.slice(0, i).find(([, other]) => other === value);
    if (same) problems.push(`  ${key}: must differ from ${same[0]}`);
  });
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
}

type Raw = Record<string, unknown>;

function setPath(target: Raw, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Raw;
  }
  node[path[path.length - 1]] = value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

/**
 * Loads the configuration once: the JSON file named by CONFIG_FILE (or ./billing.config.json if it
 * exists), then environment variables over it, then `overrides` (tests). Throws ConfigError naming
 * every bad key.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Raw = {}): Config {
  const file = env.CONFIG_FILE ?? (existsSync('billing.config.json') ? 'billing.config.json' : null);
  let raw: Raw = {};
  if (file) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as Raw;
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  for (const [name, path] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(raw, path, v);
  }
  const merge = (a: Raw, b: Raw): Raw => {
    for (const [k, v] of Object.entries(b)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object')
        merge(a[k] as Raw, v as Raw);
      else a[k] = v;
    }
    return a;
  };
  merge(raw, overrides);

  const { value: v, error } = schema.validate(raw, { abortEarly: false, convert: true });
  if (error) {
    const lines = error.details.map((d) => `  ${label(d.path.join('.'))}: ${d.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }

  const ms = (x: string | number) => parseDuration(x)!;
  const services: ServiceConfig[] = v.services.map((s: Raw) => ({
    name: s.name as string,
    freeQuota: s.free_quota as number,
    unitPrice: s.unit_price === null ? null : parseMoney(s.unit_price)!,
  }));
  const maxCalls: number = v.max_calls_per_request;
  for (const s of services) {
    // count × price must stay inside the range Lua computes exactly (see money.ts).
    if (s.unitPrice !== null && s.unitPrice * BigInt(maxCalls) > MAX_MICROS) {
      throw new ConfigError(
        `invalid configuration:\n  services.${s.name}.unit_price: too large for max_calls_per_request`,
      );
    }
  }
  if (ms(v.redis.evict_idle_after) < 10 * 60_000) {
    throw new ConfigError('invalid configuration:\n  redis.evict_idle_after (REDIS_EVICT_IDLE_AFTER): at least 10m');
  }
  const minRecharge = parseMoney(v.payment_service.min_recharge)!;
  const maxRecharge = parseMoney(v.payment_service.max_recharge)!;
  if (minRecharge > maxRecharge || minRecharge <= 0n) {
    throw new ConfigError(
      'invalid configuration:\n  payment_service.min_recharge: must be positive and not above max_recharge',
    );
  }

  const defaultedSecrets = [
    ['auth.gateway_token', v.auth.gateway_token === DEV_SECRETS.gateway_token],
    ['auth.admin_token', v.auth.admin_token === DEV_SECRETS.admin_token],
    ['auth.board_password', v.auth.board_password === DEV_SECRETS.board_password],
    ['payment_service.callback_secret', v.payment_service.callback_secret === DEV_SECRETS.callback_secret],
    ['portal.session_secret', v.portal.session_secret === DEV_SECRETS.portal_session_secret],
  ]
    .filter(([, isDefault]) => isDefault)
    .map(([key]) => key as string);
  if (v.env === 'production' && defaultedSecrets.length > 0) {
    const lines = defaultedSecrets.map((k) => `  ${label(k)}: must be set in production`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  if (v.env === 'production') productionSecretRules(v.auth, v.payment_service, v.portal);
  if (v.env === 'production' && v.fault_crash_at) {
    throw new ConfigError('invalid configuration:\n  fault_crash_at: fault injection is refused in production');
  }
  if (v.env === 'production' && (!v.redis.url || !v.database.url)) {
    throw new ConfigError(
      'invalid configuration:\n  REDIS_URL / redis.url, DATABASE_URL / database.url: must be set in production',
    );
  }
  const paymentAddrGiven = (raw.payment_service as Raw | undefined)?.grpc_addr !== undefined;
  const paymentHost = String(v.payment_service.grpc_addr).split(':')[0];
  const isSimulator = !paymentAddrGiven || SIMULATOR_HOSTS.includes(paymentHost);
  if (v.env === 'production' && !v.payment_service.allow_simulator && isSimulator) {
    throw new ConfigError(
      'invalid configuration:\n  PAYMENT_GRPC_ADDR / payment_service.grpc_addr: ' +
        (paymentAddrGiven
          ? `${v.payment_service.grpc_addr} is the bundled payment simulator, which pays any order for free`
          : 'must be set in production') +
        '; point it at the real payment service (set ALLOW_PAYMENT_SIMULATOR=true only for a demo)',
    );
  }

  const config: Config = {
    env: v.env,
    logLevel: v.log_level,
    http: {
      host: v.http.host,
      port: v.http.port,
      bodyLimit: v.http.body_limit,
      publicBaseUrl: v.http.public_base_url ? v.http.public_base_url.replace(/\/$/, '') : null,
    },
    grpc: { host: v.grpc.host ?? v.http.host, port: v.grpc.port, maxMessageBytes: v.grpc.max_message_bytes },
    maxBatchItems: v.max_batch_items,
    redis: {
      url: v.redis.url,
      keyPrefix: v.redis.key_prefix,
      idempotencyTtlMs: ms(v.redis.idempotency_ttl),
      evictIdleAfterMs: ms(v.redis.evict_idle_after),
      evictEveryMs: ms(v.redis.evict_every),
    },
    database: { url: v.database.url, poolMax: v.database.pool_max },
    queue: {
      prefix: v.queue.prefix,
      workerConcurrency: v.queue.worker_concurrency,
      lockDurationMs: ms(v.queue.lock_duration),
      stalledIntervalMs: ms(v.queue.stalled_interval),
    },
    faultCrashAt: v.fault_crash_at,
    businessTz: v.business_tz,
    currency: v.currency,
    maxCallsPerRequest: maxCalls,
    refundWindowMs: refundWindowMs(v.refund_window, ms(v.redis.idempotency_ttl)),
    services,
    auth: {
      gatewayToken: v.auth.gateway_token,
      adminToken: v.auth.admin_token,
      boardUser: v.auth.board_user,
      boardPassword: v.auth.board_password,
    },
    payment: {
      grpcAddr: v.payment_service.grpc_addr,
      timeoutMs: ms(v.payment_service.timeout),
      callbackSecret: v.payment_service.callback_secret,
      callbackToleranceMs: ms(v.payment_service.callback_tolerance),
      minRecharge,
      maxRecharge,
      pendingCheckAfterMs: ms(v.payment_service.pending_check_after),
    },
    persistence: {
      batchSize: v.persistence.batch_size,
      flushMs: v.persistence.flush_ms,
      sweepAfterMs: ms(v.persistence.sweep_after),
      sweepEveryMs: ms(v.persistence.sweep_every),
    },
    reconcileEveryMs: ms(v.reconcile_every),
    reconcileAuditPeriodMs: ms(v.reconcile_audit_period),
    retentionMonths: v.retention_months,
    reservations: {
      defaultTtlMs: ms(v.reservations.default_ttl),
      maxTtlMs: ms(v.reservations.max_ttl),
      sweepEveryMs: ms(v.reservations.sweep_every),
    },
    portal: { sessionSecret: v.portal.session_secret, sessionTtlMs: ms(v.portal.session_ttl) },
    alerts: {
      balanceLowThreshold: parseMoney(v.alerts.balance_low_threshold)!,
      quotaLowPercent: v.alerts.quota_low_percent,
    },
    webhooks: {
      retryForMs: ms(v.webhooks.retry_for),
      timeoutMs: ms(v.webhooks.timeout),
      secretOverlapMs: ms(v.webhooks.secret_overlap),
      backoffBaseMs: ms(v.webhooks.backoff_base),
      dispatchEveryMs: ms(v.webhooks.dispatch_every),
      maxPerSecondPerEndpoint: v.webhooks.max_per_second_per_endpoint,
      ownProcess: v.webhooks.own_process,
      nice: v.webhooks.nice,
      schedIdle: v.webhooks.sched_idle,
      yieldAboveCpuPercent: v.webhooks.yield_above_cpu_percent,
      redisUrl: v.webhooks.redis_url,
    },
    defaultedSecrets,
  };
  return deepFreeze(config);
}
