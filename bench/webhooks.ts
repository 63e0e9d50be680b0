/*
 * `npm run bench:webhooks`: does delivering events slow the gateway path? (SPEC 13: a slow or dead
 * endpoint never slows the gateway path.) One run, three phases on the same servers:
 *
 *   A. no webhook endpoints: BENCH_EVENT_USERS users (10,000) each cross their balance.low threshold
 *      with one deduct, then steady deducts for BENCH_SECONDS;
 *   A2. phase A again (what two saturating phases a minute apart differ by with nothing changed);
 *   B. the same with 10 endpoints, one of them dead (never answers, so each of its attempts waits the
 *      10 s timeout): another 10,000 users cross, and 9 x 10,000 deliveries run beside the deducts
 *      (at most webhooks.max_per_second_per_endpoint each: set WEBHOOKS_MAX_PER_SECOND_PER_ENDPOINT).
 *
 * The api, the worker and the webhooks process are processes of their own, as `npm start` runs them
 * (the webhooks process at its lower CPU priority and idle class, webhooks.nice and sched_idle;
 * BENCH_WEBHOOKS_IN_WORKER=1 delivers from the worker instead, the shape before; BENCH_DELIVERY_REDIS=1
 * puts the delivery queues on a Redis of their own, webhooks.redis_url, at the same priority). The
 * receivers (bench/webhook-receiver.ts) stand for other hosts: they run at the lowest CPU priority
 * (nice 19) and in the idle class (BENCH_RECEIVERS_NICE_ONLY=1: nice only), so that receiving costs
 * the service's cores as little as it would on a machine of their own. This process only sends
 * deducts, BENCH_CONCURRENCY (16) at a time, and times each. Prints deduct p50/p99 per phase, each
 * process's CPU per phase and the
 * delivery progress; JSON under bench/results/.
 *
 * Then, on a machine shared with other work, phases A and B run minutes apart under different noise;
 * the alternating rounds compare in the same minutes instead. While phase B's 90,000 deliveries are
 * still under way, BENCH_ROUNDS rounds send deducts at a fixed pace (BENCH_RATE per second, open loop:
 * each latency counts from the moment the call was due, so a stall is not hidden) for
 * BENCH_HALF_SECONDS with the webhooks process delivering and as long with it paused (SIGSTOP; shorter
 * than a job lock, so nothing is taken over), in alternating order. Paused is "no delivery work" for
 * the gateway path: the API, worker, Redis and MariaDB do exactly what they would without endpoints.
 * A gateway seldom saturates its billing service; at a fixed pace below saturation, what delivering
 * adds to a deduct's latency is what it takes from the CPU the gateway path needs. Then the same
 * rounds saturating (BENCH_CONCURRENCY at a time, closed loop, as in the phases), where the webhooks
 * process's CPU gate holds its deliveries: delivering against paused in the same minutes, with the
 * even/odd control, is the noise-controlled form of B against A2.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, startMariaDb, freePort } from '../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';
import { withServiceNodeOptions } from '../scripts/node-options.mjs';
import { parseProcStat } from '../src/lib/cpu-gate.js';

const USERS = Number(process.env.BENCH_EVENT_USERS ?? 10_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
/** the alternating rounds: deducts per second sent at a fixed pace, rounds, seconds per half-round */
const RATE = Number(process.env.BENCH_RATE ?? 400);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const HALF_SECONDS = Number(process.env.BENCH_HALF_SECONDS ?? 5);
const TOKEN = 'bench-token';
const ENDPOINTS = 10;

const IN_WORKER = process.env.BENCH_WEBHOOKS_IN_WORKER === '1';
/** BENCH_DELIVERY_REDIS=1: the delivery queues on a Redis of their own (webhooks.redis_url), at webhooks.nice */
const DELIVERY_REDIS = process.env.BENCH_DELIVERY_REDIS === '1';

/**
 * The webhooks process moves itself to SCHED_IDLE unless WEBHOOKS_SCHED_IDLE=false (webhooks.sched_idle);
 * the delivery Redis, delivery work only, is put in the same class here.
 */
const SCHED_IDLE = process.env.WEBHOOKS_SCHED_IDLE !== 'false';
const RECEIVERS_IDLE = process.env.BENCH_RECEIVERS_NICE_ONLY !== '1';
function idleCpu(pid: number): void {
  execFileSync('chrt', ['-a', '-i', '-p', '0', String(pid)]);
}

const children: ChildProcess[] = [];
function start(script: string, env: Record<string, string>, nice = 0, nodeArgs: string[] = []): Promise<string> {
  const node = [process.execPath, ...nodeArgs, '--import', 'tsx', script];
  const [cmd, ...args] = nice > 0 ? ['nice', '-n', String(nice), ...node] : node;
  // With the Node flags npm start gives the service's processes.
  const nodeOptions = withServiceNodeOptions(process.env.NODE_OPTIONS);
  const child = spawn(cmd, args, {
    env: { ...process.env, NODE_OPTIONS: nodeOptions, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString();
      if (/ready|started/.test(text)) resolve(text);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

/** CPU time (user + system) of a process so far, ms, from /proc (0 once it is gone). */
function cpuMs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(stat[11]) + Number(stat[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'billing-bench-webhooks-'));
  const [redis, mariadb, deliveryRedis] = await Promise.all([
    startRedis({ dir: join(dir, 'redis') }),
    startMariaDb({ dir: join(dir, 'mariadb'), database: 'billing_bench', fast: true }),
    DELIVERY_REDIS ? startRedis({ dir: join(dir, 'delivery-redis') }) : undefined,
  ]);
  // Delivery work only: at the webhooks process's priority, so that it yields to the gateway path too.
  if (deliveryRedis) setPriority(deliveryRedis.process.pid!, Number(process.env.WEBHOOKS_NICE ?? 10));
  try {
    const db = createDatabase(mariadb.url);
    await migrateLatest(db);
    await db.destroy();
    const configFile = join(dir, 'billing.config.json');
    writeFileSync(configFile, JSON.stringify({ services: [{ name: 'tokens', free_quota: 0, unit_price: '0.1' }] }));
    const port = await freePort();
    const env = {
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      CONFIG_FILE: configFile,
      REDIS_URL: redis.url,
      DATABASE_URL: mariadb.url,
      PORT: String(port),
      GRPC_PORT: String(await freePort()),
      HOST: '127.0.0.1',
      GATEWAY_TOKEN: TOKEN,
      ADMIN_TOKEN: TOKEN,
      WEBHOOKS_OWN_PROCESS: IN_WORKER ? 'false' : 'true',
      ...(deliveryRedis ? { WEBHOOKS_REDIS_URL: deliveryRedis.url } : {}),
    };
    const receiverPort = await freePort();
    await start('bench/webhook-receiver.ts', { PORT: String(receiverPort) }, 19);
    const processes: Record<string, number | undefined> = {};
    await start('src/main/api.ts', env);
    processes.api = children[children.length - 1].pid;
    await start('src/main/worker.ts', env);
    processes.worker = children[children.length - 1].pid;
    if (!IN_WORKER) {
      // BENCH_WEBHOOKS_NODE_ARGS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the deliveries.
      await start(
        'src/main/webhooks.ts',
        env,
        0,
        (process.env.BENCH_WEBHOOKS_NODE_ARGS ?? '').split(' ').filter(Boolean),
      );
      processes.webhooks = children[children.length - 1].pid;
    }
    if (SCHED_IDLE && deliveryRedis) idleCpu(deliveryRedis.process.pid!);
    processes.receivers = children[0].pid;
    // The receivers stand for other hosts: in the idle class too (BENCH_RECEIVERS_NICE_ONLY=1 keeps them
    // at nice 19 only, as runs before 2026-11-30 11:10 did).
    if (RECEIVERS_IDLE) idleCpu(processes.receivers!);
    processes.redis = redis.process.pid;
    if (deliveryRedis) processes.deliveryRedis = deliveryRedis.process.pid;
    processes.mariadb = mariadb.process.pid;
    const redisProbe = new Redis(redis.url);
    /** Redis CPU µs by command so far (INFO commandstats; EVALSHA is every script: ours and BullMQ's). */
    const redisUsec = async (): Promise<Record<string, number>> => {
      const text = (await redisProbe.info('commandstats')) as string;
      return Object.fromEntries(
        [...text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)].map((m) => [m[1], Number(m[3])]),
      );
    };
    /**
     * CPU seconds each process spent while `run` ran, and `machineBusyPercent`: the share of all cores at
     * normal priority (not niced), as the webhooks process's CPU gate reads it (which also leaves out its
     * own system time).
     */
    async function cpuDuring<T>(run: () => Promise<T>): Promise<[T, Record<string, number>]> {
      const machine = () => parseProcStat(readFileSync('/proc/stat', 'utf8'))!;
      const before = Object.fromEntries(Object.entries(processes).map(([k, pid]) => [k, cpuMs(pid)]));
      const machineBefore = machine();
      const out = await run();
      const machineAfter = machine();
      const spent = Object.fromEntries(
        Object.entries(processes).map(([k, pid]) => [k, +((cpuMs(pid) - before[k]) / 1000).toFixed(1)]),
      );
      const busy = (machineAfter.normalMs - machineBefore.normalMs) / (machineAfter.totalMs - machineBefore.totalMs);
      return [out, { ...spent, machineBusyPercent: Math.round(busy * 100) }];
    }
    const base = `http://127.0.0.1:${port}`;
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const post = (path: string, body: unknown) =>
      fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });

    /** Runs `calls`, CONCURRENCY at a time; returns each call's latency (ms) and the non-2xx count. */
    async function timed(next: () => Promise<number> | null): Promise<{ ms: number[]; failed: number }> {
      const ms: number[] = [];
      let failed = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          for (let call = next(); call; call = next()) {
            const t = performance.now();
            const status = await call;
            ms.push(performance.now() - t);
            if (status >= 300) failed++;
          }
        }),
      );
      return { ms, failed };
    }

    async function seed(users: string[], amount: string) {
      let i = 0;
      await timed(() =>
        i < users.length
          ? post(`/admin/v1/accounts/${users[i]}/adjustments`, {
              amount,
              reason: 'bench seed',
              idempotency_key: users[i++],
            })
          : null,
      );
    }

    const steady = Array.from({ length: 200 }, (_, i) => `steady-${i}`);
    await seed(steady, '1000000');

    /** Deducts closed loop, CONCURRENCY at a time (saturating), for `seconds`: each call's latency, non-2xx count. */
    async function saturated(seconds: number, tag: string): Promise<{ ms: number[]; failed: number }> {
      const until = Date.now() + seconds * 1000;
      let n = 0;
      return timed(() =>
        Date.now() < until
          ? post('/internal/v1/billing/deduct', {
              request_id: `${tag}-${n}`,
              user_id: steady[n++ % steady.length],
              service_name: 'tokens',
            })
          : null,
      );
    }

    async function phase(name: string) {
      const crossing = Array.from({ length: USERS }, (_, i) => `${name}-${i}`);
      await seed(crossing, '10.05');
      let i = 0;
      const crossed = await timed(() =>
        i < crossing.length
          ? post('/internal/v1/billing/deduct', { request_id: 'cross', user_id: crossing[i++], service_name: 'tokens' })
          : null,
      );
      const load = await saturated(SECONDS, name);
      const all = [...crossed.ms, ...load.ms].sort((a, b) => a - b);
      return {
        phase: name,
        deducts: all.length,
        failed: crossed.failed + load.failed,
        p50: +percentile(all, 0.5).toFixed(2),
        p99: +percentile(all, 0.99).toFixed(2),
        max: +all[all.length - 1].toFixed(2),
        steadyPerSecond: Math.round(load.ms.length / SECONDS),
      };
    }

    /** Deducts at RATE per second for `seconds`, open loop; each latency from the moment it was due. */
    async function paced(seconds: number, tag: string): Promise<number[]> {
      const ms: number[] = [];
      const calls: Promise<void>[] = [];
      const t0 = performance.now();
      const total = Math.round(seconds * RATE);
      for (let k = 0; k < total; k++) {
        const due = t0 + (k * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        calls.push(
          post('/internal/v1/billing/deduct', {
            request_id: `${tag}-${k}`,
            user_id: steady[k % steady.length],
            service_name: 'tokens',
          }).then(() => void ms.push(performance.now() - due)),
        );
      }
      await Promise.all(calls);
      return ms;
    }
    const summary = (ms: number[]) => {
      const sorted = [...ms].sort((a, b) => a - b);
      return {
        deducts: sorted.length,
        p50: +percentile(sorted, 0.5).toFixed(2),
        p90: +percentile(sorted, 0.9).toFixed(2),
        p99: +percentile(sorted, 0.99).toFixed(2),
        max: +sorted[sorted.length - 1].toFixed(2),
      };
    };

    /** p50 and p99 of `a` over those of `b`. */
    const ratios = (a: number[], b: number[]) => {
      const [x, y] = [summary(a), summary(b)];
      return { p50: +(x.p50 / y.p50).toFixed(2), p99: +(x.p99 / y.p99).toFixed(2) };
    };

    const [without, cpuA] = await cpuDuring(() => phase('a'));
    // Phase A again, still without endpoints: A2 against A is what two saturating phases a minute
    // apart differ by with nothing changed, the yardstick for B against A2.
    const [withoutAgain, cpuA2] = await cpuDuring(() => phase('a2'));
    for (let e = 0; e < ENDPOINTS; e++) {
      const path = e === 0 ? '/dead' : `/live${e}`;
      const status = await post('/admin/v1/webhooks', {
        url: `http://127.0.0.1:${receiverPort}${path}`,
        events: ['*'],
      });
      if (status !== 201) throw new Error(`webhook endpoint not created: ${status}`);
    }
    await new Promise((r) => setTimeout(r, 3000)); // the worker picks the endpoints up
    const startedAt = Date.now();
    const [withEndpoints, cpuB] = await cpuDuring(() => phase('b'));

    /**
     * Alternating rounds, while the deliveries are under way (webhooks process only: pausing the worker
     * would pause persistence too): the same minutes with the webhooks process delivering and paused
     * (SIGSTOP), each mode also against itself (even rounds vs odd rounds: the run's own noise).
     */
    async function alternate(load: (seconds: number, tag: string) => Promise<number[]>, tag: string) {
      const rounds = { paused: [] as number[], delivering: [] as number[] };
      const byParity = {
        paused: [[], []] as [number[], number[]],
        delivering: [[], []] as [number[], number[]],
      };
      const redisRounds = { paused: {} as Record<string, number>, delivering: {} as Record<string, number> };
      const cpuRounds = { paused: {} as Record<string, number>, delivering: {} as Record<string, number> };
      const busyPercents = { paused: [] as number[], delivering: [] as number[] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of r % 2 === 0 ? (['paused', 'delivering'] as const) : (['delivering', 'paused'] as const)) {
          process.kill(processes.webhooks!, mode === 'paused' ? 'SIGSTOP' : 'SIGCONT');
          const usecBefore = await redisUsec();
          const [ms, spent] = await cpuDuring(() => load(HALF_SECONDS, `${tag}${r}-${mode}`));
          for (const [cmd, usec] of Object.entries(await redisUsec())) {
            redisRounds[mode][cmd] = (redisRounds[mode][cmd] ?? 0) + usec - (usecBefore[cmd] ?? 0);
          }
          rounds[mode].push(...ms);
          byParity[mode][r % 2].push(...ms);
          for (const [k, v] of Object.entries(spent)) {
            if (k === 'machineBusyPercent') busyPercents[mode].push(v);
            else cpuRounds[mode][k] = +((cpuRounds[mode][k] ?? 0) + v).toFixed(1);
          }
        }
      }
      process.kill(processes.webhooks!, 'SIGCONT');
      for (const mode of ['paused', 'delivering'] as const) {
        const all = busyPercents[mode];
        cpuRounds[mode].machineBusyPercent = Math.round(all.reduce((a, b) => a + b, 0) / all.length);
      }
      return {
        rounds: ROUNDS,
        halfSeconds: HALF_SECONDS,
        paused: summary(rounds.paused),
        delivering: summary(rounds.delivering),
        ratios: ratios(rounds.delivering, rounds.paused),
        control: {
          pausedEvenOverOdd: ratios(byParity.paused[0], byParity.paused[1]),
          deliveringEvenOverOdd: ratios(byParity.delivering[0], byParity.delivering[1]),
        },
        cpuSeconds: cpuRounds,
        redisMsByCommand: Object.fromEntries(
          (['paused', 'delivering'] as const).map((m) => [
            m,
            Object.fromEntries(
              Object.entries(redisRounds[m])
                .filter(([, us]) => us >= 10_000)
                .sort((a, b) => b[1] - a[1])
                .map(([c, us]) => [c, Math.round(us / 1000)]),
            ),
          ]),
        ),
      };
    }

    const liveDeliveries = async () =>
      Object.entries(
        (await (await fetch(`http://127.0.0.1:${receiverPort}/count`)).json()) as Record<
          string,
          { deliveries: number }
        >,
      )
        .filter(([p]) => p !== '/dead')
        .reduce((a, [, v]) => a + v.deliveries, 0);
    let pacedRounds: Awaited<ReturnType<typeof alternate>> | null = null;
    let saturatedRounds: Awaited<ReturnType<typeof alternate>> | null = null;
    let liveDeliveriesBefore = 0;
    let liveDeliveriesAfterRounds = 0;
    if (processes.webhooks) {
      liveDeliveriesBefore = await liveDeliveries();
      // At a fixed pace below saturation, then saturating (16 at a time, as in the phases).
      pacedRounds = await alternate(paced, 'r');
      liveDeliveriesAfterRounds = await liveDeliveries();
      saturatedRounds = await alternate((seconds, tag) => saturated(seconds, tag).then((r) => r.ms), 's');
    }
    // Deliveries of phase B's events to the 9 live endpoints: wait for them (bounded), report progress.
    const counts = async () =>
      (await (await fetch(`http://127.0.0.1:${receiverPort}/count`)).json()) as Record<
        string,
        { deliveries: number; events: number }
      >;
    let c = await counts();
    const live = () => Object.entries(c).filter(([p]) => p !== '/dead');
    while (Date.now() - startedAt < 900_000 && live().reduce((a, [, s]) => a + s.events, 0) < USERS * (ENDPOINTS - 1)) {
      await new Promise((r) => setTimeout(r, 2000));
      c = await counts();
    }
    const result = {
      at: new Date().toISOString(),
      users: USERS,
      seconds: SECONDS,
      concurrency: CONCURRENCY,
      deliveredBy: IN_WORKER
        ? 'the worker'
        : `a webhooks process of its own (nice ${process.env.WEBHOOKS_NICE ?? 10}${SCHED_IDLE ? ', idle class' : ''})`,
      deliveryQueues: deliveryRedis ? 'a Redis of their own (same nice)' : 'the counters’ Redis',
      receivers: RECEIVERS_IDLE ? 'nice 19, idle class' : 'nice 19',
      phases: [without, withoutAgain, withEndpoints],
      phaseRatios: {
        bOverA2: {
          p50: +(withEndpoints.p50 / withoutAgain.p50).toFixed(2),
          p99: +(withEndpoints.p99 / withoutAgain.p99).toFixed(2),
        },
        control: {
          a2OverA: {
            p50: +(withoutAgain.p50 / without.p50).toFixed(2),
            p99: +(withoutAgain.p99 / without.p99).toFixed(2),
          },
        },
      },
      cpuSecondsPerPhase: { a: cpuA, a2: cpuA2, b: cpuB },
      alternatingRounds: pacedRounds
        ? {
            ratePerSecond: RATE,
            ...pacedRounds,
            liveDeliveriesBefore,
            liveDeliveriesAfter: liveDeliveriesAfterRounds,
          }
        : null,
      saturatedRounds,
      deliveries: {
        liveEndpoints: ENDPOINTS - 1,
        eventsPerLiveEndpoint: live().map(([p, s]) => [p, s.events]),
        dead: c['/dead'] ?? { deliveries: 0, events: 0 },
        allLiveDeliveredAfterMs: live().every(([, s]) => s.events >= USERS) ? Date.now() - startedAt : null,
        perEndpointRate: process.env.WEBHOOKS_MAX_PER_SECOND_PER_ENDPOINT ?? '25 (default)',
      },
    };
    console.table(result.phases);
    console.table({ 'b / a2': result.phaseRatios.bOverA2, 'a2 / a (control)': result.phaseRatios.control.a2OverA });
    console.table(result.cpuSecondsPerPhase);
    for (const [title, r] of [
      [`rounds at ${RATE}/s`, result.alternatingRounds],
      ['rounds saturating', result.saturatedRounds],
    ] as const) {
      if (!r) continue;
      console.log(title);
      console.table({ paused: r.paused, delivering: r.delivering });
      console.table({ 'delivering / paused': r.ratios, ...r.control });
      console.table(r.cpuSeconds);
      console.log('Redis ms by command', JSON.stringify(r.redisMsByCommand));
    }
    console.log(JSON.stringify(result.deliveries));
    redisProbe.disconnect();
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(`bench/results/webhooks-${result.at.replace(/[:.]/g, '-')}.json`, JSON.stringify(result, null, 2));
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    await Promise.allSettled([redis.stop(), mariadb.stop(), deliveryRedis?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
