import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getPriority, setPriority } from 'node:os';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { loadConfig, ConfigError, type Config } from '../config/config.js';
import { appDeps, createContext, grpcDeps, requireConnections, workerDeps } from '../context.js';
import type { AppContext, ContextOptions } from '../context.js';
import { createApp } from '../api/app.js';
import { startWorkers } from '../workers/workers.js';
import { QueueNames } from '../jobs/jobs.js';
import { registerSchedules } from '../jobs/schedules.js';
import { createDatabase, migrateLatest } from '../repositories/database.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { createGrpcServer } from '../grpc/server.js';
import { checkDependencies, DependencyError } from './dependencies.js';

/**
 * What a process does. `webhooks`: the events' fan-out and deliveries (the webhooks queue and the
 * endpoints' queues); the worker role does them too unless webhooks.own_process says a webhooks process
 * of its own runs them.
 */
export type Role = 'api' | 'worker' | 'scheduler' | 'webhooks';

export interface Running {
  ctx: AppContext;
  server?: Server;
  url?: string;
  /** host:port of the api role's gRPC server */
  grpcAddress?: string;
  stop(): Promise<void>;
}

/** Migrates on a connection of its own, before the API binds: no request meets an old schema. */
async function migrateOnce(config: Config, logger: Logger): Promise<void> {
  const db = createDatabase(config.database.url!, 1, logger);
  try {
    await migrateLatest(db);
  } finally {
    await db.destroy();
  }
}

/** Starts the given roles in this process on one context. `port` 0 picks a free port (tests). */
export async function startRoles(
  config: Config,
  roles: Role[],
  opts: ContextOptions & { migrate?: boolean } = {},
): Promise<Running> {
  requireConnections(config);
  const logger = opts.logger ?? createLogger(config.logLevel);
  for (const key of config.defaultedSecrets) {
    logger.warn(`${key} is the development default; set it before exposing the service`);
  }
  if (opts.migrate) await migrateOnce(config, logger);

  // The API binds before the context is built: the address callers reach (the notify URL's base unless
  // PUBLIC_BASE_URL is set) is then passed in once. Nothing is served until the app is attached below,
  // synchronously after the bind, so no request can arrive in between.
  let server: Server | undefined;
  let url: string | undefined;
  let grpcAddress: string | undefined;
  if (roles.includes('api')) {
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(config.http.port, config.http.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    s.keepAliveTimeout = 65_000;
    url = `http://${config.http.host}:${(s.address() as AddressInfo).port}`;
    server = s;
  }
  let ctx: AppContext;
  try {
    ctx = createContext(config, { ...opts, logger, boundUrl: url });
    server?.on('request', createApp(appDeps(ctx)));
  } catch (err) {
    server?.close();
    throw err;
  }

  const stops: (() => Promise<void>)[] = [];
  if (server) {
    const s = server;
    // Stop accepting first; in-flight requests finish, idle keep-alive sockets are closed.
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeIdleConnections();
        }),
    );
  }
  const delivers = roles.includes('webhooks') || (roles.includes('worker') && !config.webhooks.ownProcess);
  const queues = QueueNames.filter((q) => (q === 'webhooks' ? delivers : roles.includes('worker')));
  if (queues.length > 0) {
    const deliversOnly = roles.length === 1 && roles[0] === 'webhooks';
    const w = startWorkers(workerDeps(ctx, deliversOnly), queues, delivers);
    stops.push(() => w.close());
  }
  if (roles.includes('scheduler')) await registerSchedules(ctx.queues, config);
  if (server) {
    // gRPC beside HTTP, on the same services (SPEC 11): stopped first, like the HTTP server.
    const grpcServer = createGrpcServer(
      grpcDeps(ctx),
      {
        gatewayToken: config.auth.gatewayToken,
        callbackSecret: config.payment.callbackSecret,
        maxCallsPerRequest: config.maxCallsPerRequest,
        maxBatchItems: config.maxBatchItems,
        maxMessageBytes: config.grpc.maxMessageBytes,
      },
      ctx.logger,
    );
    try {
      grpcAddress = await grpcServer.listen(config.grpc.host, config.grpc.port);
    } catch (err) {
      await Promise.allSettled(stops.map((stop) => stop()));
      await ctx.close();
      throw err;
    }
    stops.unshift(() => grpcServer.stop());
  }

  let stopping: Promise<void> | null = null;
  return {
    ctx,
    server,
    url,
    grpcAddress,
    stop() {
      stopping ??= (async () => {
        for (const stop of stops) await stop();
        await ctx.close();
      })();
      return stopping;
    },
  };
}

/**
 * A webhooks process yields the CPU to the gateway path and persistence on shared cores: a burst of
 * deliveries waits for idle CPU instead of adding to the gateway's latency (raising one's own nice value
 * needs no privilege). Never raises the priority. With `schedIdle` on Linux it also moves every thread
 * to SCHED_IDLE (`chrt`, util-linux; threads made later inherit it; no privilege needed): a niced
 * process still takes a weighted share of a busy core and delays the gateway's wake-ups, an idle-class
 * one runs only when nothing else wants the core (measured: README, "Performance of webhooks").
 */
function lowerPriority(webhooks: { nice: number; schedIdle: boolean }, logger: Logger): void {
  try {
    // Every thread (V8's and libuv's too): setpriority on Linux renices one thread, and the CPU gate
    // counts a thread left at nice 0 as the gateway's.
    if (webhooks.nice > getPriority()) {
      setPriority(webhooks.nice);
      const threads = process.platform === 'linux' ? readdirSync('/proc/self/task').map(Number) : [];
      for (const tid of threads) {
        try {
          setPriority(tid, webhooks.nice);
        } catch {
          // the thread ended meanwhile
        }
      }
    }
  } catch (err) {
    logger.warn({ err: (err as Error).message, nice: webhooks.nice }, 'CPU priority not lowered');
  }
  if (!webhooks.schedIdle || process.platform !== 'linux') return;
  try {
    execFileSync('chrt', ['--all-tasks', '--idle', '--pid', '0', String(process.pid)], { stdio: 'ignore' });
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'SCHED_IDLE not set (is chrt installed?); delivering at nice only');
  }
}

/**
 * Entry point of a process: loads config once, checks Redis and MySQL answer, starts, and stops
 * cleanly on SIGTERM / SIGINT. A failed start is one paragraph on stderr and exit code 1 (2 for
 * configuration), never a stream of reconnect stack traces.
 */
export async function main(roles: Role[]): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  let running: Running;
  try {
    if (!config.redis.url) throw new DependencyError('REDIS_URL is not set: give the Redis to use (see .env.example).');
    if (!config.database.url) {
      throw new DependencyError('DATABASE_URL is not set: give the MySQL to use (see .env.example).');
    }
    await checkDependencies({ redis: config.redis.url, database: config.database.url });
    const migrate = roles.includes('api') && process.env.MIGRATE_ON_START !== 'false';
    running = await startRoles(config, roles, { migrate });
  } catch (err) {
    console.error(`billing ${roles.join('+')} did not start: ${(err as Error).message}`);
    process.exit(1);
  }
  if (roles.length === 1 && roles[0] === 'webhooks') lowerPriority(config.webhooks, running.ctx.logger);
  running.ctx.logger.info({ roles, url: running.url, grpc: running.grpcAddress }, 'billing service started');
  // A process started by a parent that waits for it (npm start's API processes) says it is ready.
  process.send?.({ ready: true, url: running.url, grpcAddress: running.grpcAddress });
  let stopping = false;
  const shutdown = (signal: string) => {
    // A second signal (a terminal sends Ctrl-C to the whole group, a parent may forward it) must not
    // interrupt the first shutdown.
    if (stopping) return;
    stopping = true;
    running.ctx.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    running.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
}
