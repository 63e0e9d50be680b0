import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { startWorkers } from '../../src/workers/workers.js';

/*
 * SPEC section 10 (and issue #10's findings): one bad change never blocks the others; operators' tools
 * never move money outside the ledger; a dead process's leftovers are recovered at start; anonymous
 * callers cost no parsing. Each test here failed on the code before its fix.
 */
const DEDUCT = '/internal/v1/billing/deduct';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function failedJobs(h: Harness): Promise<number> {
  let n = 0;
  for (const q of h.probe.queues.all()) n += (await q.getJobCounts('failed')).failed;
  return n;
}

describe('safety: dead letters, read-only board, confirmed payments, start-up recovery', function () {
  this.timeout(90_000);

  describe('a change MySQL refuses even alone', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({ roles: ['api'], overrides: { persistence: { sweep_after: 0 } } });
    });
    after(() => h.stop());

    it('is parked as a dead letter while the rest of its batch lands, and its money stays accounted', async () => {
      const probe = h.probe;
      const [a, b, poisoned] = [h.user('dl-a'), h.user('dl-b'), h.user('dl-poison')];
      let workers = startWorkers(probe.workers, ['persistence']);
      await seedBalance(h, poisoned, 1_000_000n);
      await h.drain();
      await workers.close();

      for (const user of [a, b])
        expect((await h.post(DEDUCT, { request_id: 'r1', user_id: user, service_name: 'asset' })).status).to.equal(200);
      const charged = await h.post(DEDUCT, {
        request_id: 'r1',
        user_id: poisoned,
        service_name: 'payment',
        count: 1001,
      });
      expect(charged.body.data).to.include({ freeCount: 1000, paidCount: 1, amount: '0.001', balance: '0.999' });
      // The job that carried them is lost, and the poisoned change is one MySQL cannot store (no such day).
      await probe.persistence.drainBuffer();
      await probe.queues.queueOf('persist-changes').obliterate({ force: true });
      const journal = probe.keys.pending(poisoned);
      const recordId = charged.body.data.recordId as string;
      const entry = JSON.parse((await probe.redis.hget(journal, recordId))!);
      await probe.redis.hset(journal, recordId, JSON.stringify({ ...entry, day: '2026-02-30' }));

      workers = startWorkers(probe.workers, ['persistence']);
      try {
        expect(await probe.persistence.sweep(0)).to.equal(3); // one job: two good changes and the poisoned one
        await h.drain();
        expect(await failedJobs(h)).to.equal(0);
        for (const user of [a, b]) {
          expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
        }
        await h.assertInvariant([a, b]);

        const listed = await h.get('/admin/v1/dead-letters', {}, admin);
        const mine = listed.body.data.deadLetters.filter((d: { userId: string }) => d.userId === poisoned);
        expect(mine).to.have.length(1);
        expect(mine[0]).to.include({ changeId: recordId });
        expect(mine[0].error).to.match(/date|day|Incorrect/i);
        const metrics = await fetch(`${h.url}/metrics`, { headers: admin }).then((r) => r.text());
        expect(metrics).to.match(/^billing_dead_letters_total 1$/m);

        // Reconciliation sees the parked change as in flight: the money it took stays taken in Redis.
        const run = await probe.reconciliation.run('manual');
        expect(run.users_in_flight).to.be.greaterThan(0);
        expect((await h.get('/api/v1/billing/account', { user_id: poisoned })).body.data.balance).to.equal('0.999');

        // An operator's retry (logged with who and why) puts it back; still unstorable, it is parked again.
        const bad = await h.post('/admin/v1/dead-letters/retry', { user_id: poisoned, change_id: recordId }, admin);
        expect(bad.status).to.equal(400);
        const retry = await h.post(
          '/admin/v1/dead-letters/retry',
          { user_id: poisoned, change_id: recordId, operator: 'ops@example', reason: 'after the fix' },
          admin,
        );
        expect(retry.status).to.equal(200);
        expect(retry.body.data.status).to.equal('queued');
        await h.drain();
        expect(await failedJobs(h)).to.equal(0);
        const again = await h.get('/admin/v1/dead-letters', {}, admin);
        expect(again.body.data.deadLetters.filter((d: { userId: string }) => d.userId === poisoned)).to.have.length(1);
        const unknown = await h.post(
          '/admin/v1/dead-letters/retry',
          { user_id: poisoned, change_id: 'rec_nope', operator: 'ops@example', reason: 'typo' },
          admin,
        );
        expect(unknown.status).to.equal(404);
      } finally {
        await workers.close();
      }
    });

    it('recovers, right after a worker starts, what a dead API left unpersisted', async () => {
      const probe = h.probe;
      const user = h.user('restart');
      for (let i = 0; i < 5; i++)
        await h.post(DEDUCT, { request_id: `s${i}`, user_id: user, service_name: 'passport' });
      await probe.persistence.drainBuffer();
      await probe.queues.queueOf('persist-changes').obliterate({ force: true }); // the enqueue was lost
      await new Promise((r) => setTimeout(r, 3_100)); // what a restart takes at the least
      const started = Date.now();
      // A worker of another process (its own context): the sweep at start-up, not a scheduled one.
      const worker = await startHarness({
        roles: ['worker'],
        env: { ...h.env },
        overrides: { persistence: { sweep_after: '1h' } },
      });
      try {
        for (;;) {
          const total = (await h.get('/api/v1/billing/records', { user_id: user })).body.data.total;
          if (total === 5) break;
          expect(Date.now() - started, 'records caught up within 10 s of the restart').to.be.below(10_000);
          await new Promise((r) => setTimeout(r, 200));
        }
      } finally {
        await worker.stop();
      }
    });
  });

  describe('operators and payments', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        simulator: true,
        env: { BULL_BOARD_PASSWORD: 'board-secret' },
        overrides: { payment_service: { pending_check_after: '2s' } },
      });
    });
    after(() => h.stop());
    afterEach(() => h.sim!.reset());

    it('Bull Board cannot add, retry or promote money jobs', async () => {
      const basic = { authorization: `Basic ${Buffer.from('admin:board-secret').toString('base64')}` };
      for (const queue of ['payments', 'persistence', 'maintenance', 'webhooks']) {
        const res = await fetch(`${h.url}/admin/queues/api/queues/${queue}/add`, {
          method: 'POST',
          headers: { ...basic, 'content-type': 'application/json' },
          body: JSON.stringify({
            name: 'apply-payment',
            data: { orderId: 'ord_x', paymentId: 'p', paidAt: new Date().toISOString() },
          }),
        });
        expect(res.status, queue).to.equal(405);
        const retry = await fetch(`${h.url}/admin/queues/api/queues/${queue}/retry/failed`, {
          method: 'PUT',
          headers: basic,
        });
        expect(retry.status, queue).to.equal(405);
      }
      const counts = await h.probe.queues
        .queueOf('apply-payment')
        .getJobCounts('waiting', 'delayed', 'active', 'completed');
      expect(Object.values(counts).reduce((x, y) => x + y, 0)).to.equal(0);
    });

    it('credits no apply-payment job for a payment no signed callback or GetPayment confirmed', async () => {
      const user = h.user('mint');
      const order = (
        await h.post('/api/v1/billing/recharge', { user_id: user, amount: '50000.00', payment_method: 'alipay' })
      ).body.data;
      const job = await h.probe.queues.add('apply-payment', {
        orderId: order.orderId,
        paymentId: order.paymentId,
        paidAt: new Date().toISOString(),
      });
      for (;;) {
        const state = await job.getState();
        if (state === 'failed' || state === 'completed') {
          expect(state).to.equal('failed');
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const failed = await h.probe.queues.queueOf('apply-payment').getJob(job.id!);
      expect(failed!.attemptsMade).to.equal(1); // unrecoverable: not retried
      expect(failed!.failedReason).to.match(/never confirmed/);
      expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('0.00');
      expect((await h.get(`/api/v1/billing/recharge/${order.orderId}`, { user_id: user })).body.data.status).to.equal(
        'pending',
      );
      await failed!.remove();
      // The real payment still credits once.
      await h.sim!.pay(order.paymentId, 'normal');
      await h.drain();
      expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('50000.00');
      await h.assertInvariant([user]);
    });

    it('retries a failed job only through the admin API, with who and why', async () => {
      const job = await h.probe.queues.add('apply-payment', {
        orderId: 'ord_missing',
        paymentId: 'p',
        paidAt: new Date().toISOString(),
      });
      while ((await job.getState()) !== 'failed') await new Promise((r) => setTimeout(r, 50));
      const path = `/admin/v1/jobs/payments/${job.id}/retry`;
      expect((await h.post(path, { operator: 'ops' }, admin)).status).to.equal(400); // no reason
      expect((await h.post(path, { operator: 'ops', reason: 'test' })).status).to.equal(401); // gateway token
      const ok = await h.post(path, { operator: 'ops@example', reason: 'order restored' }, admin);
      expect(ok.status).to.equal(200);
      expect(ok.body.data).to.include({ job: 'apply-payment', status: 'retried' });
      expect((await h.post('/admin/v1/jobs/nope/1/retry', { operator: 'o', reason: 'why' }, admin)).status).to.equal(
        404,
      );
      while ((await job.getState()) !== 'failed') await new Promise((r) => setTimeout(r, 50));
      await (await h.probe.queues.queueOf('apply-payment').getJob(job.id!))!.remove();
    });

    it('asks about every pending order in turn: 1,000 whose GetPayment fails do not starve a newer one', async () => {
      const probe = h.probe;
      const user = h.user('starve');
      const old = new Date(Date.now() - 3_600_000);
      const junk = Array.from({ length: 1000 }, () => ({
        order_id: `ord_${randomBytes(16).toString('hex')}`,
        user_id: user,
        amount: '1000000',
        currency: 'CNY',
        method: 'alipay',
        status: 'pending',
        created_at: old,
      }));
      await probe.db('recharge_orders').insert(junk);
      const real = (
        await h.post('/api/v1/billing/recharge', { user_id: user, amount: '3.00', payment_method: 'alipay' })
      ).body.data;
      expect(await h.sim!.pay(real.paymentId, 'lost')).to.deep.equal([]);
      await probe
        .db('recharge_orders')
        .where({ order_id: real.orderId })
        .update({ created_at: new Date(old.getTime() + 1000) });
      try {
        await probe.reconciliation.run('manual'); // the 1,000 oldest: the payment service knows none of them
        await probe.reconciliation.run('manual');
        await h.drain();
        expect((await h.get(`/api/v1/billing/recharge/${real.orderId}`, { user_id: user })).body.data.status).to.equal(
          'paid',
        );
        expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('3.00');
      } finally {
        await probe
          .db('recharge_orders')
          .whereIn(
            'order_id',
            junk.map((j) => j.order_id),
          )
          .update({ status: 'closed' });
      }
    });

    it('asks an anonymous caller for credentials before reading its body', async () => {
      const res = await fetch(`${h.url}${DEDUCT}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{not json',
      });
      expect(res.status).to.equal(401);
      expect((await res.json()).code).to.equal(40100);
      const adminRes = await fetch(`${h.url}/admin/v1/dead-letters/retry`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{',
      });
      expect(adminRes.status).to.equal(401);
    });

    it('runs one on-demand reconciliation at a time', async () => {
      const asks = await Promise.all([1, 2, 3].map(() => h.post('/admin/v1/reconciliation/runs', {}, admin)));
      const ids = new Set(asks.map((r) => r.body.data.jobId));
      expect(asks.map((r) => r.status)).to.deep.equal([202, 202, 202]);
      expect(ids.size).to.equal(1);
    });
  });
});
