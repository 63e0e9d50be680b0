/*
 * The image's entry points (what docker-compose runs), built and started against a database that
 * `npm start` migrated from source: migration names must not depend on .ts vs .js.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { testServers } from '../support/servers.js';
import { exited } from '../support/processes.js';
import { freePort } from '../../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../../src/repositories/database.js';

function startBuilt(entry: string, env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(process.execPath, [entry], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('built entry points against a database migrated from source', function () {
  this.timeout(120_000);
  let env: Record<string, string>;
  let databaseUrl: string;

  before(async () => {
    const build = spawnSync('npm', ['run', '-s', 'build'], { encoding: 'utf8' });
    expect(build.status, build.stdout + build.stderr).to.equal(0);
    // A database of its own, migrated the way `npm start` used to record names (with `.ts`).
    const servers = await testServers();
    const name = `billing_built_${randomBytes(3).toString('hex')}`;
    const root = await mysql.createConnection({
      socketPath: join(servers.dir, 'mariadb', 'mysqld.sock'),
      user: 'root',
    });
    await root.query(`CREATE DATABASE \`${name}\``);
    await root.query(`GRANT ALL ON \`${name}\`.* TO 'billing'@'127.0.0.1'`);
    await root.end();
    databaseUrl = servers.databaseUrl.replace(/\/[^/]+$/, `/${name}`);
    const db = createDatabase(databaseUrl);
    await migrateLatest(db);
    await db('knex_migrations').update({ name: db.raw("CONCAT(name, '.ts')") });
    await db.destroy();
    const tag = randomBytes(3).toString('hex');
    env = {
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(await freePort()),
      REDIS_URL: servers.redisUrl,
      DATABASE_URL: databaseUrl,
      REDIS_KEY_PREFIX: `b${tag}`,
      QUEUE_PREFIX: `{b${tag}}`,
      GATEWAY_TOKEN: `gateway-${tag}-0123456789abcdef0123456789`,
      ADMIN_TOKEN: `admin-${tag}-0123456789abcdef0123456789`,
      BULL_BOARD_PASSWORD: `board-${tag}-0123456789abcdef0123456789`,
      PAYMENT_CALLBACK_SECRET: `callback-${tag}-0123456789abcdef01234`,
      PORTAL_SESSION_SECRET: `portal-${tag}-0123456789abcdef0123456789`,
      PAYMENT_GRPC_ADDR: 'payments.invalid:443',
    };
  });

  it('migrate, api, worker and scheduler start, serve and stop on SIGTERM', async () => {
    const migrate = startBuilt('dist/src/main/migrate.js', env);
    expect(await exited(migrate.child, 20_000), migrate.output()).to.equal('0');
    expect(migrate.output()).to.include('already up to date');

    const roles = ['api', 'worker', 'scheduler'].map((role) => ({
      role,
      ...startBuilt(`dist/src/main/${role}.js`, env),
    }));
    try {
      await until('the built api to answer', async () => {
        const res = await fetch(`http://127.0.0.1:${env.PORT}/readyz`).catch(() => null);
        return res?.status === 200;
      });
      for (const r of roles) await until(`${r.role} to start`, () => r.output().includes('billing service started'));
      const res = await fetch(`http://127.0.0.1:${env.PORT}/api/v1/billing/account?user_id=built-u1`, {
        headers: { authorization: `Bearer ${env.GATEWAY_TOKEN}` },
      });
      expect(res.status).to.equal(200);
    } finally {
      for (const r of roles) r.child.kill('SIGTERM');
    }
    for (const r of roles) expect(await exited(r.child, 20_000), `${r.role}: ${r.output()}`).to.equal('0');
    for (const r of roles) expect(r.output(), r.role).not.to.match(/corrupt|\n\s+at /);
  });

  for (const [dependency, override, named] of [
    [
      'Redis',
      { REDIS_URL: 'redis://:s3cret@127.0.0.1:1' },
      'Cannot reach Redis at redis://:***@127.0.0.1:1 (REDIS_URL): connection refused',
    ],
    [
      'MySQL',
      { DATABASE_URL: 'mysql://billing:s3cret@127.0.0.1:1/billing' },
      'Cannot reach MySQL at mysql://billing:***@127.0.0.1:1/billing (DATABASE_URL)',
    ],
  ] as const) {
    it(`fails within 10 s with one paragraph naming an unreachable ${dependency}`, async () => {
      const t0 = Date.now();
      const api = startBuilt('dist/src/main/api.js', { ...env, ...override });
      expect(await exited(api.child, 10_000)).to.equal('1');
      expect(Date.now() - t0).to.be.below(10_000);
      const output = api.output().trim();
      expect(output).to.include(named);
      expect(output).to.include('Check that');
      expect(output).not.to.include('s3cret');
      expect(output.split('\n'), output).to.have.length(1);
    });
  }
});
