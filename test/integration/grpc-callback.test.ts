import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { startHarness, CALLBACK_SECRET, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import { originalClients, metadata, call, callFails } from '../fixtures/grpc-clients.js';
import { admin } from '../support/money.js';

async function rechargeEntries(h: Harness, user: string): Promise<number> {
  return Number(
    (await h.probe.db('ledger_entries').where({ user_id: user, entry_type: 'recharge' }).count({ n: '*' }).first())!.n,
  );
}

async function failures(h: Harness, user: string) {
  const r = await h.get('/admin/v1/events', { user_id: user, type: 'recharge.failed', page_size: 100 }, admin);
  expect(r.status).to.equal(200);
  return r.body.data.events as { data: Record<string, string> }[];
}

describe('gRPC Recharge and RechargeCallback (a callback is a hint)', function () {
  this.timeout(120_000);
  let h: Harness;
  let old: ReturnType<typeof originalClients>;
  const asPaymentService = () => metadata({}, CALLBACK_SECRET);

  before(async () => {
    h = await startHarness({ simulator: true });
    old = originalClients(h.running.grpcAddress!);
  });
  after(async () => {
    old.user.close();
    old.internal.close();
    await h.stop();
  });
  afterEach(() => h.sim!.reset());

  async function order(user: string, amount = 12.34) {
    const r = await call(old.user, 'Recharge', { userId: user, amount, paymentMethod: 'wechatpay', currency: 'CNY' });
    expect(r.rechargeOrderId).to.match(/^ord_/);
    expect(r.paymentUrl).to.match(/\/pay\/pay_/);
    const paymentId = (await h.probe.repositories.recharges.find(r.rechargeOrderId))!.payment_id!;
    expect(h.sim!.payments.get(paymentId)).to.include({
      amountCents: String(Math.round(amount * 100)),
      method: 'WECHATPAY',
    });
    return { orderId: r.rechargeOrderId as string, paymentId };
  }

  it('credits nothing on a callback the payment service does not confirm, or one not signed by it', async () => {
    const user = h.user('unconfirmed');
    const { orderId, paymentId } = await order(user);
    const hint = { rechargeOrderId: orderId, paymentId, amount: 12.34, status: 'success' };
    expect(await callFails(old.internal, 'RechargeCallback', hint, metadata({}, GATEWAY_TOKEN))).to.include({
      code: grpc.status.UNAUTHENTICATED,
      billingCode: 40100,
    });
    expect(await callFails(old.internal, 'RechargeCallback', hint, metadata({}, null))).to.include({
      code: grpc.status.UNAUTHENTICATED,
      billingCode: 40100,
    });
    // Authenticated, but the payment is still pending at the payment service: a false hint.
    expect(await call(old.internal, 'RechargeCallback', hint, asPaymentService())).to.deep.equal({ success: false });
    expect(
      await callFails(
        old.internal,
        'RechargeCallback',
        { ...hint, rechargeOrderId: 'ord_unknown' },
        asPaymentService(),
      ),
    ).to.include({ code: grpc.status.NOT_FOUND, billingCode: 10003 });
    expect(
      await callFails(old.internal, 'RechargeCallback', { ...hint, rechargeOrderId: 'bad id!' }, asPaymentService()),
    ).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    await h.drain();
    expect((await call(old.user, 'GetAccount', { userId: user })).balance).to.equal(0);
    expect(await rechargeEntries(h, user)).to.equal(0);
    expect((await h.probe.repositories.recharges.find(orderId))!.status).to.equal('pending');
    await h.assertInvariant([user]);
  });

  it('credits once when gRPC and HTTP callbacks race for the same order, whatever amount the hint claims', async () => {
    const user = h.user('race');
    const { orderId, paymentId } = await order(user);
    await h.sim!.pay(paymentId, 'lost');
    h.sim!.behaviour.copies = 10;
    const hint = { rechargeOrderId: orderId, paymentId, amount: 9999, status: 'success' };
    const [grpcAnswers, httpAnswers] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => call(old.internal, 'RechargeCallback', hint, asPaymentService()))),
      h.sim!.pay(paymentId, 'concurrent'),
    ]);
    for (const a of grpcAnswers) expect(a).to.deep.equal({ success: true });
    for (const a of httpAnswers) expect(a.status).to.equal(200);
    await h.drain();
    expect((await call(old.user, 'GetAccount', { userId: user })).balance).to.equal(12.34);
    expect(await rechargeEntries(h, user)).to.equal(1);
    // Replays after the credit: the same payment is acknowledged, another one is a conflict.
    expect(await call(old.internal, 'RechargeCallback', hint, asPaymentService())).to.deep.equal({ success: true });
    expect(
      await callFails(old.internal, 'RechargeCallback', { ...hint, paymentId: 'pay_other' }, asPaymentService()),
    ).to.include({ code: grpc.status.ALREADY_EXISTS, billingCode: 10004 });
    await h.drain();
    expect(await rechargeEntries(h, user)).to.equal(1);
    await h.assertInvariant([user]);
  });

  it('closes the order when the payment service says the payment is closed', async () => {
    const user = h.user('closed');
    const { orderId, paymentId } = await order(user, 5);
    h.sim!.payments.get(paymentId)!.status = 'CLOSED';
    expect(
      await call(
        old.internal,
        'RechargeCallback',
        { rechargeOrderId: orderId, paymentId, amount: 5, status: 'success' },
        asPaymentService(),
      ),
    ).to.deep.equal({ success: true });
    expect((await h.probe.repositories.recharges.find(orderId))!.status).to.equal('closed');
    expect(await rechargeEntries(h, user)).to.equal(0);
  });

  it('fails the order once when the payment service says the payment failed, however often it is told', async () => {
    const user = h.user('declined');
    const { orderId, paymentId } = await order(user, 3);
    await h.sim!.fail(paymentId, 'lost');
    h.sim!.behaviour.copies = 10;
    const hint = { rechargeOrderId: orderId, paymentId, amount: 3, status: 'fail' };
    // Hints (GetPayment says FAILED) racing signed "failed" callbacks, all at once.
    const [hints, callbacks] = await Promise.all([
      Promise.all(Array.from({ length: 10 }, () => call(old.internal, 'RechargeCallback', hint, asPaymentService()))),
      h.sim!.fail(paymentId, 'concurrent'),
    ]);
    for (const a of hints) expect(a).to.deep.equal({ success: true });
    for (const a of callbacks) expect(a.status).to.equal(200);
    await h.drain();
    expect((await h.probe.repositories.recharges.find(orderId))!.status).to.equal('failed');
    const fired = await failures(h, user);
    expect(fired).to.have.length(1);
    expect(fired[0].data).to.include({ orderId, amount: '3.00' });
    expect(await rechargeEntries(h, user)).to.equal(0);
    await h.assertInvariant([user]);
  });

  it('keeps a closed order closed: a late "failed" report fires no recharge.failed', async () => {
    const user = h.user('late-fail');
    const { orderId, paymentId } = await order(user, 4);
    expect((await h.sim!.close(paymentId)).map((r) => r.status)).to.deep.equal([200]);
    expect((await h.sim!.fail(paymentId)).map((r) => r.status)).to.deep.equal([200]);
    expect(
      await call(old.internal, 'RechargeCallback', { rechargeOrderId: orderId, paymentId }, asPaymentService()),
    ).to.deep.equal({ success: true });
    await h.drain();
    expect((await h.probe.repositories.recharges.find(orderId))!.status).to.equal('closed');
    expect(await failures(h, user)).to.deep.equal([]);
    await h.assertInvariant([user]);
  });

  it('answers a hint for an order the payment service has no payment of as not paid (not as an outage)', async () => {
    const user = h.user('no-payment');
    h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'fail' };
    expect(await callFails(old.user, 'Recharge', { userId: user, amount: 2, paymentMethod: 'alipay' })).to.include({
      billingCode: 10009,
    });
    h.sim!.reset();
    const row = await h.probe.db('recharge_orders').where({ user_id: user }).first('order_id', 'status');
    expect(row.status).to.equal('failed');
    const hint = { rechargeOrderId: row.order_id, paymentId: 'pay_claimed', amount: 2, status: 'success' };
    expect(await call(old.internal, 'RechargeCallback', hint, asPaymentService())).to.deep.equal({ success: false });
    await h.drain();
    expect((await h.probe.repositories.recharges.find(row.order_id))!.status).to.equal('failed');
    expect(await failures(h, user)).to.have.length(1);
    await h.assertInvariant([user]);
  });

  it('validates a gRPC recharge like an HTTP one, and takes wechatpay over HTTP too', async () => {
    const user = h.user('validate');
    expect(await callFails(old.user, 'Recharge', { userId: user, amount: 0.001, paymentMethod: 'wechat' })).to.include({
      billingCode: 40000,
    });
    expect(await callFails(old.user, 'Recharge', { userId: user, amount: 1, paymentMethod: 'paypal' })).to.include({
      billingCode: 40000,
    });
    expect(
      await callFails(old.user, 'Recharge', { userId: user, amount: Number.NaN, paymentMethod: 'alipay' }),
    ).to.include({ billingCode: 40000 });
    expect(await callFails(old.user, 'Recharge', { userId: user, amount: 1e300, paymentMethod: 'alipay' })).to.include({
      billingCode: 40000,
    });
    const http = await h.post('/api/v1/billing/recharge', {
      user_id: user,
      amount: '1.00',
      payment_method: 'wechatpay',
    });
    expect(http.status).to.equal(200);
    expect(http.body.data.paymentMethod).to.equal('wechat');
  });
});
