import { expect } from 'chai';
import { startHarness, seedBalance, CALLBACK_SECRET, type Harness } from '../support/harness.js';
import { signPayload } from '../../src/lib/payment-signature.js';
import { formatMoney } from '../../src/lib/money.js';

describe('fault injection: payments and duplicates', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ simulator: true, overrides: { payment_service: { pending_check_after: 0 } } });
  });
  after(() => h.stop());

  it('fails recharges cleanly while the payment service is down, and completes lost-callback orders by reconciliation', async () => {
    const users = Array.from({ length: 10 }, (_, i) => h.user(`pay${i}`));
    h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'fail' };
    const down = await Promise.all(
      users.map((u) => h.post('/api/v1/billing/recharge', { user_id: u, amount: '10.00', payment_method: 'wechat' })),
    );
    expect(down.map((r) => r.body.code)).to.deep.equal(users.map(() => 10009));
    h.sim!.reset();
    const orders = await Promise.all(
      users.map(
        async (u) =>
          (await h.post('/api/v1/billing/recharge', { user_id: u, amount: '10.00', payment_method: 'wechat' })).body
            .data,
      ),
    );
    // Paid at the payment service, every callback lost.
    for (const o of orders) expect(await h.sim!.pay(o.paymentId, 'lost')).to.deep.equal([]);
    // Deductions go on meanwhile (free quota).
    await Promise.all(
      users.map((u) =>
        h.post('/internal/v1/billing/deduct', { request_id: 'd', user_id: u, service_name: 'passport' }),
      ),
    );
    const run = await h.probe.reconciliation.run('manual');
    expect(run.orders_completed).to.equal(10);
    await h.drain();
    // The callbacks finally arrive, twice each: nothing more is credited.
    for (const o of orders) await h.sim!.pay(o.paymentId, 'duplicate');
    await h.drain();
    for (const u of users)
      expect((await h.get('/api/v1/billing/account', { user_id: u })).body.data.balance).to.equal('10.00');
    const failed = await h.probe
      .db('recharge_orders')
      .whereIn('user_id', users)
      .where('status', 'failed')
      .count({ n: '*' })
      .first();
    expect(Number(failed!.n)).to.equal(10);
    await h.assertInvariant(users);
  });

  it('credits once for 100 concurrent duplicate callbacks, and charges once for 100 concurrent duplicate deducts', async () => {
    const user = h.user('dups');
    const order = (
      await h.post('/api/v1/billing/recharge', { user_id: user, amount: '3.00', payment_method: 'alipay' })
    ).body.data;
    const body = JSON.stringify({
      order_id: order.orderId,
      payment_id: order.paymentId,
      amount: '3.00',
      currency: 'CNY',
      status: 'success',
      paid_at: Math.floor(Date.now() / 1000),
    });
    h.sim!.payments.get(order.paymentId)!.status = 'SUCCESS';
    const callbacks = await Promise.all(
      Array.from({ length: 100 }, () =>
        h.post('/internal/v1/billing/callback', body, {
          'x-payment-signature': signPayload(CALLBACK_SECRET, body, Math.floor(Date.now() / 1000)),
          authorization: '',
        }),
      ),
    );
    expect(callbacks.every((r) => r.status === 200)).to.equal(true);
    await h.drain();
    expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('3.00');

    await h.post('/internal/v1/billing/deduct', {
      request_id: 'warm',
      user_id: user,
      service_name: 'passport',
      count: 10_000,
    });
    const deducts = await Promise.all(
      Array.from({ length: 100 }, () =>
        h.post('/internal/v1/billing/deduct', {
          request_id: 'same',
          user_id: user,
          service_name: 'passport',
          count: 7,
        }),
      ),
    );
    expect(deducts.every((r) => r.status === 200)).to.equal(true);
    expect(deducts.filter((r) => !r.body.data.duplicate)).to.have.length(1);
    await h.drain();
    expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('2.993');
    const ledger = await h.probe.db('ledger_entries').where({ user_id: user }).select('entry_type');
    expect(ledger.map((l) => l.entry_type).sort()).to.deep.equal(['deduction', 'recharge']);
    await h.assertInvariant([user]);
  });

  it('keeps the money right when duplicate deducts race a top-up', async () => {
    const user = h.user('race-topup');
    await seedBalance(h, user, 0n);
    await h.post('/internal/v1/billing/deduct', {
      request_id: 'warm',
      user_id: user,
      service_name: 'passport',
      count: 10_000,
    });
    const [deducts] = await Promise.all([
      Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          h.post('/internal/v1/billing/deduct', { request_id: `t${i % 10}`, user_id: user, service_name: 'passport' }),
        ),
      ),
      seedBalance(h, user, 5_000n),
    ]);
    const accepted = new Set(deducts.filter((r) => r.status === 200).map((r) => r.body.data.requestId));
    await h.drain();
    const balance = (await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance;
    expect(balance).to.equal(formatMoney(5_000n - BigInt(accepted.size) * 1_000n));
    await h.assertInvariant([user]);
  });
});
