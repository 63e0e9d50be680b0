/*
 * The whole service on one machine: with no REDIS_URL / DATABASE_URL it runs its own redis-server and
 * MariaDB under ./.data on loopback (installing the OS packages if it may), migrates, and starts the
 * API, workers and scheduler in this process. Ctrl-C / SIGTERM stops everything it started.
 */
import { join } from 'node:path';
import { loadConfig, ConfigError } from '../src/config/config.js';
import { startRoles, type Running } from '../src/main/processes.js';
import { createLogger } from '../src/lib/logger.js';
import { PaymentSimulator } from '../simulator/payment-simulator.js';
import { ensurePackages, startRedis, startMariaDb, freePort, type LocalServer } from './local-servers.js';

const DATA = join(process.cwd(), '.data');
const started: LocalServer[] = [];
let running: Running | undefined;
let simulator: PaymentSimulator | undefined;

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => freePort().then(res));
    s.listen(preferred, '127.0.0.1', () => s.close(() => res(preferred)));
  });
}

async function stopAll(code: number): Promise<never> {
  await running?.stop().catch((e) => console.error(e));
  await simulator?.stop().catch(() => undefined);
  for (const s of started.reverse()) await s.stop().catch(() => undefined);
  process.exit(code);
}

async function main(): Promise<void> {
  const env = { ...process.env };
  if (!env.REDIS_URL || !env.DATABASE_URL) ensurePackages();
  if (!env.REDIS_URL) {
    const redis = await startRedis({ dir: join(DATA, 'redis'), port: await portOr(6390), aof: true });
    started.push(redis);
    env.REDIS_URL = redis.url;
  }
  if (!env.DATABASE_URL) {
    const db = await startMariaDb({ dir: join(DATA, 'mariadb'), port: await portOr(3407), database: 'billing' });
    started.push(db);
    env.DATABASE_URL = db.url;
  }
  let config;
  try {
    config = loadConfig(env);
    if (!env.PAYMENT_GRPC_ADDR) {
      // No payment service configured: run the bundled simulator, sharing the callback secret.
      simulator = await new PaymentSimulator({ grpcPort: await portOr(9101), httpPort: await portOr(9102), callbackSecret: config.payment.callbackSecret }).start();
      env.PAYMENT_GRPC_ADDR = simulator.grpcAddr;
      config = loadConfig(env);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return stopAll(2);
    }
    throw err;
  }
  running = await startRoles(config, ['api', 'worker', 'scheduler'], { migrate: true, logger: createLogger(config.logLevel, 'billing', process.stdout.isTTY) });
  const lines = [
    '',
    'Billing service is ready.',
    `  API              ${running.url}   (gateway token: ${config.defaultedSecrets.includes('auth.gateway_token') ? config.auth.gatewayToken : '<GATEWAY_TOKEN>'})`,
    `  gRPC             ${running.grpcAddress}   (billing.v1; same gateway token as metadata)`,
    `  Bull Board       ${running.url}/admin/queues   (${config.auth.boardUser} / ${config.defaultedSecrets.includes('auth.board_password') ? config.auth.boardPassword : '<BULL_BOARD_PASSWORD>'})`,
    `  Metrics          ${running.url}/metrics   (Bearer admin token)`,
    `  Payment service  ${simulator ? `simulator: pay pages ${simulator.httpUrl}/pay/<payment id>, gRPC ${simulator.grpcAddr}` : config.payment.grpcAddr}`,
    `  Redis            ${env.REDIS_URL}`,
    `  MySQL            ${env.DATABASE_URL!.replace(/:[^:@/]+@/, ':***@')}`,
    `  Data             ${started.length > 0 ? DATA : '(external servers)'}`,
    '  Stop with Ctrl-C.',
    '',
  ];
  console.log(lines.join('\n'));
}

process.once('SIGINT', () => void stopAll(0));
process.once('SIGTERM', () => void stopAll(0));
main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  void stopAll(1);
});
