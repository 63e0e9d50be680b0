import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, ConfigError, type Config } from '../config/config.js';
import { createContext, type AppContext, type ContextOptions } from '../context.js';
import { createApp } from '../api/app.js';
import { startWorkers } from '../workers/workers.js';
import { registerSchedules } from '../jobs/schedules.js';
import { migrateLatest } from '../repositories/database.js';
import { checkDependencies, DependencyError } from './dependencies.js';

export type Role = 'api' | 'worker' | 'scheduler';

export interface Running {
  ctx: AppContext;
  server?: Server;
  url?: string;
  stop(): Promise<void>;
}

/** Starts the given roles in this process on one context. `port` 0 picks a free port (tests). */
export async function startRoles(config: Config, roles: Role[], opts: ContextOptions & { migrate?: boolean } = {}): Promise<Running> {
  const ctx = createContext(config, opts);
  for (const key of config.defaultedSecrets) ctx.logger.warn(`${key} is the development default; set it before exposing the service`);
  if (opts.migrate) await migrateLatest(ctx.db);

  const stops: (() => Promise<void>)[] = [];
  let server: Server | undefined;
  let url: string | undefined;

  if (roles.includes('worker')) {
    const w = startWorkers(ctx);
    stops.push(() => w.close());
  }
  if (roles.includes('scheduler')) await registerSchedules(ctx.queues, config);
  if (roles.includes('api')) {
    const app = createApp(ctx);
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.http.port, config.http.host, (err?: Error) => (err ? reject(err) : resolve(s)));
    });
    server.keepAliveTimeout = 65_000;
    const { port } = server.address() as AddressInfo;
    url = `http://${config.http.host}:${port}`;
    if (!config.http.publicBaseUrl) ctx.publicUrl.base = url;
    const s = server;
    // Stop accepting first; in-flight requests finish, idle keep-alive sockets are closed.
    stops.unshift(() => new Promise<void>((resolve) => { s.close(() => resolve()); s.closeIdleConnections(); }));
  }

  let stopping: Promise<void> | null = null;
  return {
    ctx, server, url,
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
  running.ctx.logger.info({ roles, url: running.url }, 'billing service started');
  let stopping = false;
  const shutdown = (signal: string) => {
    // A second signal (a terminal sends Ctrl-C to the whole group, a parent may forward it) must not
    // interrupt the first shutdown.
    if (stopping) return;
    stopping = true;
    running.ctx.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    running.stop().then(() => process.exit(0), () => process.exit(1));
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
}
