/*
 * `npm run bench:ab -- <other checkout>`: the gateway's hot path (HTTP check and deduct) of this
 * checkout and of another one (an earlier commit: `git worktree add /tmp/base <rev>`), side by side in
 * one run on this machine. Each side runs `src/main/all.ts` (API, worker and scheduler in one process)
 * on its own redis-server and MariaDB; wrk (bench/wrk/gateway.lua) saturates one side, then the other,
 * for BENCH_ROUNDS rounds of BENCH_SECONDS each; the medians and their ratio are printed, with the
 * API process's CPU per request (what the ratio follows on a shared machine). BENCH_AB_THIS=npm-start
 * runs this side as `npm start` does (bench/npm-start-side.ts: the API on every core, the worker apart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startRedis, startMariaDb, freePort, type LocalServer } from '../scripts/local-servers.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOKEN = 'bench-ab-token';
const here = resolve('.');
const other = process.argv[2] ? resolve(process.argv[2]) : null;
if (!other) {
  console.error('usage: npm run bench:ab -- <directory of the other checkout (its node_modules installed)>');
  process.exit(2);
}

interface Side {
  name: string;
  url: string;
  server: ChildProcess;
  stop(): Promise<void>;
}

/** CPU time (user + system) of a process so far, ms, from /proc. */
function cpuMs(child: ChildProcess): number {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(stat[11]) + Number(stat[12])) * 1000) / 100;
}

async function side(name: string, dir: string): Promise<Side> {
  const data = mkdtempSync(join(tmpdir(), `bench-ab-${name}-`));
  const servers: LocalServer[] = [];
  const redis = await startRedis({ dir: join(data, 'redis'), aof: true });
  const db = await startMariaDb({ dir: join(data, 'mariadb'), database: 'billing', fast: true });
  servers.push(db);
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
    MIGRATE_ON_START: 'true',
  };
  // BENCH_AB_THIS=npm-start: this checkout as npm start runs it (the API in a process per core, the
  // worker apart); the API processes' CPU is then not in the per-request CPU figure.
  const entry =
    name === 'this' && process.env.BENCH_AB_THIS === 'npm-start' ? 'bench/npm-start-side.ts' : 'src/main/all.ts';
  const server = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: dir, env, stdio: 'inherit' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 600) throw new Error(`${name} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    url,
    server,
    async stop() {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      await redis.stop();
      for (const s of servers) await s.stop();
      rmSync(data, { recursive: true, force: true });
    },
  };
}

async function load(s: Side, op: 'check' | 'deduct', run: string): Promise<{ rps: number; cpuUs: number }> {
  const cpu = cpuMs(s.server);
  const args = ['-t1', '-c32', `-d${SECONDS}s`, '-s', 'bench/wrk/gateway.lua', `${s.url}/internal/v1/billing/${op}`];
  args.push('--', `token=${TOKEN}`, 'users=1000', `run=${run}`);
  const out = await new Promise<string>((res, rej) => {
    const child = spawn('wrk', args, { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    child.once('exit', (code) => (code === 0 ? res(text) : rej(new Error(`wrk exited ${code}`))));
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { requests: number; duration_us: number; non2xx: number };
  if (r.non2xx > 0) throw new Error(`${s.name} ${op}: ${r.non2xx} answers were not 2xx`);
  return { rps: r.requests / (r.duration_us / 1e6), cpuUs: ((cpuMs(s.server) - cpu) * 1000) / r.requests };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const sides = [await side('this', here), await side('other', other)];
try {
  const results: Record<string, Record<string, { rps: number[]; cpuUs: number[] }>> = {};
  for (let round = 1; round <= ROUNDS; round++) {
    for (const op of ['check', 'deduct'] as const) {
      for (const s of round % 2 ? sides : [...sides].reverse()) {
        const r = await load(s, op, `${s.name}-${op}-${round}`);
        const acc = ((results[op] ??= {})[s.name] ??= { rps: [], cpuUs: [] });
        acc.rps.push(r.rps);
        acc.cpuUs.push(r.cpuUs);
        console.log(`round ${round} ${op} ${s.name}: ${r.rps.toFixed(0)} req/s, ${r.cpuUs.toFixed(0)} us CPU/request`);
      }
    }
  }
  for (const op of ['check', 'deduct']) {
    const a = results[op].this;
    const b = results[op].other;
    const ratio = median(a.rps) / median(b.rps);
    console.log(
      `${op}: this ${median(a.rps).toFixed(0)} req/s (${median(a.cpuUs).toFixed(0)} us CPU), ` +
        `other ${median(b.rps).toFixed(0)} req/s (${median(b.cpuUs).toFixed(0)} us CPU): ratio ${ratio.toFixed(2)}`,
    );
  }
} finally {
  for (const s of sides) await s.stop();
}
process.exit(0);
