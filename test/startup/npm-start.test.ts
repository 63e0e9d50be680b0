/*
 * `npm start` as a developer runs it, on a throw-away data folder: every way of stopping it stops
 * everything, a start after a crash recovers, the banner says what comes next, and the admin CLI
 * finds the running stack by itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { schedulingClasses } from '../support/processes.js';
import { SERVICE_NODE_OPTIONS } from '../../scripts/node-options.mjs';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import { RedisKeys } from '../../src/redis/keys.js';

const ROOT = process.cwd();
// Settings a developer's shell might carry that would make npm start use other servers.
const CLEARED = [
  'REDIS_URL',
  'DATABASE_URL',
  'PORT',
  'HOST',
  'PAYMENT_GRPC_ADDR',
  'NODE_ENV',
  'CONFIG_FILE',
  'REDIS_KEY_PREFIX',
  'QUEUE_PREFIX',
  'GATEWAY_TOKEN',
  'ADMIN_TOKEN',
  'BULL_BOARD_PASSWORD',
  'PAYMENT_CALLBACK_SECRET',
  'PORTAL_SESSION_SECRET',
];

function envFor(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BILLING_DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...extra };
  for (const k of CLEARED) if (!(k in extra)) delete env[k];
  return env;
}

interface Stack {
  npm: ChildProcess;
  output(): string;
}

function startStack(dataDir: string, extra: Record<string, string> = {}): Stack {
  let output = '';
  // Its own process group, as a terminal gives a foreground job: the group is what Ctrl-C signals.
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    env: envFor(dataDir, extra),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  npm.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  npm.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { npm, output: () => output };
}

async function until(
  what: string,
  check: () => boolean,
  timeoutMs: number,
  detail: () => string = () => '',
): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (check()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${detail()}`);
}

async function ready(stack: Stack): Promise<void> {
  await until(
    'the banner',
    () => stack.output().includes('Billing service is ready.') || stack.npm.exitCode !== null,
    90_000,
    stack.output,
  );
  expect(stack.npm.exitCode, stack.output()).to.equal(null);
}

/** Processes working in, started on, or started for the data folder (servers, npm, node). */
function runningOn(dataDir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (cwd.startsWith(dataDir) || cmdline.includes(dataDir) || environ.includes(`BILLING_DATA_DIR=${dataDir}\0`))
        found.push(`${pid} ${cmdline.trim()}`);
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return found;
}

async function allStopped(dataDir: string): Promise<number> {
  return until(
    'nothing left running on the data folder',
    () => runningOn(dataDir).length === 0,
    10_000,
    () => runningOn(dataDir).join('\n'),
  );
}

function stackEnv(dataDir: string): Record<string, string> {
  return (JSON.parse(readFileSync(join(dataDir, 'stack.json'), 'utf8')) as { env: Record<string, string> }).env;
}

/** The admin CLI as a developer runs it from the project folder, with only BILLING_DATA_DIR set. */
function admin(
  dataDir: string,
  args: string[],
  extra: Record<string, string> = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main/admin.ts', ...args], {
      cwd: ROOT,
      env: envFor(dataDir, extra),
      timeout: 30_000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

function noStackTrace(text: string): void {
  expect(text).not.to.match(/\n\s+at /);
}

describe('npm start', function () {
  this.timeout(180_000);
  const dataDir = mkdtempSync(join(tmpdir(), 'billing-npm-start-'));
  let first: Record<string, string>;

  // A failed test must not leave a stack running: stop what still works on the data folder (ours).
  afterEach(async () => {
    for (const line of runningOn(dataDir)) {
      try {
        process.kill(Number(line.split(' ')[0]), 'SIGTERM');
      } catch {
        /* gone meanwhile */
      }
    }
    await until('the data folder to be free', () => runningOn(dataDir).length === 0, 30_000).catch(() => undefined);
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('prints what a developer needs next, and Ctrl-C (SIGINT to the process group) stops everything', async () => {
    const stack = startStack(dataDir);
    await ready(stack);
    first = stackEnv(dataDir);
    const banner = stack.output();
    expect(banner).to.include('admin token: dev-admin-token');
    expect(banner).to.match(/MySQL .*\(password: billing\)/);
    expect(banner).to.match(/control API http:\/\/127\.0\.0\.1:\d+\/control/);
    expect(banner).to.include(`export REDIS_URL=${first.REDIS_URL} DATABASE_URL=${first.DATABASE_URL}`);
    const ports = JSON.parse(readFileSync(join(dataDir, 'ports.json'), 'utf8')) as Record<string, number>;
    expect(first.REDIS_URL).to.include(`:${ports.redis}`);
    expect(first.DATABASE_URL).to.include(`:${ports.mariadb}`);
    // The simulator's control URL in the banner answers.
    const control = /control API (\S+)/.exec(banner)![1];
    expect((await fetch(`${control}/payments`)).status).to.equal(200);
    // Webhook deliveries run in a process of their own, at a lower CPU priority, in the idle class.
    const webhooks = /Webhooks\s+delivered by their own process \(pid (\d+), nice 10, idle class\)/.exec(banner);
    expect(webhooks, banner).not.to.equal(null);
    expect(getPriority(Number(webhooks![1]))).to.equal(10);
    expect(new Set(schedulingClasses(Number(webhooks![1])))).to.deep.equal(new Set(['idle']));
    // The stack's Node flags (scripts/node-options.mjs) reach the processes it starts, as NODE_OPTIONS.
    const environ = readFileSync(`/proc/${webhooks![1]}/environ`, 'utf8').split('\0');
    const nodeOptions = environ.find((v) => v.startsWith('NODE_OPTIONS='));
    expect(nodeOptions, 'NODE_OPTIONS of the webhooks process').to.include(SERVICE_NODE_OPTIONS);

    process.kill(-stack.npm.pid!, 'SIGINT');
    await allStopped(dataDir);
  });

  it('comes back on the remembered ports, the CLI finds it, SIGTERM to the group stops everything', async () => {
    const stack = startStack(dataDir);
    await ready(stack);
    const env = stackEnv(dataDir);
    expect(env.REDIS_URL).to.equal(first.REDIS_URL);
    expect(env.DATABASE_URL).to.equal(first.DATABASE_URL);

    // The README's CLI examples, with nothing but the project folder to go on. What does not depend
    // on an earlier step runs at the same time: each run is a Node process of its own.
    const adjust = (amount: string, key: string) => [
      'adjust',
      'alice',
      amount,
      '--reason',
      `test ${key}`,
      '--key',
      key,
    ];
    const [help, adjustHelp, credit] = await Promise.all([
      admin(dataDir, ['--help']),
      admin(dataDir, ['adjust', '--help']),
      admin(dataDir, adjust('10.00', 'welcome-alice')),
    ]);
    expect(help.code).to.equal(0);
    expect(help.out).to.include('adjust <user_id> <amount>');
    expect(adjustHelp.code).to.equal(0);
    expect(adjustHelp.out).to.include('--allow-negative');
    expect(credit.code, credit.err).to.equal(0);
    expect(JSON.parse(credit.out)).to.include({ applied: true, balance: '10.00' });
    const debit = await admin(dataDir, adjust('-5.00', 'ticket-42'));
    expect(debit.code, debit.err).to.equal(0);
    expect(JSON.parse(debit.out)).to.include({ applied: true, amount: '-5.00', balance: '5.00' });

    // Mistakes: one clear line each, exit 2 for the command line, 1 otherwise, no stack trace.
    const cases: [string[], number, RegExp][] = [
      [['account'], 2, /account needs <user_id>/],
      [['adjust', 'alice', '1.00'], 2, /--reason .* --key/],
      [['adjust', 'alice'], 2, /adjust needs <user_id> <amount>/],
      [['adjust', 'alice', 'ten', '--reason', 'x', '--key', 'k'], 2, /amount "ten"/],
      [['ledger', 'alice', '--limit', 'lots'], 2, /--limit must be/],
      [['adjust', 'alice', '1.00', '--bogus'], 2, /Unknown option '--bogus'/],
      [['frobnicate'], 2, /unknown command "frobnicate"/],
      [['account', 'ghost'], 1, /no account for user "ghost"/],
      [['adjust', 'bob', '-1.00', '--reason', 'x', '--key', 'k-bob'], 1, /cannot cover/],
    ];
    // Unreachable servers given explicitly: named, password masked, no stack trace.
    const unreachable = {
      REDIS_URL: 'redis://127.0.0.1:1',
      DATABASE_URL: 'mysql://billing:s3cret@127.0.0.1:1/billing',
    };
    const [again, account, ledger, down, ...results] = await Promise.all([
      admin(dataDir, adjust('-5.00', 'ticket-42')),
      admin(dataDir, ['account', 'alice']),
      admin(dataDir, ['ledger', 'alice', '--limit', '1']),
      admin(dataDir, ['account', 'alice'], unreachable),
      ...cases.map(([args]) => admin(dataDir, args)),
    ]);
    expect(JSON.parse(again.out)).to.include({ applied: false, balance: '5.00' });
    expect(account.code, account.err).to.equal(0);
    expect(JSON.parse(account.out)).to.include({ userId: 'alice', balance: '5.00' });
    expect(ledger.code, ledger.err).to.equal(0);
    expect(JSON.stringify(JSON.parse(ledger.out))).to.include('-5.00');
    expect(down.code).to.equal(1);
    expect(down.err).to.include('Cannot reach Redis at redis://127.0.0.1:1 (REDIS_URL)');
    expect(down.err).to.include('Cannot reach MySQL at mysql://billing:***@127.0.0.1:1/billing (DATABASE_URL)');
    expect(down.err).not.to.include('s3cret');
    noStackTrace(down.err);
    for (const [i, [args, code, message]] of cases.entries()) {
      const r = results[i];
      expect(r.code, args.join(' ')).to.equal(code);
      expect(r.err, args.join(' ')).to.match(message);
      noStackTrace(r.err);
    }
    // Looking up an unknown user created nothing.
    const redis = new Redis(env.REDIS_URL);
    const db = await mysql.createConnection(env.DATABASE_URL);
    try {
      expect(await redis.exists(new RedisKeys('bill').account('ghost'))).to.equal(0);
      const [rows] = await db.query('SELECT user_id FROM accounts WHERE user_id = ?', ['ghost']);
      expect(rows).to.have.length(0);
    } finally {
      redis.disconnect();
      await db.end();
    }

    process.kill(-stack.npm.pid!, 'SIGTERM');
    await allStopped(dataDir);
  });

  it('stops everything on SIGTERM to npm alone, even with its output closed (a terminal gone)', async () => {
    const stack = startStack(dataDir);
    await ready(stack);
    // Every later write of the stack fails (EPIPE): it must still stop what it started.
    stack.npm.stdout!.destroy();
    stack.npm.stderr!.destroy();
    process.kill(stack.npm.pid!, 'SIGTERM');
    await allStopped(dataDir);
  });

  it('after a crash left its servers running, says so and recovers; SIGINT to npm alone stops all', async () => {
    const crashed = startStack(dataDir);
    await ready(crashed);
    // The Node processes die outright; the servers, in their own process groups, survive.
    process.kill(-crashed.npm.pid!, 'SIGKILL');
    await until(
      'the Node processes to die',
      () => runningOn(dataDir).every((p) => !/^\d+ (\S*\/)?(node|npm)\b/.test(p)),
      10_000,
    );
    expect(runningOn(dataDir).join('\n')).to.match(/mariadbd/);

    const stack = startStack(dataDir);
    await ready(stack);
    expect(stack.output()).to.match(
      /MariaDB from an earlier run is still running on .* \(pid \d+\): stopping it first/,
    );
    expect(stack.output()).to.match(/redis-server from an earlier run is still running/);

    process.kill(stack.npm.pid!, 'SIGINT');
    await allStopped(dataDir);
  });

  it('fails within seconds naming an unreachable Redis and MySQL given to it, without a stack trace', async () => {
    const stack = startStack(dataDir, {
      REDIS_URL: 'redis://127.0.0.1:1',
      DATABASE_URL: 'mysql://billing:s3cret@127.0.0.1:1/billing',
    });
    await until('npm start to give up', () => stack.npm.exitCode !== null, 10_000, stack.output);
    expect(stack.npm.exitCode).to.equal(1);
    expect(stack.output()).to.include('Cannot reach Redis at redis://127.0.0.1:1 (REDIS_URL): connection refused');
    expect(stack.output()).to.include('Cannot reach MySQL at mysql://billing:***@127.0.0.1:1/billing (DATABASE_URL)');
    expect(stack.output()).not.to.include('s3cret');
    noStackTrace(stack.output());
    await allStopped(dataDir);
  });
});
