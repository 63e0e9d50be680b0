import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { deductPrint } from '../../src/redis/idempotency.js';
import { Scripts } from '../../src/redis/scripts.js';
import { Metrics } from '../../src/lib/metrics.js';

const CHECK = '/internal/v1/billing/check';
const DEDUCT = '/internal/v1/billing/deduct';

describe('gateway check and deduct', function () {
  let h: Harness;
  before(async function () {
    this.timeout(120_000);
    // A small free quota keeps the cases short; prices as configured by an operator.
    h = await startHarness({
      overrides: {
        services: [
          { name: 'passport', free_quota: 3, unit_price: '0.001' },
          { name: 'asset', free_quota: 2, unit_price: '0.5' },
          { name: 'freebie', free_quota: 2, unit_price: null },
        ],
      },
    });
  });
  after(() => h.stop());

  it('serves a new user’s first call from the free quota', async () => {
    const user = h.user('new');
    const check = await h.post(CHECK, { user_id: user, service_name: 'passport' });
    expect(check.status).to.equal(200);
    expect(check.body.data).to.deep.equal({ allowed: true, reason: 'free', freeRemaining: 3, balance: '0.00' });

    const r = await h.post(DEDUCT, { request_id: 'r1', user_id: user, service_name: 'passport' });
    expect(r.status).to.equal(200);
    expect(r.body.data).to.include({
      success: true,
      requestId: 'r1',
      freeCount: 1,
      paidCount: 0,
      amount: '0.00',
      balance: '0.00',
      duplicate: false,
    });
    expect(r.body.data.recordId).to.match(/^rec_/);
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('refuses with 10001 when the free quota is used up and there is no balance, changing nothing', async () => {
    const user = h.user('broke');
    for (let i = 0; i < 3; i++)
      expect((await h.post(DEDUCT, { request_id: `f${i}`, user_id: user, service_name: 'passport' })).status).to.equal(
        200,
      );
    const before = await h.get('/api/v1/billing/account', { user_id: user });
    const refused = await h.post(DEDUCT, { request_id: 'over', user_id: user, service_name: 'passport' });
    expect(refused.status).to.equal(402);
    expect(refused.body).to.include({ success: false, code: 10001 });
    const check = await h.post(CHECK, { user_id: user, service_name: 'passport' });
    expect(check.body.data).to.deep.equal({
      allowed: false,
      reason: 'insufficient_balance',
      freeRemaining: 0,
      balance: '0.00',
    });
    const after = await h.get('/api/v1/billing/account', { user_id: user });
    expect(after.body.data).to.deep.equal(before.body.data);
    await h.drain();
    const records = await h.get('/api/v1/billing/records', { user_id: user });
    expect(records.body.data.total).to.equal(3);
    // A refused request_id is not remembered: after a top-up the same request goes through.
    await seedBalance(h, user, 1_000_000n);
    const retried = await h.post(DEDUCT, { request_id: 'over', user_id: user, service_name: 'passport' });
    expect(retried.body.data).to.include({ paidCount: 1, amount: '0.001', balance: '0.999', duplicate: false });
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('charges the balance at the service’s price once the free quota is used up, mixing within one call', async () => {
    const user = h.user('payer');
    await seedBalance(h, user, 10_000_000n); // 10.00
    const r = await h.post(DEDUCT, { request_id: 'm1', user_id: user, service_name: 'asset', count: 5 });
    expect(r.body.data).to.include({ freeCount: 2, paidCount: 3, amount: '1.50', balance: '8.50' });
    const r2 = await h.post(DEDUCT, { request_id: 'm2', user_id: user, service_name: 'asset' });
    expect(r2.body.data).to.include({ freeCount: 0, paidCount: 1, amount: '0.50', balance: '8.00' });
    await h.drain();
    const records = await h.get('/api/v1/billing/records', { user_id: user });
    expect(records.body.data.records.map((x: any) => x.type)).to.deep.equal(['balance', 'mixed']);
    const acct = await h.get('/api/v1/billing/account', { user_id: user });
    expect(acct.body.data.balance).to.equal('8.00');
    expect(acct.body.data.quotas.find((q: any) => q.serviceName === 'asset')).to.include({
      totalQuota: 2,
      usedQuota: 2,
      remainingQuota: 0,
    });
    await h.assertInvariant([user]);
  });

  it('refuses a free-only service past its quota with 10002', async () => {
    const user = h.user('free-only');
    await seedBalance(h, user, 10_000_000n);
    await h.post(DEDUCT, { request_id: 'a', user_id: user, service_name: 'freebie', count: 2 });
    const r = await h.post(DEDUCT, { request_id: 'b', user_id: user, service_name: 'freebie' });
    expect(r.status).to.equal(402);
    expect(r.body.code).to.equal(10002);
    const check = await h.post(CHECK, { user_id: user, service_name: 'freebie' });
    expect(check.body.data).to.include({ allowed: false, reason: 'insufficient_quota' });
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('charges a repeated request_id once, and answers 10007 when the payload differs', async () => {
    const user = h.user('replay');
    await seedBalance(h, user, 5_000_000n);
    const body = { request_id: 'same', user_id: user, service_name: 'asset', count: 3 };
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.post(DEDUCT, body)));
    const first = answers.filter((a) => !a.body.data.duplicate);
    expect(first).to.have.length(1);
    for (const a of answers) {
      expect(a.status).to.equal(200);
      expect(a.body.data.recordId).to.equal(first[0].body.data.recordId);
      expect(a.body.data.amount).to.equal('0.50');
    }
    const reused = await h.post(DEDUCT, { ...body, count: 4 });
    expect(reused.status).to.equal(409);
    expect(reused.body.code).to.equal(10007);
    await h.drain();
    const acct = await h.get('/api/v1/billing/account', { user_id: user });
    expect(acct.body.data.balance).to.equal('4.50');
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
    await h.assertInvariant([user]);
  });

  it('answers 10007 for a request id reused with another count where the payload fingerprints collide', async () => {
    // The 32-bit fingerprint of passport|129599 is that of passport|732382 (FNV-1a): the count the
    // remembered answer charged (free + paid) tells them apart, with max_calls_per_request raised to allow both.
    expect(deductPrint('passport', 129_599)).to.equal(deductPrint('passport', 732_382));
    const big = await startHarness({
      overrides: {
        max_calls_per_request: 1_000_000,
        services: [{ name: 'passport', free_quota: 3, unit_price: '0.001' }],
      },
    });
    try {
      const user = big.user('collide');
      await seedBalance(big, user, 200_000_000n);
      const body = { request_id: 'c1', user_id: user, service_name: 'passport', count: 129_599 };
      const first = await big.post(DEDUCT, body);
      expect(first.body.data).to.include({ amount: '129.596', duplicate: false });
      const reused = await big.post(DEDUCT, { ...body, count: 732_382 });
      expect(reused.status).to.equal(409);
      expect(reused.body.code).to.equal(10007);
      expect((await big.post(DEDUCT, body)).body.data).to.include({
        recordId: first.body.data.recordId,
        duplicate: true,
      });
      // Replays and reuses at once: every replay the first answer, every reuse 10007, nothing more charged.
      const racing = await Promise.all(
        Array.from({ length: 20 }, (_, i) => big.post(DEDUCT, i % 2 ? body : { ...body, count: 732_382 })),
      );
      for (const [i, r] of racing.entries()) {
        if (i % 2) expect(r.body.data).to.include({ recordId: first.body.data.recordId, duplicate: true });
        else expect(r.body.code).to.equal(10007);
      }
      await big.drain();
      expect((await big.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('70.404');
      await big.assertInvariant([user]);
    } finally {
      await big.stop();
    }
  });

  it('persists the same job twice, and concurrently, without changing anything after the first', async () => {
    // No worker here: the change stays in the journal until this test persists it by hand.
    const apiOnly = await startHarness({
      roles: ['api'],
      overrides: { services: [{ name: 'asset', free_quota: 0, unit_price: '0.5' }] },
    });
    try {
      const user = apiOnly.user('twice');
      await seedBalance(apiOnly, user, 5_000_000n);
      await apiOnly.post(DEDUCT, { request_id: 'j1', user_id: user, service_name: 'asset', count: 4 });
      const probe = apiOnly.probe;
      const changes = await collectJournal(apiOnly, user);
      expect(changes).to.have.length(2); // the seed credit and the deduction
      const results = await Promise.all([1, 2, 3].map(() => probe.persistence.persist(changes).catch((e: Error) => e)));
      const applied = results.filter((r) => !(r instanceof Error)).map((r) => (r as { applied: number }).applied);
      // Racing transactions collide on a unique key and roll back; the retry finds the change stored.
      expect(applied.filter((n) => n > 0)).to.deep.equal([2]);
      const again = await probe.persistence.persist(changes);
      expect(again).to.include({ applied: 0, alreadyPersisted: 2 });
      expect(await probe.repositories.ledger.balanceAndLedgerSum(user)).to.deep.equal({
        balance: 3_000_000n,
        ledgerSum: 3_000_000n,
      });
      expect((await apiOnly.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
      expect(await probe.persistence.pendingCount()).to.equal(0);
      await apiOnly.assertInvariant([user]);
    } finally {
      await apiOnly.stop();
    }
  });

  it('queues for MySQL the very change the script journals, hostile request ids, replays and races included', async () => {
    // The script builds the journaled change from its arguments; Scripts.deduct builds the copy that the
    // persistence job carries. They must be one change: the sweep books the journal's, the job its own.
    const { ctx } = h.running;
    const scripts = new Scripts(ctx.redis, ctx.keys, ctx.accounts, new Metrics(false));
    const user = h.user('journal-copy');
    await seedBalance(h, user, 10_000_000n);
    const deduct = (requestId: string, serviceName: string, count: number) => {
      const now = ctx.clock.now();
      return scripts.deduct({
        userId: user,
        period: h.probe.calendar.period(now),
        date: h.probe.calendar.day(now),
        requestId,
        service: ctx.catalogue.get(serviceName),
        count,
        idempotencyTtlMs: h.config.redis.idempotencyTtlMs,
        quotaExpiresAt: ctx.accounts.quotaExpiry(now),
        now,
      });
    };
    const ids = ['trailing ', ' leading', 'a"quote\\back/slash', 'sep:{x}|y*?[z]', '~'.repeat(128)];
    const calls = [
      ...ids.map((id, i) => [id, i < 2 ? 'passport' : 'asset', i + 1] as const),
      // the same ids again, concurrently: replays, nothing journaled
      ...ids.map((id, i) => [id, i < 2 ? 'passport' : 'asset', i + 1] as const),
    ];
    const replies = await Promise.all(calls.map(([id, service, count]) => deduct(id, service, count)));
    const journaled = replies.filter((r) => r.journaled).map((r) => r.journaled!);
    expect(journaled.map((c) => c.requestId).sort()).to.deep.equal([...ids].sort());
    // The free quota ran out within these calls (quota.exhausted rides in a change), then the balance paid.
    expect(journaled.some((c) => c.events && c.events.length > 0)).to.equal(true);
    for (const c of journaled) {
      const entry = await ctx.redis.hget(ctx.keys.pending(user), c.id);
      expect(JSON.parse(entry!), c.requestId).to.deep.equal(JSON.parse(JSON.stringify(c)));
      ctx.persistence.enqueue(c);
    }
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('lets exactly 137 of 500 parallel deducts through against a balance for 137 calls', async function () {
    this.timeout(120_000);
    const user = h.user('race');
    // Free quota first: use it up so that every call below is paid.
    await h.post(DEDUCT, { request_id: 'warm', user_id: user, service_name: 'passport', count: 3 });
    await seedBalance(h, user, 137n * 1000n); // 137 calls at 0.001
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        h.post(DEDUCT, { request_id: `p${i}`, user_id: user, service_name: 'passport' }),
      ),
    );
    const okCount = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status === 402 && r.body.code === 10001).length;
    expect(okCount).to.equal(137);
    expect(refused).to.equal(363);
    await h.drain();
    const acct = await h.get('/api/v1/billing/account', { user_id: user });
    expect(acct.body.data.balance).to.equal('0.00');
    const records = await h.get('/api/v1/billing/records', {
      user_id: user,
      service_name: 'passport',
      type: 'balance',
    });
    expect(records.body.data.total).to.equal(137);
    await h.assertInvariant([user]);
  });
});

/** The user's journal entries as they are before the worker acknowledges them. */
async function collectJournal(h: Harness, userId: string) {
  const probe = h.probe;
  const entries = await probe.redis.hgetall(probe.keys.pending(userId));
  return Object.values(entries).map((v) => JSON.parse(v));
}
