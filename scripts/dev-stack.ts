/*
 * The whole service on one machine: with no REDIS_URL / DATABASE_URL it runs its own redis-server and
 * MariaDB under ./.data (BILLING_DATA_DIR) on loopback (installing the OS packages if it may),
 * migrates, and starts the workers and scheduler in this process, the API in a process per core and the
 * webhook deliveries in one of their own.
 *
 * Stopping: Ctrl-C, SIGTERM, SIGHUP, or the death of the parent (npm) stop everything it started.
 * The servers run in their own process group so that a terminal's Ctrl-C reaches only us, and we
 * stop them in order and wait for them (MariaDB ignores SIGINT). A server left running by an
 * earlier run that was killed outright is found through its pid file and stopped first.
 */
import { availableParallelism } from 'node:os';
import { startApiCluster, type ApiCluster } from '../src/main/api-cluster.js';
import { startRoleProcess, type RoleProcess } from '../src/main/role-process.js';
import { join } from 'node:path';
import { loadConfig, ConfigError, type Config } from '../src/config/config.js';
import { startRoles, type Running } from '../src/main/processes.js';
import { checkDependencies, DependencyError, maskUrl } from '../src/main/dependencies.js';
import {
  dataDir,
  readStackFile,
  writeStackFile,
  removeStackFile,
  readPorts,
  writePorts,
  type Ports,
} from '../src/main/local-stack.js';
import { createLogger } from '../src/lib/logger.js';
import { PaymentSimulator } from '../simulator/payment-simulator.js';
import { ensurePackages, startRedis, startMariaDb, freePort, stopLeftover, type LocalServer } from './local-servers.js';

const DATA = dataDir();
const started: LocalServer[] = [];
let running: Running | undefined;
let api: ApiCluster | undefined;
let webhooks: RoleProcess | undefined;
let simulator: PaymentSimulator | undefined;
let stopping: Promise<never> | null = null;
let startup: Promise<void> = Promise.resolve();

/** The preferred port if it is free on loopback, else any free one. */
async function portOr(preferred: number | undefined, fallback: number): Promise<number> {
  const { createServer } = await import('node:net');
  const want = preferred ?? fallback;
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => freePort().then(res));
    s.listen(want, '127.0.0.1', () => s.close(() => res(want)));
  });
}

function stopAll(code: number, why?: string): Promise<never> {
  stopping ??= (async () => {
    if (why) console.log(`\n${why}: stopping...`);
    // Let a start in progress reach a point where everything it spawned is known, then stop it all.
    await startup.catch(() => undefined);
    await api?.stop().catch((e: Error) => console.error(`stopping the API processes: ${e.message}`));
    await webhooks?.stop().catch((e: Error) => console.error(`stopping the webhooks process: ${e.message}`));
    await running?.stop().catch((e: Error) => console.error(`stopping the service: ${e.message}`));
    await simulator?.stop().catch(() => undefined);
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    // A server whose start was interrupted is not in `started` yet: its pid file still names it.
    await stopLeftover(join(DATA, 'redis', 'redis.pid'), join(DATA, 'redis'), 'redis-server', () => undefined).catch(
      () => false,
    );
    await stopLeftover(
      join(DATA, 'mariadb', 'mysqld.pid'),
      join(DATA, 'mariadb', 'data'),
      'MariaDB',
      () => undefined,
    ).catch(() => false);
    removeStackFile(DATA);
    if (why) console.log('stopped.');
    process.exit(code);
  })();
  return stopping;
}

function secretOr(config: Config, key: string, value: string, placeholder: string): string {
  return config.defaultedSecrets.includes(key) ? value : placeholder;
}

async function start(): Promise<void> {
  const other = readStackFile(DATA);
  if (other && other.pid !== process.pid) {
    console.error(
      `Another \`npm start\` (pid ${other.pid}) is running on ${DATA}. ` +
        `Stop it first (Ctrl-C in its terminal, or: kill ${other.pid}).`,
    );
    process.exit(1);
  }
  const env = { ...process.env };
  const last = readPorts(DATA);
  const ports: Ports = {};
  const say = (s: string) => console.log(s);
  if (!env.REDIS_URL || !env.DATABASE_URL) ensurePackages();
  if (!env.REDIS_URL) {
    const dir = join(DATA, 'redis');
    await stopLeftover(join(dir, 'redis.pid'), dir, 'redis-server', say);
    ports.redis = await portOr(last.redis, 6390);
    const redis = await startRedis({ dir, port: ports.redis, aof: true, ownProcessGroup: true });
    started.push(redis);
    env.REDIS_URL = redis.url;
  }
  if (stopping) return;
  if (!env.DATABASE_URL) {
    const dir = join(DATA, 'mariadb');
    await stopLeftover(join(dir, 'mysqld.pid'), join(dir, 'data'), 'MariaDB', say);
    ports.mariadb = await portOr(last.mariadb, 3407);
    const db = await startMariaDb({ dir, port: ports.mariadb, database: 'billing', ownProcessGroup: true });
    started.push(db);
    env.DATABASE_URL = db.url;
  }
  if (stopping) return;
  if (!env.PORT) env.PORT = String((ports.api = await portOr(last.api, 8107)));
  if (!env.GRPC_PORT) env.GRPC_PORT = String((ports.grpc = await portOr(last.grpc, 9107)));
  // Webhook deliveries in a process of their own at a lower CPU priority (see src/main/webhooks.ts).
  env.WEBHOOKS_OWN_PROCESS ??= 'true';
  let config = loadConfig(env);
  if (!env.PAYMENT_GRPC_ADDR) {
    // No payment service configured: run the bundled simulator, sharing the callback secret.
    ports.simulatorGrpc = await portOr(last.simulatorGrpc, 9101);
    ports.simulatorHttp = await portOr(last.simulatorHttp, 9102);
    simulator = await new PaymentSimulator({
      grpcPort: ports.simulatorGrpc,
      httpPort: ports.simulatorHttp,
      callbackSecret: config.payment.callbackSecret,
    }).start();
    env.PAYMENT_GRPC_ADDR = simulator.grpcAddr;
    config = loadConfig(env);
  }
  writePorts(DATA, { ...last, ...ports });
  await checkDependencies({ redis: config.redis.url, database: config.database.url });
  if (stopping) return;
  const logger = createLogger(config.logLevel, 'billing', process.stdout.isTTY);
  // Worker and scheduler here (migrating first); the API in one process per core (SPEC 16), sharing
  // its ports through node:cluster. API_PROCESSES overrides the count.
  running = await startRoles(config, ['worker', 'scheduler'], { migrate: true, logger });
  if (stopping) return;
  api = await startApiCluster(env, Number(env.API_PROCESSES) || availableParallelism());
  if (stopping) return;
  if (config.webhooks.ownProcess) webhooks = await startRoleProcess('webhooks', { ...env, MIGRATE_ON_START: 'false' });
  writeStackFile(DATA, env);

  const adminToken = secretOr(config, 'auth.admin_token', config.auth.adminToken, '<ADMIN_TOKEN>');
  const gatewayToken = secretOr(config, 'auth.gateway_token', config.auth.gatewayToken, '<GATEWAY_TOKEN>');
  const boardPassword = secretOr(config, 'auth.board_password', config.auth.boardPassword, '<BULL_BOARD_PASSWORD>');
  const dbPassword = decodeURIComponent(new URL(env.DATABASE_URL!).password) || '(none)';
  const cliEnv = [`REDIS_URL=${env.REDIS_URL}`, `DATABASE_URL=${env.DATABASE_URL}`];
  if (env.REDIS_KEY_PREFIX) cliEnv.push(`REDIS_KEY_PREFIX=${env.REDIS_KEY_PREFIX}`);
  if (env.QUEUE_PREFIX) cliEnv.push(`QUEUE_PREFIX='${env.QUEUE_PREFIX}'`);
  const lines = [
    '',
    'Billing service is ready.',
    `  API               ${api.url}   (gateway token: ${gatewayToken}; ${api.processes} processes)`,
    `  gRPC              ${api.grpcAddress}   (billing.v1; the gateway token as metadata)`,
    webhooks
      ? `  Webhooks          delivered by their own process (pid ${webhooks.pid}, nice ${config.webhooks.nice}` +
        `${config.webhooks.schedIdle ? ', idle class' : ''})`
      : '  Webhooks          delivered by the worker (WEBHOOKS_OWN_PROCESS=false)',
    `  Admin API         ${api.url}/admin/v1   (admin token: ${adminToken})`,
    `  Bull Board        ${api.url}/admin/queues   (${config.auth.boardUser} / ${boardPassword})`,
    `  Metrics           ${api.url}/metrics   (Bearer ${adminToken})`,
    simulator
      ? `  Payment simulator gRPC ${simulator.grpcAddr}, pay pages ${simulator.httpUrl}/pay/<payment id>, ` +
        `control API ${simulator.controlUrl}`
      : `  Payment service   ${config.payment.grpcAddr}`,
    `  Redis             ${env.REDIS_URL}`,
    `  MySQL             ${maskUrl(env.DATABASE_URL!)}   (password: ${dbPassword})`,
    `  Data              ${started.length > 0 ? DATA : '(external servers)'}`,
    '',
    '  The admin CLI (npm run admin -- --help) finds this stack by itself; elsewhere, give it:',
    `    export ${cliEnv.join(' ')}`,
    '',
    '  Stop with Ctrl-C.',
    '',
  ];
  console.log(lines.join('\n'));
}

// A closed terminal or a parent gone leaves stdout / stderr broken: a failed write (EPIPE, EIO)
// must not crash us halfway through stopping, which would leave the servers running.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stopAll(0, signal));
// npm passes a signal on to us, but if the parent dies outright we would be orphaned: watch it.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) void stopAll(0, 'parent process gone');
}, 500).unref();

startup = start();
startup.catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof DependencyError;
  console.error(known ? (err as Error).message : `start failed: ${err instanceof Error ? err.message : String(err)}`);
  void stopAll(err instanceof ConfigError ? 2 : 1);
});
