import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { spawnRole, exited } from '../support/processes.js';
import { OwnServers, runLoad, settle, assertExactlyOnce, calls } from './support.js';

/**
 * Each case runs a load of deductions, injects a fault, lets things recover, drains the queues and
 * checks SPEC section 7: every accepted call persisted exactly once, refused calls changed nothing,
 * Redis = MySQL = ledger for every user.
 *
 * Each user has 20 free calls and a balance for 100 paid ones, and is sent 150: the last 30 are
 * refused, so refusals are exercised under the faults too.
 */
const SERVICES = { services: [{ name: 'passport', free_quota: 20, unit_price: '0.001' }] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function seedUsers(h: Harness, prefix: string, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, u) => seedBalance(h, h.user(`${prefix}u${u}`), 100_000n)));
}

describe('fault injection', function () {
  this.timeout(240_000);
  const own = new OwnServers();
  before(async () => {
    await own.start();
  });
  after(() => own.stop());

  it('survives a worker killed with SIGKILL mid-batch (after its MySQL commit) and restarted', async () => {
    const h = await startHarness({ servers: own.urls, roles: ['api'], overrides: SERVICES });
    const workers = [spawnRole('worker', { ...h.env, BILLING_FAULT_CRASH_AT: 'after-batch-commit' })];
    try {
      await seedUsers(h, 'k', 20);
      const load = runLoad(h, calls(h, 20, 150, 'k'));
      expect(await exited(workers[0])).to.equal('SIGKILL'); // died inside its first batch
      await sleep(300);
      workers.push(spawnRole('worker', h.env)); // restarted: finds the stalled job and runs it again
      const o = await load;
      await settle(h, o);
      await h.drain(90_000);
      expect(o.accepted).to.have.length(20 * 120);
      expect(o.refused).to.have.length(20 * 30);
      await assertExactlyOnce(h, o);
    } finally {
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGTERM');
      await Promise.all(workers.map((w) => exited(w).catch(() => 'gone')));
      await h.stop();
    }
  });

  it('survives a worker killed with SIGKILL at a random moment under load', async () => {
    const h = await startHarness({ servers: own.urls, roles: ['api'], overrides: SERVICES });
    const workers = [spawnRole('worker', h.env)];
    try {
      await seedUsers(h, 'r', 20);
      const load = runLoad(h, calls(h, 20, 150, 'r'));
      await sleep(800 + Math.floor(Math.random() * 800));
      workers[0].kill('SIGKILL');
      await exited(workers[0]);
      workers.push(spawnRole('worker', h.env));
      const o = await load;
      await settle(h, o);
      await h.drain(90_000);
      await assertExactlyOnce(h, o);
    } finally {
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGTERM');
      await Promise.all(workers.map((w) => exited(w).catch(() => 'gone')));
      await h.stop();
    }
  });

  it('survives Redis restarted (AOF on) mid-load', async () => {
    const h = await startHarness({ servers: own.urls, overrides: SERVICES });
    try {
      await seedUsers(h, 'x', 20);
      await h.drain();
      const load = runLoad(h, calls(h, 20, 150, 'x'), 16, 2);
      await sleep(1000);
      await own.restartRedis(500);
      const o = await load;
      expect(o.unknown.length + o.accepted.length + o.refused.length).to.equal(3000);
      await settle(h, o);
      // Batches whose enqueue failed while Redis was down are still in the journals: the sweep finds them.
      await h.probe.persistence.sweep(0);
      await h.drain(90_000);
      await assertExactlyOnce(h, o);
    } finally {
      await h.stop();
    }
  });

  it('keeps answering checks and deducts while MySQL is down for 10 s, and catches up afterwards', async () => {
    const h = await startHarness({ servers: own.urls, overrides: SERVICES });
    try {
      await seedUsers(h, 'm', 10);
      // The users are in Redis already; a user never seen before would need MySQL to load.
      await h.drain();
      const before = await runLoad(h, calls(h, 10, 30, 'm'));
      await own.stopMysql();
      const downAt = Date.now();
      const during = await runLoad(h, calls(h, 10, 60, 'mid', 'm'), 8, 20);
      const check = await h.post('/internal/v1/billing/check', { user_id: h.user('mu0'), service_name: 'passport' });
      expect(check.status).to.equal(200);
      expect(during.unknown, 'deducts refused for lack of MySQL').to.have.length(0);
      expect(during.accepted.length).to.be.greaterThan(0);
      const fresh = await h.post('/internal/v1/billing/deduct', {
        request_id: 'n1',
        user_id: h.user('never-seen'),
        service_name: 'passport',
      });
      expect(fresh.status).to.equal(503);
      expect(fresh.body.code).to.equal(50300);
      await sleep(Math.max(0, 10_000 - (Date.now() - downAt)));
      await own.startMysql();
      const after = await runLoad(h, calls(h, 10, 30, 'ma', 'm'));
      const all = {
        accepted: [...before.accepted, ...during.accepted, ...after.accepted],
        refused: [...before.refused, ...during.refused, ...after.refused],
        unknown: [...before.unknown, ...after.unknown],
        other: [...before.other, ...during.other, ...after.other],
      };
      await settle(h, all);
      await h.drain(120_000);
      await assertExactlyOnce(h, all);
    } finally {
      await h.stop();
    }
  });
});
