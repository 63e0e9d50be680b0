import { expect } from 'chai';
import { startHarness, CALLBACK_SECRET, type Harness } from '../support/harness.js';
import { spawnRole, exited } from '../support/processes.js';
import { signPayload } from '../../src/lib/payment-signature.js';
import { startWorkers } from '../../src/workers/workers.js';

const RECHARGE = '/api/v1/billing/recharge';
const CALLBACK = '/internal/v1/billing/callback';

async function recharge(
  h: Harness,
  user: string,
  amount: string | number,
  extra: Record<string, unknown> = {},
  headers?: Record<string, string>,
) {
  return h.post(RECHARGE, { user_id: user, amount, payment_method: 'wechat', ...extra }, headers);
}

async function balanceOf(h: Harness, user: string): Promise<string> {
  return (await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance;
}

async function rechargeEntries(h: Harness, user: string): Promise<number> {
  return Number(
    (await h.probe.db('ledger_entries').where({ user_id: user, entry_type: 'recharge' }).count({ n: '*' }).first())!.n,
  );
}

/** Sends a callback signed as the payment service would, with overridable body and timestamp. */
async function sendCallback(h: Harness, body: Record<string, unknown>, opts: { secret?: string; t?: number } = {}) {
  const raw = JSON.stringify(body);
  const sig = signPayload(opts.secret ?? CALLBACK_SECRET, raw, opts.t ?? Math.floor(Date.now() / 1000));
  return h.post(CALLBACK, raw, { 'x-payment-signature': sig, authorization: '' });
}

describe('recharge through the payment service', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ simulator: true });
  });
  after(() => h.stop());
  afterEach(() => h.sim!.reset());

  it('runs the full flow: order, pay page, Pay button, callback, balance credited, then spent', async () => {
    const user = h.user('flow');
    const r = await recharge(h, user, '12.34');
    expect(r.status).to.equal(200);
    const order = r.body.data;
    expect(order).to.include({ status: 'pending', amount: '12.34', userId: user });
    expect(order.orderId).to.match(/^ord_[0-9a-f]{32}$/);
    expect(order.paymentUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+\/pay\/pay_/);
    expect(order.payCode).to.match(/^weixin:/);
    const payment = h.sim!.payments.get(order.paymentId)!;
    expect(payment).to.include({
      amountCents: '1234',
      currency: 'CNY',
      method: 'WECHATPAY',
      notifyUrl: `${h.url}/internal/v1/billing/callback`,
    });

    const pageHtml = await (await fetch(order.paymentUrl)).text();
    expect(pageHtml).to.contain('12.34 CNY').and.to.contain('id="pay"');
    const pressed = await fetch(`${order.paymentUrl}/confirm`, { method: 'POST' });
    expect(await pressed.text()).to.contain('Callback to billing: HTTP 200');

    await h.drain();
    expect(await balanceOf(h, user)).to.equal('12.34');
    const after = await h.get(`${RECHARGE}/${order.orderId}`, { user_id: user });
    expect(after.body.data).to.include({ status: 'paid', paymentId: order.paymentId });
    const spent = await h.post('/internal/v1/billing/deduct', {
      request_id: 'd1',
      user_id: user,
      service_name: 'passport',
      count: 1,
    });
    expect(spent.body.data.freeCount).to.equal(1);
    await h.drain();
    await h.assertInvariant([user]);
    expect(await rechargeEntries(h, user)).to.equal(1);
  });

  it('credits once for 50 concurrent identical callbacks, and nothing for a replay after success', async () => {
    const user = h.user('dup');
    const order = (await recharge(h, user, 5)).body.data;
    h.sim!.behaviour = { ...h.sim!.behaviour, copies: 50 };
    const results = await h.sim!.pay(order.paymentId, 'concurrent');
    expect(results).to.have.length(50);
    for (const res of results) expect(res.status).to.equal(200);
    await h.drain();
    expect(await balanceOf(h, user)).to.equal('5.00');

    const replay = await h.sim!.pay(order.paymentId, 'duplicate');
    for (const res of replay)
      expect(res).to.deep.include({
        status: 200,
        body: { success: true, data: { orderId: order.orderId, outcome: 'already_paid' } },
      });
    await h.drain();
    expect(await balanceOf(h, user)).to.equal('5.00');
    expect(await rechargeEntries(h, user)).to.equal(1);
    await h.assertInvariant([user]);
  });

  it('refuses a forged or stale signature with 401 and changes nothing', async () => {
    const user = h.user('forged');
    const order = (await recharge(h, user, 3)).body.data;
    for (const mode of ['forged', 'stale'] as const) {
      const [res] = await h.sim!.pay(order.paymentId, mode);
      expect(res.status).to.equal(401);
      expect((res.body as { code: number }).code).to.equal(40100);
    }
    const unsigned = await h.post(CALLBACK, { order_id: order.orderId }, { authorization: '' });
    expect(unsigned.status).to.equal(401);
    // A body changed after signing does not match its signature.
    const raw = JSON.stringify({
      order_id: order.orderId,
      payment_id: order.paymentId,
      amount: '3.00',
      currency: 'CNY',
      status: 'success',
    });
    const sig = signPayload(CALLBACK_SECRET, raw, Math.floor(Date.now() / 1000));
    const tampered = await h.post(CALLBACK, raw.replace('3.00', '300.00'), {
      'x-payment-signature': sig,
      authorization: '',
    });
    expect(tampered.status).to.equal(401);
    await h.drain();
    expect(await balanceOf(h, user)).to.equal('0.00');
    expect((await h.get(`${RECHARGE}/${order.orderId}`, { user_id: user })).body.data.status).to.equal('pending');
  });

  it('does not credit a callback whose amount or currency differs, and flags the order', async () => {
    const user = h.user('mismatch');
    const order = (await recharge(h, user, '8.00')).body.data;
    const [res] = await h.sim!.pay(order.paymentId, 'normal', { amount: '800.00' });
    expect(res.status).to.equal(400);
    expect((res.body as { code: number }).code).to.equal(10005);
    const cur = await sendCallback(h, {
      order_id: order.orderId,
      payment_id: order.paymentId,
      amount: '8.00',
      currency: 'USD',
      status: 'success',
    });
    expect(cur.body.code).to.equal(10005);
    await h.drain();
    expect(await balanceOf(h, user)).to.equal('0.00');
    expect((await h.get(`${RECHARGE}/${order.orderId}`, { user_id: user })).body.data).to.include({
      status: 'pending',
      underReview: true,
    });
  });

  it('answers an unknown order with 404 / 10003 and a second payment of a paid order with 409 / 10004', async () => {
    const unknown = await sendCallback(h, {
      order_id: 'ord_nope',
      payment_id: 'pay_x',
      amount: '1.00',
      currency: 'CNY',
      status: 'success',
    });
    expect(unknown.status).to.equal(404);
    expect(unknown.body.code).to.equal(10003);
    const user = h.user('twice-paid');
    const order = (await recharge(h, user, 1)).body.data;
    await h.sim!.pay(order.paymentId);
    await h.drain();
    const other = await sendCallback(h, {
      order_id: order.orderId,
      payment_id: 'pay_other',
      amount: '1.00',
      currency: 'CNY',
      status: 'success',
    });
    expect(other.status).to.equal(409);
    expect(other.body.code).to.equal(10004);
    expect(await balanceOf(h, user)).to.equal('1.00');
  });

  it('returns the same order for a repeated Idempotency-Key, and 409 for the key with another amount', async () => {
    const user = h.user('idem');
    const headers = { 'idempotency-key': 'topup-1' };
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => recharge(h, user, 10, {}, headers)));
    const ids = new Set(all.map((r) => r.body.data.orderId));
    expect(ids.size).to.equal(1);
    const count = await h.probe.db('recharge_orders').where({ user_id: user }).count({ n: '*' }).first();
    expect(Number(count!.n)).to.equal(1);
    const other = await recharge(h, user, 11, {}, headers);
    expect(other.status).to.equal(409);
  });

  it('validates amount, method and currency', async () => {
    const user = h.user('bad');
    for (const [body, field] of [
      [{ amount: '0.001' }, 'amount'],
      [{ amount: '0' }, 'amount'],
      [{ amount: '50000.01' }, 'amount'],
      [{ amount: 'ten' }, 'amount'],
      [{ amount: 1.5, payment_method: 'paypal' }, 'payment_method'],
      [{ amount: 1, currency: 'USD' }, 'currency'],
      [{ amount: '1.005' }, 'amount'],
    ] as const) {
      const r = await h.post(RECHARGE, { user_id: user, payment_method: 'wechat', ...body });
      expect(r.status, JSON.stringify(body)).to.equal(400);
      expect(r.body.details!.map((d) => d.field)).to.include(field);
    }
    expect((await h.get(`${RECHARGE}/ord_missing`, { user_id: user })).body.code).to.equal(10003);
    expect(
      Number((await h.probe.db('recharge_orders').where({ user_id: user }).count({ n: '*' }).first())!.n),
    ).to.equal(0);
  });

  it('answers 503 / 10009 and marks the order failed when CreatePayment fails or stalls past the deadline', async () => {
    const user = h.user('down');
    h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'fail' };
    const failed = await recharge(h, user, 2);
    expect(failed.status).to.equal(503);
    expect(failed.body.code).to.equal(10009);

    h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'stall' };
    const started = Date.now();
    const stalled = await recharge(h, user, 3);
    const took = Date.now() - started;
    expect(stalled.body.code).to.equal(10009);
    expect(took).to.be.within(1400, 4000); // PAYMENT_TIMEOUT is 1.5 s in the harness
    const rows = await h.probe
      .db('recharge_orders')
      .where({ user_id: user })
      .orderBy('created_at')
      .select('status', 'failure_reason');
    expect(rows.map((r) => r.status)).to.deep.equal(['failed', 'failed']);
    expect(rows[1].failure_reason).to.match(/no answer within 1500 ms/);
  });

  it('answers 503 / 10009 when nothing listens at the payment service address', async () => {
    const down = await startHarness({ env: { PAYMENT_GRPC_ADDR: '127.0.0.1:1' } });
    try {
      const r = await recharge(down, down.user('nobody'), 2);
      expect(r.status).to.equal(503);
      expect(r.body.code).to.equal(10009);
    } finally {
      await down.stop();
    }
  });
});

describe('recharge job killed mid-way', function () {
  this.timeout(120_000);

  for (const crashAt of ['after-redis-credit', 'after-mysql-commit']) {
    it(`credits exactly once when the worker is killed (SIGKILL) ${crashAt.replace(/-/g, ' ')}`, async () => {
      // API only in this process; the job runs in a worker process that kills itself at the fault point.
      const h = await startHarness({ simulator: true, roles: ['api'] });
      let workers: ReturnType<typeof startWorkers> | undefined;
      try {
        const user = h.user('killed');
        const order = (await recharge(h, user, '20.00')).body.data;
        const child = spawnRole('worker', { ...h.env, BILLING_FAULT_CRASH_AT: crashAt });
        const [cb] = await h.sim!.pay(order.paymentId);
        expect(cb.status).to.equal(200);
        expect(await exited(child)).to.equal('SIGKILL');

        const probe = h.probe;
        const redisBal = await probe.redis.hget(probe.keys.account(user), 'bal');
        expect(redisBal).to.equal('20000000'); // credited in Redis once, before the crash
        // A fresh worker finds the stalled job and runs it again.
        workers = startWorkers(probe.workers);
        await h.drain();
        expect(await balanceOf(h, user)).to.equal('20.00');
        expect(await rechargeEntries(h, user)).to.equal(1);
        expect((await h.get(`${RECHARGE}/${order.orderId}`, { user_id: user })).body.data.status).to.equal('paid');
        await h.assertInvariant([user]);
      } finally {
        await workers?.close();
        await h.stop();
      }
    });
  }
});

describe('correlation ids', function () {
  this.timeout(60_000);
  it('carries the callback request’s correlation id into the apply-payment job', async () => {
    const h = await startHarness({ simulator: true, roles: ['api'] });
    try {
      const user = h.user('corr');
      const order = (await recharge(h, user, '2.00')).body.data;
      const raw = JSON.stringify({
        order_id: order.orderId,
        payment_id: order.paymentId,
        amount: '2.00',
        currency: 'CNY',
        status: 'success',
      });
      const sig = signPayload(CALLBACK_SECRET, raw, Math.floor(Date.now() / 1000));
      const res = await h.post(CALLBACK, raw, {
        'x-payment-signature': sig,
        authorization: '',
        'x-request-id': 'trace-callback-42',
      });
      expect(res.status).to.equal(200);
      const job = await h.probe.queues.queueOf('apply-payment').getJob(`pay-${order.orderId}-${order.paymentId}`);
      expect(job!.data.correlationId).to.equal('trace-callback-42');
    } finally {
      await h.stop();
    }
  });
});
