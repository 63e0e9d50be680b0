/*
 * `npm run bench:worker-cpu`: the persisting worker's CPU per deduct, in `npm start`'s shape: the API in
 * API_PROCESSES processes (node:cluster, default 2), the worker in a process of its own, on a
 * redis-server (AOF) and a MariaDB of their own. wrk (bench/wrk/gateway.lua) saturates deduct over
 * 1,000 users for BENCH_SECONDS (default 20) per round after a 10 s warm-up, BENCH_ROUNDS rounds
 * (default 3); after each round the worker's CPU (utime + stime from /proc) is divided by the
 * consumption records it wrote.
 * WORKER_CPU_PROFILE=<dir>: the worker runs under `node --cpu-prof` and writes its profile there on exit
 * (read it with `tsx bench/cpuprofile-summary.ts <file>`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mysql from 'mysql2/promise';
import { Redis } from 'ioredis';
import { startRedis, startMariaDb, freePort } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { startApiCluster } from '../src/main/api-cluster.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const API_PROCESSES = Number(process.env.API_PROCESSES ?? 2);
const PROFILE_DIR = process.env.WORKER_CPU_PROFILE ? resolve(process.env.WORKER_CPU_PROFILE) : null;
const TOKEN = 'bench-worker-cpu-token';

/** CPU time (user, system) of a process so far, µs, from /proc (clock ticks of 10 ms). */
function cpuUs(child: ChildProcess): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(stat[11]) * 10_000, sys: Number(stat[12]) * 10_000 };
}

const data = mkdtempSync(join(tmpdir(), 'bench-worker-cpu-'));
const redis = await startRedis({ dir: join(data, 'redis'), aof: true });
const db = await startMariaDb({ dir: join(data, 'mariadb'), database: 'billing', fast: true });
const port = await freePort();
const env = {
  ...process.env,
  NODE_ENV: 'development',
  LOG_LEVEL: 'warn',
  PORT: String(port),
  GRPC_PORT: '0',
  REDIS_URL: redis.url,
  DATABASE_URL: db.url,
  GATEWAY_TOKEN: TOKEN,
  PAYMENT_GRPC_ADDR: '127.0.0.1:1',
  MIGRATE_ON_START: 'false',
};
const knex = createDatabase(db.url, 1);
await migrateLatest(knex);
await knex.destroy();

const profileArgs = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
const worker = spawn(process.execPath, [...profileArgs, '--import', 'tsx', 'src/main/worker.ts'], {
  env,
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
await new Promise<void>((res, rej) => {
  worker.on('message', (m: { ready?: boolean }) => m?.ready && res());
  worker.once('exit', (code) => rej(new Error(`the worker exited while starting (${code})`)));
});
const api = await startApiCluster(env, API_PROCESSES);
const sql = await mysql.createConnection(db.url);
const redisClient = new Redis(redis.url);
/** persist-changes jobs added so far (BullMQ's id counter of the persistence queue). */
const jobsAdded = async () => Number((await redisClient.get('{billing}:persistence:id')) ?? 0);
const records = async () => {
  const [rows] = await sql.query('SELECT COUNT(*) AS n FROM consumption_records');
  return Number((rows as { n: number }[])[0].n);
};

async function wrk(seconds: number, run: string): Promise<number> {
  const args = ['-t1', '-c32', `-d${seconds}s`, '-s', 'bench/wrk/gateway.lua', `${api.url}/internal/v1/billing/deduct`];
  args.push('--', `token=${TOKEN}`, 'users=1000', `run=${run}`);
  const out = await new Promise<string>((res, rej) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    child.once('exit', (code) => (code === 0 ? res(text) : rej(new Error(`wrk exited ${code}`))));
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { requests: number; duration_us: number; non2xx: number };
  if (r.non2xx > 0) throw new Error(`${r.non2xx} answers were not 2xx`);
  return r.requests;
}

/** Waits until the records stop growing: every accepted deduct is persisted. */
async function settled(): Promise<number> {
  let last = -1;
  for (;;) {
    const n = await records();
    if (n === last) return n;
    last = n;
    await new Promise((r) => setTimeout(r, 1500));
  }
}

try {
  await wrk(10, 'warm-up');
  const figures: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const before = await settled();
    const cpu = cpuUs(worker);
    const jobs = await jobsAdded();
    const requests = await wrk(SECONDS, `round-${round}`);
    const after = await settled();
    const persisted = after - before;
    const end = cpuUs(worker);
    const perDeduct = (end.user + end.sys - cpu.user - cpu.sys) / persisted;
    const user = (end.user - cpu.user) / persisted;
    const sys = (end.sys - cpu.sys) / persisted;
    figures.push(perDeduct);
    console.log(
      `round ${round}: ${(requests / SECONDS).toFixed(0)} deducts/s, ${persisted} persisted ` +
        `(${requests} answered) in ${(await jobsAdded()) - jobs} jobs, worker ${perDeduct.toFixed(1)} µs CPU ` +
        `per deduct (user ${user.toFixed(1)}, sys ${sys.toFixed(1)})`,
    );
  }
  const sorted = [...figures].sort((a, b) => a - b);
  console.log(
    `worker CPU per deduct: median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} µs ` +
      `(range ${sorted[0].toFixed(1)}–${sorted[sorted.length - 1].toFixed(1)})`,
  );
} finally {
  await sql.end();
  redisClient.disconnect();
  await api.stop();
  worker.kill('SIGTERM');
  await new Promise((r) => worker.once('exit', r));
  await redis.stop();
  await db.stop();
  rmSync(data, { recursive: true, force: true });
}
process.exit(0);
