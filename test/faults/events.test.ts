import { getPriority } from 'node:os';
import { expect } from 'chai';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { spawnRole, exited, schedulingClasses } from '../support/processes.js';
import { WebhookReceiver, signatureValid } from '../support/webhook-receiver.js';
import { runMaintenance } from '../support/money.js';
import { OwnServers, runLoad, settle, assertExactlyOnce, type Call } from './support.js';

/*
 * SPEC 13 under faults: events ride in the journaled change and are stored in the change's MySQL
 * transaction (an outbox), so a worker killed between commit and enqueue, or mid-delivery, and Redis
 * restarted mid-run lose none and double none.
 */
const SERVICES = { services: [{ name: 'tokens', free_quota: 0, unit_price: '0.1' }] };
const WEBHOOK_ENV = { WEBHOOKS_TIMEOUT: '1s', WEBHOOKS_BACKOFF_BASE: '200ms' };
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const M = 1_000_000n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `perUser` deducts of 0.10 for each user, interleaved. */
function crossing(users: string[], perUser: number, prefix: string): Call[] {
  const out: Call[] = [];
  for (let i = 0; i < perUser; i++)
    for (const user_id of users) out.push({ request_id: `${prefix}${i}`, user_id, service_name: 'tokens' });
  return out;
}

/** Each user below 10.00 in MySQL has exactly one balance.low stored; the others none. */
async function assertOneLowPerCrossing(h: Harness, users: string[]): Promise<string[]> {
  const rows: { user_id: string; id: string }[] = await h.probe
    .db('events')
    .whereIn('user_id', users)
    .andWhere('type', 'balance.low')
    .select('user_id', 'id');
  const ids: string[] = [];
  for (const user of users) {
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    const mine = rows.filter((r) => r.user_id === user);
    expect(mine, `balance.low of ${user} at ${balance}`).to.have.length(balance < 10n * M ? 1 : 0);
    ids.push(...mine.map((r) => r.id));
  }
  return ids;
}

/** Waits until MySQL records a delivered attempt (a 2xx) to the endpoint for every one of the events. */
async function waitDelivered(h: Harness, endpointId: string, ids: string[], timeoutMs: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    const rows: { event_id: string }[] = await h.probe
      .db('webhook_deliveries')
      .where({ endpoint_id: endpointId, delivered: 1 })
      .whereIn('event_id', ids)
      .distinct('event_id');
    if (rows.length === ids.length) return;
    if (Date.now() - started > timeoutMs) throw new Error(`${rows.length} of ${ids.length} events delivered`);
    await sleep(200);
  }
}

describe('events under faults (SPEC 13)', function () {
  this.timeout(240_000);
  const own = new OwnServers();
  let rx: WebhookReceiver;
  before(async () => {
    await own.start();
    rx = await new WebhookReceiver().start();
  });
  after(async () => {
    await rx.stop();
    await own.stop();
  });

  it('loses no event when workers are killed after the outbox commit and mid-delivery', async () => {
    const h = await startHarness({ servers: own.urls, roles: ['api'], overrides: SERVICES, env: WEBHOOK_ENV });
    const workers = [spawnRole('worker', { ...h.env, BILLING_FAULT_CRASH_AT: 'after-batch-commit' })];
    try {
      const ep = await h.post('/admin/v1/webhooks', { url: rx.on('/killed', 'stall:1'), events: ['*'] }, admin);
      expect(ep.status).to.equal(201);
      const users = Array.from({ length: 20 }, (_, i) => h.user(`k${i}`));
      await Promise.all(users.map((u) => seedBalance(h, u, 10_500_000n)));
      const o = await runLoad(h, crossing(users, 10, 'k'));
      expect(await exited(workers[0])).to.equal('SIGKILL'); // died between the commit and the dispatch
      workers.push(spawnRole('worker', h.env));
      // Killed again while its deliveries wait on a receiver that does not answer their first attempt.
      await rx.waitFor(() => rx.at('/killed').length > 0, 60_000, 'a first delivery');
      workers[1].kill('SIGKILL');
      await exited(workers[1]);
      workers.push(spawnRole('worker', h.env));
      await settle(h, o);
      await h.drain(90_000);
      await assertExactlyOnce(h, o);
      const ids = await assertOneLowPerCrossing(h, users);
      expect(ids).to.have.length(20);
      await waitDelivered(h, ep.body.data.id, ids, 60_000);
      const delivered = new Set(rx.at('/killed').map((r) => r.eventId));
      expect(ids.every((id) => delivered.has(id))).to.equal(true);
      const secret = ep.body.data.secret as string;
      expect(rx.at('/killed').every((r) => signatureValid(r.signature, r.body, secret))).to.equal(true);
    } finally {
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGTERM');
      await Promise.all(workers.map((w) => exited(w).catch(() => 'gone')));
      await h.stop();
    }
  });

  it('a webhooks process of its own, at a lower priority, killed or stopped mid-run, loses nothing', async () => {
    const env = { ...WEBHOOK_ENV, WEBHOOKS_OWN_PROCESS: 'true', WEBHOOKS_NICE: '7' };
    const h = await startHarness({ servers: own.urls, roles: ['api'], overrides: SERVICES, env });
    const children = [spawnRole('worker', h.env)];
    try {
      const ep = await h.post('/admin/v1/webhooks', { url: rx.on('/apart', 'stall:1'), events: ['*'] }, admin);
      expect(ep.status).to.equal(201);
      const users = Array.from({ length: 20 }, (_, i) => h.user(`w${i}`));
      await Promise.all(users.map((u) => seedBalance(h, u, 10_500_000n)));
      const o = await runLoad(h, crossing(users, 10, 'w'));
      await settle(h, o);
      await h.drain(90_000);
      await assertExactlyOnce(h, o);
      const ids = await assertOneLowPerCrossing(h, users);
      expect(ids).to.have.length(20);
      // The worker stored the events and left their fan-out to the webhooks process: nothing is sent yet.
      const fanOut = h.probe.queues.queueOf('dispatch-stored-events');
      expect(await fanOut.getJobCountByTypes('waiting', 'prioritized')).to.be.greaterThan(0);
      await sleep(1_500);
      expect(rx.at('/apart')).to.have.length(0);

      children.push(spawnRole('webhooks', h.env));
      const hooks = children[children.length - 1];
      await rx.waitFor(() => rx.at('/apart').length > 0, 60_000, 'a first delivery');
      expect(getPriority(hooks.pid!)).to.equal(7);
      expect(new Set(schedulingClasses(hooks.pid!))).to.deep.equal(new Set(['idle']));
      // Killed while its first attempts wait on a receiver that does not answer them; another takes over.
      hooks.kill('SIGKILL');
      await exited(hooks);
      children.push(spawnRole('webhooks', h.env));
      // Stopped (SIGTERM) while a batch still has events waiting on that receiver: it stops between two
      // attempts instead of waiting out the batch (a timeout per event), and the batch runs again later.
      const before = rx.at('/apart').length;
      await rx.waitFor(() => rx.at('/apart').length > before, 60_000, 'the batch taken over');
      const second = children[children.length - 1];
      const stopAt = Date.now();
      second.kill('SIGTERM');
      await exited(second);
      expect(Date.now() - stopAt, 'stopping mid-batch').to.be.below(6_000);
      expect(new Set(rx.at('/apart').map((r) => r.eventId)).size, 'events left to the next process').to.be.below(20);
      children.push(spawnRole('webhooks', h.env));
      await waitDelivered(h, ep.body.data.id, ids, 90_000);
      const secret = ep.body.data.secret as string;
      expect(rx.at('/apart').every((r) => signatureValid(r.signature, r.body, secret))).to.equal(true);
      expect(new Set(rx.at('/apart').map((r) => r.eventId))).to.deep.equal(new Set(ids));
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      await Promise.all(children.map((c) => exited(c).catch(() => 'gone')));
      await h.stop();
    }
  });

  it('loses and doubles no event when Redis restarts mid-run', async () => {
    const h = await startHarness({ servers: own.urls, overrides: SERVICES, env: WEBHOOK_ENV });
    try {
      const ep = await h.post('/admin/v1/webhooks', { url: rx.on('/restart', 'ok'), events: ['*'] }, admin);
      expect(ep.status).to.equal(201);
      const users = Array.from({ length: 20 }, (_, i) => h.user(`x${i}`));
      await Promise.all(users.map((u) => seedBalance(h, u, 10_500_000n)));
      await h.drain();
      const load = runLoad(h, crossing(users, 40, 'x'), 16, 5);
      await sleep(500);
      await own.restartRedis(500);
      const o = await load;
      // The probe's own connection reconnects with a backoff; its commands below must not meet it down.
      for (
        let i = 0;
        i < 100 &&
        !(await h.probe.redis.ping().then(
          () => true,
          () => false,
        ));
        i++
      )
        await sleep(100);
      await settle(h, o);
      await h.probe.persistence.sweep(0);
      await h.drain(90_000);
      await assertExactlyOnce(h, o);
      const ids = await assertOneLowPerCrossing(h, users);
      expect(ids.length).to.be.greaterThan(0);
      // An event whose enqueue met the restart is stored undispatched: the scheduler's dispatch-events
      // sends it once it is past its grace (the harness runs no scheduler, so the test runs that job).
      await sleep(11_000);
      await runMaintenance(h, 'dispatch-events');
      await rx.waitFor(() => ids.every((id) => rx.at('/restart', id).length > 0), 60_000, 'every event');
    } finally {
      await h.stop();
    }
  });
});
