import { expect } from 'chai';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { WebhookReceiver, signatureValid } from '../support/webhook-receiver.js';
import { runMaintenance } from '../support/money.js';
import { FakeClock } from '../support/fake-clock.js';

/*
 * SPEC 13 events, decided in the Lua step that changes the counter: each fires once per crossing,
 * under concurrency and replays, and reaches a real HTTP receiver signed.
 */
const SERVICES = [
  { name: 'tokens', free_quota: 0, unit_price: '0.1' },
  { name: 'asset', free_quota: 10, unit_price: '1' },
];
const DEDUCT = '/internal/v1/billing/deduct';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const M = 1_000_000n;

async function eventsOf(h: Harness, userId: string, type?: string) {
  const r = await h.get('/admin/v1/events', { user_id: userId, ...(type ? { type } : {}), page_size: 100 }, admin);
  expect(r.status, JSON.stringify(r.body)).to.equal(200);
  return r.body.data.events as { id: string; type: string; userId: string; createdAt: string; data: any }[];
}

function deducts(h: Harness, user: string, service: string, n: number, prefix: string) {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      h.post(DEDUCT, { request_id: `${prefix}-${i}`, user_id: user, service_name: service, count: 1 }),
    ),
  );
}

describe('events (SPEC 13)', function () {
  this.timeout(120_000);
  let h: Harness;
  let rx: WebhookReceiver;
  let secret: string;
  let endpointId: string;
  before(async () => {
    rx = await new WebhookReceiver().start();
    h = await startHarness({
      overrides: { services: SERVICES, webhooks: { timeout: '1s', backoff_base: '200ms', dispatch_every: '1s' } },
    });
    const created = await h.post('/admin/v1/webhooks', { url: rx.on('/all', 'ok'), events: ['*'] }, admin);
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    secret = created.body.data.secret;
    endpointId = created.body.data.id;
  });
  after(async () => {
    // Endpoints live in MySQL, which later test files share: leave none behind.
    await h.del(`/admin/v1/webhooks/${endpointId}`, admin);
    await h.stop();
    await rx.stop();
  });

  it('balance.low fires exactly once under 200 concurrent deducts, and replays fire nothing more', async () => {
    const user = h.user('low');
    await seedBalance(h, user, 25n * M);
    for (let round = 0; round < 2; round++) {
      const answers = await deducts(h, user, 'tokens', 200, 'c');
      expect(answers.every((a) => a.status === 200)).to.equal(true);
      expect(answers.filter((a) => a.body.data.duplicate).length).to.equal(round === 0 ? 0 : 200);
    }
    await h.drain();
    await h.assertInvariant([user]);
    const low = await eventsOf(h, user, 'balance.low');
    expect(low).to.have.length(1);
    expect(low[0]).to.deep.include({ userId: user, type: 'balance.low' });
    expect(low[0].data).to.deep.equal({ available: '9.90', threshold: '10.00' });
    await rx.waitFor(() => rx.at('/all', low[0].id).length > 0);
    const got = rx.at('/all', low[0].id)[0];
    expect(got.eventType).to.equal('balance.low');
    expect(signatureValid(got.signature, got.body, secret)).to.equal(true);
    expect(JSON.parse(got.body)).to.deep.equal(low[0]);
  });

  it('a recharge back above the threshold fires balance.recovered once and re-arms balance.low', async () => {
    const user = h.user('recover');
    await seedBalance(h, user, 12n * M);
    await deducts(h, user, 'tokens', 30, 'a'); // 9.00: low
    await h.post(
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: '5', reason: 'top up', idempotency_key: 'r1' },
      admin,
    );
    await h.post(
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: '5', reason: 'top up', idempotency_key: 'r1' },
      admin,
    );
    await deducts(h, user, 'tokens', 60, 'b'); // 14.00 -> 8.00: low again
    await h.drain();
    await h.assertInvariant([user]);
    // Stored in the order their persistence jobs committed (two jobs may commit in either order), so
    // ordered here by when each was decided.
    const byTime = (await eventsOf(h, user)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    expect(byTime.map((e) => e.type)).to.deep.equal(['balance.low', 'balance.recovered', 'balance.low']);
    const ids = (await eventsOf(h, user)).map((e) => e.id);
    await rx.waitFor(() => ids.every((id) => rx.at('/all', id).length > 0));
  });

  it('a refusal for balance fires balance.depleted once per crossing and changes no money', async () => {
    const user = h.user('depleted');
    await seedBalance(h, user, 50_000n);
    const refused = await deducts(h, user, 'tokens', 20, 'd');
    expect(refused.every((a) => a.status === 402 && a.body.code === 10001)).to.equal(true);
    await deducts(h, user, 'tokens', 20, 'd2');
    await h.drain();
    await h.assertInvariant([user]);
    const depleted = await eventsOf(h, user, 'balance.depleted');
    expect(depleted).to.have.length(1);
    expect(depleted[0].data).to.deep.equal({ service: 'tokens', needed: '0.10', available: '0.05' });
    const acct = (await h.get('/api/v1/billing/account', { user_id: user })).body.data;
    expect(acct.balance).to.equal('0.05');

    // Money coming in re-arms it: the next refusal is a new crossing.
    await seedBalance(h, user, 20_000n);
    await deducts(h, user, 'tokens', 5, 'd3');
    await h.drain();
    await h.assertInvariant([user]);
    expect(await eventsOf(h, user, 'balance.depleted')).to.have.length(2);

    // An id nobody ever funded: its refusals record nothing and leave nothing lasting (SPEC 7.1, 10.5).
    const stranger = h.user('never-funded');
    const strangers = await deducts(h, stranger, 'tokens', 3, 's');
    expect(strangers.every((a) => a.status === 402)).to.equal(true);
    await h.drain();
    expect(await eventsOf(h, stranger)).to.have.length(0);
    expect(await h.probe.redis.pttl(h.probe.keys.account(stranger))).to.not.equal(-1);
  });

  it('the same request refused again after the alarm re-armed fires balance.depleted again (found by the model test)', async () => {
    const user = h.user('depleted-again');
    await seedBalance(h, user, 50_000n);
    const call = { request_id: 'same', user_id: user, service_name: 'tokens', count: 1 };
    const hold = { ...call, request_id: 'same-hold', ttl_seconds: 600 };
    for (let round = 0; round < 3; round++) {
      // A refusal is not remembered: the same ids, refused again, are new crossings once money came in.
      if (round > 0) await seedBalance(h, user, 1_000n);
      const first = await h.post(DEDUCT, call);
      expect(first.status, `round ${round}`).to.equal(402);
      // Money in again between the deduct and the hold, so the hold's refusal is a crossing of its own.
      await seedBalance(h, user, 1_000n);
      const held = await h.post('/internal/v1/billing/reservations', hold);
      expect(held.status, `round ${round}`).to.equal(402);
    }
    await h.drain();
    await h.assertInvariant([user]);
    const depleted = await eventsOf(h, user, 'balance.depleted');
    expect(depleted.map((e) => e.data.available)).to.deep.equal(
      ['0.05', '0.051', '0.052', '0.053', '0.054', '0.055'].reverse(),
    );
  });

  it('quota at 80 % and at 100 % each fire once per month and service', async () => {
    const user = h.user('quota');
    await seedBalance(h, user, 100n * M);
    await deducts(h, user, 'asset', 30, 'q');
    await deducts(h, user, 'asset', 30, 'q'); // replays
    await h.drain();
    await h.assertInvariant([user]);
    const events = (await eventsOf(h, user)).filter((e) => e.type.startsWith('quota.'));
    expect(events.map((e) => e.type).sort()).to.deep.equal(['quota.exhausted', 'quota.low']);
    const low = events.find((e) => e.type === 'quota.low')!;
    expect(low.data).to.deep.equal({ service: 'asset', used: '8', freeQuota: '10' });
  });

  it('an account reloaded from MySQL (evicted) re-fires no alarm', async () => {
    const user = h.user('reload');
    await seedBalance(h, user, 10_500_000n);
    await deducts(h, user, 'tokens', 10, 'e'); // 9.50: low
    await deducts(h, user, 'asset', 9, 'f'); // 90 %: quota.low
    await h.drain();
    await h.probe.redis.del(h.probe.keys.account(user), h.probe.keys.quota(user, h.probe.calendar.period(new Date())));
    await deducts(h, user, 'tokens', 5, 'g');
    await deducts(h, user, 'asset', 1, 'h'); // 100 %: quota.exhausted only
    await h.drain();
    await h.assertInvariant([user]);
    const types = (await eventsOf(h, user)).map((e) => e.type).sort();
    expect(types).to.deep.equal(['balance.low', 'quota.exhausted', 'quota.low']);
  });

  it('per-user thresholds: PUT and GET /alerts, used from the next change', async () => {
    const user = h.user('thr');
    await seedBalance(h, user, 100n * M);
    const before = await h.get('/api/v1/billing/alerts', { user_id: user });
    expect(before.body.data).to.deep.equal({
      userId: user,
      balanceLow: '10.00',
      quotaLowPercent: 80,
      defaults: { balanceLow: true, quotaLowPercent: true },
    });
    const put = await h.put('/api/v1/billing/alerts', { user_id: user, balance_low: '99.5', quotaLowPercent: 50 });
    expect(put.status, JSON.stringify(put.body)).to.equal(200);
    expect(put.body.data).to.include({ balanceLow: '99.50', quotaLowPercent: 50 });
    await deducts(h, user, 'tokens', 6, 't'); // 99.40
    await deducts(h, user, 'asset', 5, 'u'); // 50 %
    await h.drain();
    const types = (await eventsOf(h, user)).map((e) => e.type).sort();
    expect(types).to.deep.equal(['balance.low', 'quota.low']);
    const reset = await h.put('/api/v1/billing/alerts', { user_id: user, balance_low: null });
    expect(reset.body.data).to.include({ balanceLow: '10.00', quotaLowPercent: 50 });
  });

  it('refuses hostile alert settings and event queries with clear 400s, changing nothing', async () => {
    const user = h.user('hostile');
    const bad = [
      { user_id: user, balance_low: '-1' },
      { user_id: user, balance_low: '1.0000001' },
      { user_id: user, balance_low: 1e300 },
      { user_id: user, quota_low_percent: 0 },
      { user_id: user, quota_low_percent: 101 },
      { user_id: user, quota_low_percent: '80%' },
      { user_id: 'a b', balance_low: '1' },
      { user_id: 'x'.repeat(65), balance_low: '1' },
      { balance_low: '1' },
    ];
    for (const body of bad) {
      const r = await h.put('/api/v1/billing/alerts', body);
      expect(r.status, JSON.stringify(body)).to.equal(400);
      expect(r.body.code).to.equal(40000);
    }
    expect((await h.get('/api/v1/billing/alerts', { user_id: user })).body.data.defaults).to.deep.equal({
      balanceLow: true,
      quotaLowPercent: true,
    });
    const queries: Record<string, string>[] = [
      { type: 'balance.nope' },
      { user_id: 'a{b}' },
      { cursor: 'zzz' },
      { page_size: '1000' },
    ];
    for (const q of queries) {
      const r = await h.get('/admin/v1/events', q, admin);
      expect(r.status, JSON.stringify(q)).to.equal(400);
      expect(r.body.code).to.equal(40000);
    }
    expect((await h.get('/admin/v1/events', {}, {})).status).to.equal(401);
  });

  it('pages events by cursor, newest first', async () => {
    const user = h.user('pages');
    await seedBalance(h, user, 100n * M);
    for (const [i, thr] of ['200', '1', '300', '1', '400'].entries()) {
      await h.put('/api/v1/billing/alerts', { user_id: user, balance_low: thr });
      await deducts(h, user, 'tokens', 1, `p${i}`);
    }
    await h.drain();
    const all = await eventsOf(h, user);
    expect(all.map((e) => e.type)).to.deep.equal([
      'balance.low',
      'balance.recovered',
      'balance.low',
      'balance.recovered',
      'balance.low',
    ]);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await h.get('/admin/v1/events', { user_id: user, page_size: 2, ...(cursor ? { cursor } : {}) }, admin);
      seen.push(...r.body.data.events.map((e: { id: string }) => e.id));
      cursor = r.body.data.nextCursor ?? undefined;
    } while (cursor);
    expect(seen).to.deep.equal(all.map((e) => e.id));
  });

  it('reservation.expired fires when a hold expires, and its return can recover the balance', async () => {
    const user = h.user('rsv');
    await seedBalance(h, user, 12n * M);
    const hold = await h.post('/internal/v1/billing/reservations', {
      request_id: 'r1',
      user_id: user,
      service_name: 'tokens',
      count: 30,
      ttl_seconds: 1,
    });
    expect(hold.status).to.equal(200);
    await deducts(h, user, 'tokens', 1, 'r'); // 12 - 3 held - 0.1 = 8.90: low
    await new Promise((r) => setTimeout(r, 1500));
    const released = await h.post(
      `/internal/v1/billing/reservations/${encodeURIComponent(hold.body.data.reservationId)}/release`,
      {},
    );
    expect(released.status).to.equal(404); // already expired
    await h.drain();
    await h.assertInvariant([user]);
    const types = (await eventsOf(h, user)).map((e) => e.type).sort();
    expect(types).to.deep.equal(['balance.low', 'balance.recovered', 'reservation.expired']);
  });

  it('a credit counts the spendable grants against the threshold (found by the model test)', async () => {
    const user = h.user('credit-grants');
    const path = `/admin/v1/accounts/${encodeURIComponent(user)}/grants`;
    const given = await h.post(path, { grant_id: 'g1', amount: '20.00', category: 'promotional' }, admin);
    expect(given.status, JSON.stringify(given.body)).to.equal(200);
    const adjust = (key: string, amount: string) =>
      h.post(
        `/admin/v1/accounts/${encodeURIComponent(user)}/adjustments`,
        { amount, reason: 'events test', idempotency_key: key },
        admin,
      );
    // Available 21.00, then 20.00: above the 10.00 threshold both times (the balance alone is 1.00, 0.00).
    expect((await adjust('k1', '1.00')).body.data.applied).to.equal(true);
    expect((await adjust('k2', '-1.00')).body.data.applied).to.equal(true);
    await h.drain();
    await h.assertInvariant([user]);
    expect((await eventsOf(h, user)).map((e) => e.type)).to.deep.equal([]);
  });

  it('voiding a grant a hold holds part of fires balance.low at the void, once (found by the model test)', async () => {
    // The grant's unheld part leaves at the void; the grant itself ends only once its hold is gone. The
    // alarm fired at that later end, hours late and with the amount available then.
    const user = h.user('void-held');
    await seedBalance(h, user, 5n * M);
    const path = `/admin/v1/accounts/${encodeURIComponent(user)}/grants`;
    const given = await h.post(path, { grant_id: 'g1', amount: '20.00', category: 'promotional' }, admin);
    expect(given.status, JSON.stringify(given.body)).to.equal(200);
    const hold = await h.post('/internal/v1/billing/reservations', {
      request_id: 'r1',
      user_id: user,
      service_name: 'tokens',
      count: 30,
      ttl_seconds: 600,
    });
    expect(hold.body.data, JSON.stringify(hold.body)).to.include({ heldAmount: '3.00' });
    // Voided three times at once: 17.00 leaves (22.00 -> 5.00 available, below 10.00), the alarm fires once.
    const voids = await Promise.all([1, 2, 3].map(() => h.post(`${path}/g1/void`, {}, admin)));
    for (const v of voids) expect(v.body.data, JSON.stringify(v.body)).to.include({ pending: true });
    expect(voids.map((v) => v.body.data.voided)).to.include('17.00');
    await h.drain();
    const low = await eventsOf(h, user, 'balance.low');
    expect(low.map((e) => e.data)).to.deep.equal([{ available: '5.00', threshold: '10.00' }]);
    // The hold ends; the grant leaves whole, and nothing fires again.
    const released = await h.post(
      `/internal/v1/billing/reservations/${encodeURIComponent(hold.body.data.reservationId)}/release`,
      {},
    );
    expect(released.status, JSON.stringify(released.body)).to.equal(200);
    await runMaintenance(h, 'expire-grants');
    await h.drain();
    await h.assertInvariant([user]);
    const types = (await eventsOf(h, user)).map((e) => e.type).sort();
    expect(types).to.deep.equal(['balance.low', 'grant.expired']);
    expect((await eventsOf(h, user, 'grant.expired')).map((e) => e.data)).to.deep.equal([
      { grantId: 'g1', remaining: '20.00', how: 'voided' },
    ]);
  });

  it('two users with a grant of the same id each store their grant.expired (found by the model test)', async () => {
    // Grant ids are the caller's, unique per user only: the event id must tell the users apart.
    const users = [h.user('same-grant-a'), h.user('same-grant-b')];
    for (const user of users) {
      const path = `/admin/v1/accounts/${encodeURIComponent(user)}/grants`;
      const given = await h.post(path, { grant_id: 'g1', amount: '0.50', category: 'promotional' }, admin);
      expect(given.status, JSON.stringify(given.body)).to.equal(200);
      const voided = await h.post(`${path}/g1/void`, {}, admin);
      expect(voided.body.data, JSON.stringify(voided.body)).to.include({ voided: '0.50', pending: false });
    }
    await h.drain();
    await h.assertInvariant(users);
    for (const user of users) {
      const ended = await eventsOf(h, user, 'grant.expired');
      expect(ended.map((e) => e.data)).to.deep.equal([{ grantId: 'g1', remaining: '0.50', how: 'voided' }]);
    }
  });
});

describe('events of holds expiring in one sweep (SPEC 13)', function () {
  this.timeout(120_000);
  let h: Harness;
  let clock: FakeClock;
  before(async () => {
    clock = new FakeClock(new Date());
    h = await startHarness({ clock, overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  const reserveFor = (user: string) => (requestId: string, count: number, ttl: number) =>
    h.post('/internal/v1/billing/reservations', {
      request_id: requestId,
      user_id: user,
      service_name: 'tokens',
      count,
      ttl_seconds: ttl,
    });

  it('returns them in the order they expire, so balance.recovered says what was available then (found by the model test)', async () => {
    const user = h.user('sweep-order');
    await seedBalance(h, user, 10_400_000n);
    const reserve = reserveFor(user);
    // Made first, expires last: 0.30 for 10 minutes; then 0.50 for 1 minute (10.40 -> 9.60: low).
    expect((await reserve('long', 3, 600)).status).to.equal(200);
    expect((await reserve('short', 5, 60)).status).to.equal(200);
    clock.set(new Date(clock.now().getTime() + 601_000));
    await runMaintenance(h, 'expire-reservations');
    await h.drain();
    await h.assertInvariant([user]);
    // 'short' back first: 10.10, above the threshold; then 'long': 10.40, nothing more to say.
    expect((await eventsOf(h, user, 'balance.recovered')).map((e) => e.data)).to.deep.equal([
      { available: '10.10', threshold: '10.00' },
    ]);
  });

  it('returns holds expiring at the same instant by request id', async () => {
    const user = h.user('sweep-ties');
    await seedBalance(h, user, 10_400_000n);
    const reserve = reserveFor(user);
    // Made at one instant with one ttl: 'b' (0.50) first, then 'a' (0.30). By request id 'a' comes back
    // first (9.90, still low), then 'b' (10.40): recovered at 10.40, whatever order the hash keeps.
    expect((await reserve('b', 5, 60)).status).to.equal(200);
    expect((await reserve('a', 3, 60)).status).to.equal(200);
    clock.set(new Date(clock.now().getTime() + 61_000));
    await runMaintenance(h, 'expire-reservations');
    await h.drain();
    await h.assertInvariant([user]);
    expect((await eventsOf(h, user, 'balance.recovered')).map((e) => e.data)).to.deep.equal([
      { available: '10.40', threshold: '10.00' },
    ]);
  });
});

describe('recharge events (SPEC 13)', function () {
  this.timeout(120_000);
  let h: Harness;
  let rx: WebhookReceiver;
  let hookId: string;
  before(async () => {
    rx = await new WebhookReceiver().start();
    h = await startHarness({ simulator: true, overrides: { webhooks: { timeout: '1s', backoff_base: '200ms' } } });
    const hook = await h.post(
      '/admin/v1/webhooks',
      { url: rx.on('/pay', 'ok'), events: ['recharge.paid', 'recharge.failed'] },
      admin,
    );
    expect(hook.status).to.equal(201);
    hookId = hook.body.data.id;
  });
  after(async () => {
    await h.del(`/admin/v1/webhooks/${hookId}`, admin);
    await h.stop();
    await rx.stop();
  });

  it('a paid order fires recharge.paid once however often its callback comes; a failed one recharge.failed', async () => {
    const user = h.user('payer');
    const order = await h.post('/api/v1/billing/recharge', { user_id: user, amount: '5.00', payment_method: 'alipay' });
    expect(order.status).to.equal(200);
    await h.sim!.pay(order.body.data.paymentId);
    await h.sim!.pay(order.body.data.paymentId, 'duplicate');
    await h.drain();
    await h.assertInvariant([user]);
    const paid = await eventsOf(h, user, 'recharge.paid');
    expect(paid).to.have.length(1);
    expect(paid[0].data).to.deep.equal({ orderId: order.body.data.orderId, amount: '5.00' });
    await rx.waitFor(() => rx.at('/pay', paid[0].id).length > 0);

    h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'fail' };
    const failed = await h.post('/api/v1/billing/recharge', {
      user_id: user,
      amount: '7.00',
      payment_method: 'alipay',
    });
    expect(failed.status).to.equal(503);
    h.sim!.reset();
    const failures = await eventsOf(h, user, 'recharge.failed');
    expect(failures).to.have.length(1);
    expect(failures[0].data).to.include({ amount: '7.00' });
    await rx.waitFor(() => rx.at('/pay', failures[0].id).length > 0);
    expect(
      rx
        .at('/pay')
        .map((r) => r.eventType)
        .sort(),
    ).to.deep.equal(['recharge.failed', 'recharge.paid']);
  });
});
