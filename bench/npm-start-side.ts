/*
 * The service as `npm start` runs it, on servers the caller gives (REDIS_URL, DATABASE_URL, PORT in the
 * environment): worker and scheduler in this process (migrating first), the API in API_PROCESSES
 * processes sharing PORT through node:cluster. For bench/ab.ts (BENCH_AB_THIS=npm-start).
 */
import { availableParallelism } from 'node:os';
import { loadConfig } from '../src/config/config.js';
import { startRoles } from '../src/main/processes.js';
import { startApiCluster } from '../src/main/api-cluster.js';
import { createLogger } from '../src/lib/logger.js';

const config = loadConfig(process.env);
const running = await startRoles(config, ['worker', 'scheduler'], { migrate: true, logger: createLogger('warn') });
const api = await startApiCluster(process.env, Number(process.env.API_PROCESSES) || availableParallelism());
process.on('SIGTERM', () => {
  void api
    .stop()
    .then(() => running.stop())
    .then(() => process.exit(0));
});
