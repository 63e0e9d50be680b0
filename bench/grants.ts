/*
 * `npm run bench:grants`: the HTTP deduct of users with 3 active credit grants against users with
 * none, side by side in one run of one service (issue #14: the grants path keeps >= 0.9x). The
 * service (`src/main/all.ts`: API, worker and scheduler in one process) runs on its own
 * redis-server and MariaDB, with `passport` priced from the first call (no free quota), so every
 * deduct is paid: from the grants for the one population, from the balance for the other. wrk
 * (bench/wrk/gateway.lua, prefix=) saturates the service with one population's deducts, then the
 * other's, alternating first, after a warm-up run of each, for BENCH_ROUNDS rounds of BENCH_SECONDS
 * each; the medians and their ratio are printed and written to bench/results/, with the CPU the
 * service and redis-server spent per request: on a machine shared with other work, CPU per request
 * moves less than throughput does.
 *
 * Env: BENCH_SECONDS (8), BENCH_ROUNDS (5), BENCH_USERS (500 per population), BENCH_CONNECTIONS (32).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startRedis, startMariaDb, freePort } from '../scripts/local-servers.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const USERS = Number(process.env.BENCH_USERS ?? 500);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const TOKEN = 'bench-grants-gateway';
const ADMIN = 'bench-grants-admin';
const here = resolve('.');
const POPULATIONS = { grants: 'bgrant', none: 'bnone' } as const;
type Population = keyof typeof POPULATIONS;

/** CPU time (user + system) of a process so far, ms, from /proc. */
function cpuMs(child: ChildProcess): number {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(stat[11]) + Number(stat[12])) * 1000) / 100;
}

async function call(url: string, path: string, body: unknown, token: string): Promise<unknown> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { data: unknown };
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json.data;
}

/** Runs `work` over 0..n-1, `parallel` at a time. */
async function each(n: number, parallel: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

async function load(url: string, server: ChildProcess, who: Population, run: string) {
  const cpu = cpuMs(server);
  const redisCpu = cpuMs(redis.process);
  const args = [`-t1`, `-c${CONNECTIONS}`, `-d${SECONDS}s`, '-s', 'bench/wrk/gateway.lua'];
  args.push(`${url}/internal/v1/billing/deduct`, '--', `token=${TOKEN}`, `users=${USERS}`);
  args.push(`prefix=${POPULATIONS[who]}`, `run=${run}`);
  const out = await new Promise<string>((res, rej) => {
    const child = spawn('wrk', args, { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    child.once('exit', (code) => (code === 0 ? res(text) : rej(new Error(`wrk exited ${code}`))));
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as {
    requests: number;
    duration_us: number;
    non2xx: number;
    p50: number;
    p99: number;
  };
  if (r.non2xx > 0) throw new Error(`${who}: ${r.non2xx} answers were not 2xx`);
  return {
    rps: r.requests / (r.duration_us / 1e6),
    cpuUs: ((cpuMs(server) - cpu) * 1000) / r.requests,
    redisUs: ((cpuMs(redis.process) - redisCpu) * 1000) / r.requests,
    p50: r.p50,
    p99: r.p99,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const data = mkdtempSync(join(tmpdir(), 'bench-grants-'));
const redis = await startRedis({ dir: join(data, 'redis'), aof: true });
const db = await startMariaDb({ dir: join(data, 'mariadb'), database: 'billing', fast: true });
const configFile = join(data, 'billing.config.json');
writeFileSync(configFile, JSON.stringify({ services: [{ name: 'passport', free_quota: 0, unit_price: '0.001' }] }));
const port = await freePort();
const server = spawn(process.execPath, ['--import', 'tsx', 'src/main/all.ts'], {
  cwd: here,
  stdio: 'inherit',
  env: {
    ...process.env,
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    PORT: String(port),
    GRPC_PORT: '0',
    REDIS_URL: redis.url,
    DATABASE_URL: db.url,
    GATEWAY_TOKEN: TOKEN,
    ADMIN_TOKEN: ADMIN,
    PAYMENT_GRPC_ADDR: '127.0.0.1:1',
    MIGRATE_ON_START: 'true',
    CONFIG_FILE: configFile,
  },
});
const url = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i++) {
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 600) throw new Error('the service did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  // Both populations get the same balance; one of them also 3 grants (a priority, an expiry, neither),
  // each large enough that no run uses it up: every call of theirs is paid from a grant.
  const inAYear = new Date(Date.now() + 365 * 86_400_000).toISOString();
  await each(USERS, 16, async (i) => {
    for (const who of Object.keys(POPULATIONS) as Population[]) {
      const user = `${POPULATIONS[who]}${i}`;
      await call(
        url,
        `/admin/v1/accounts/${user}/adjustments`,
        { amount: '1000.00', reason: 'bench balance', idempotency_key: 'seed' },
        ADMIN,
      );
    }
    const user = `${POPULATIONS.grants}${i}`;
    const grants = [
      { grant_id: 'promo', amount: '1000.00', category: 'promotional', priority: 10, expires_at: inAYear },
      { grant_id: 'expiring', amount: '1000.00', category: 'promotional', expires_at: inAYear },
      { grant_id: 'paid', amount: '1000.00', category: 'paid' },
    ];
    for (const g of grants) await call(url, `/admin/v1/accounts/${user}/grants`, g, ADMIN);
  });
  console.log(`seeded ${USERS} users with 3 grants and ${USERS} without`);
  // The seed's persistence settles and both populations' accounts are warm before anything counts.
  await new Promise((r) => setTimeout(r, 5_000));
  for (const who of Object.keys(POPULATIONS) as Population[]) await load(url, server, who, `${who}-warm`);

  const results: Record<
    Population,
    { rps: number[]; cpuUs: number[]; redisUs: number[]; p50: number[]; p99: number[] }
  > = {
    grants: { rps: [], cpuUs: [], redisUs: [], p50: [], p99: [] },
    none: { rps: [], cpuUs: [], redisUs: [], p50: [], p99: [] },
  };
  for (let round = 1; round <= ROUNDS; round++) {
    const order: Population[] = round % 2 ? ['grants', 'none'] : ['none', 'grants'];
    for (const who of order) {
      const r = await load(url, server, who, `${who}-${round}`);
      for (const k of ['rps', 'cpuUs', 'redisUs', 'p50', 'p99'] as const) results[who][k].push(r[k]);
      console.log(
        `round ${round} ${who}: ${r.rps.toFixed(0)} deducts/s, ${r.cpuUs.toFixed(0)} us CPU/request ` +
          `(+ Redis ${r.redisUs.toFixed(0)} us), ` +
          `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`,
      );
    }
  }
  // The grants population really spent grants, the other the balance.
  const spentGrant = await fetch(`${url}/api/v1/billing/account?user_id=${POPULATIONS.grants}1`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  }).then((r) => r.json() as Promise<{ data: { grants: { grantId: string; remaining: string }[] } }>);
  const promo = spentGrant.data.grants.find((g: { grantId: string }) => g.grantId === 'promo');
  if (!promo || promo.remaining === '1000.00') throw new Error(`the grants were not spent: ${JSON.stringify(promo)}`);

  const summary = Object.fromEntries(
    (Object.keys(results) as Population[]).map((who) => [
      who,
      {
        rps: median(results[who].rps),
        cpuUsPerRequest: median(results[who].cpuUs),
        redisUsPerRequest: median(results[who].redisUs),
        p50: median(results[who].p50),
        p99: median(results[who].p99),
      },
    ]),
  ) as Record<
    Population,
    { rps: number; cpuUsPerRequest: number; redisUsPerRequest: number; p50: number; p99: number }
  >;
  const ratio = summary.grants.rps / summary.none.rps;
  const cpuRatio = summary.none.cpuUsPerRequest / summary.grants.cpuUsPerRequest;
  console.log(
    `deduct with 3 grants: ${summary.grants.rps.toFixed(0)} req/s (${summary.grants.cpuUsPerRequest.toFixed(0)} us CPU), ` +
      `without: ${summary.none.rps.toFixed(0)} req/s (${summary.none.cpuUsPerRequest.toFixed(0)} us CPU): ` +
      `Redis ${summary.grants.redisUsPerRequest.toFixed(0)} vs ${summary.none.redisUsPerRequest.toFixed(0)} us; ` +
      `ratio ${ratio.toFixed(2)} (target >= 0.90); by CPU per request ${cpuRatio.toFixed(2)}`,
  );
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/grants-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(
    file,
    JSON.stringify(
      { seconds: SECONDS, rounds: ROUNDS, users: USERS, connections: CONNECTIONS, results, summary, ratio, cpuRatio },
      null,
      2,
    ),
  );
  console.log(`written to ${file}`);
} finally {
  if (server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  await redis.stop();
  await db.stop();
  rmSync(data, { recursive: true, force: true });
}
process.exit(0);
