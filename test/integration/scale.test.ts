import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { startWorkers } from '../../src/workers/workers.js';

/*
 * SPEC section 16: maintenance reads indexes kept by the scripts (no SCAN), and idle accounts leave
 * Redis once MySQL holds all of their state, coming back on their next call.
 */
const DEDUCT = '/internal/v1/billing/deduct';
const RESERVE = '/internal/v1/billing/reservations';

describe('scale: maintenance indexes and idle accounts', function () {
  this.timeout(90_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: [{ name: 'passport', free_quota: 3, unit_price: '0.01' }] } });
  });
  after(() => h.stop());

  const score = (key: string, user: string) => h.running.ctx.redis.zscore(key, user);

  it('lists a user in the journal index while a change is unpersisted, and in the holds index by its earliest hold', async () => {
    const ctx = h.running.ctx;
    const user = h.user('indexed');
    await seedBalance(h, user, 1_000_000n);
    await h.drain();
    expect(await score(ctx.keys.journalIndex(user), user)).to.equal(null);
    expect(Number(await score(ctx.keys.activityIndex(user), user))).to.be.greaterThan(0);

    const late = await h.post(RESERVE, { request_id: 'late', user_id: user, service_name: 'passport', count: 5, ttl_seconds: 600 });
    const early = await h.post(RESERVE, { request_id: 'early', user_id: user, service_name: 'passport', count: 1, ttl_seconds: 60 });
    expect(Number(await score(ctx.keys.holdsIndex(user), user))).to.equal(Date.parse(early.body.data.expiresAt));
    await h.post(`${RESERVE}/${early.body.data.reservationId}/release`, {});
    expect(Number(await score(ctx.keys.holdsIndex(user), user))).to.equal(Date.parse(late.body.data.expiresAt));
    await h.post(`${RESERVE}/${late.body.data.reservationId}/commit`, { count: 4 });
    expect(await score(ctx.keys.holdsIndex(user), user)).to.equal(null);
    await h.drain();
    expect(await score(ctx.keys.journalIndex(user), user)).to.equal(null);
    await h.assertInvariant([user]);
  });

  it('sweeps through the index what a lost enqueue left in a journal', async () => {
    const api = await startHarness({ roles: ['api'] }); // no worker: the job is lost for sure
    const ctx = api.running.ctx;
    try {
      const user = api.user('lost');
      await api.post(DEDUCT, { request_id: 'l1', user_id: user, service_name: 'passport' });
      await ctx.persistence.drainBuffer();
      await ctx.queues.queueOf('persist-changes').obliterate({ force: true });
      expect(await score(ctx.keys.journalIndex(user), user)).not.to.equal(null);
      expect(await ctx.persistence.sweep(0)).to.equal(1);
      const again = startWorkers(ctx, ['persistence']);
      try {
        await api.drain();
      } finally {
        await again.close();
      }
      expect(await score(ctx.keys.journalIndex(user), user)).to.equal(null);
      expect((await api.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
    } finally {
      await api.stop();
    }
  });

  it('evicts an idle account whose state is all in MySQL, and reloads it, free quota of the month included', async () => {
    const ctx = h.running.ctx;
    const [idle, held, fresh] = [h.user('idle'), h.user('held'), h.user('fresh')];
    for (const user of [idle, held]) await seedBalance(h, user, 1_000_000n);
    await h.post(DEDUCT, { request_id: 'd1', user_id: idle, service_name: 'passport', count: 5 }); // 3 free + 2 paid
    await h.post(RESERVE, { request_id: 'h1', user_id: held, service_name: 'passport', count: 1, ttl_seconds: 600 });
    await h.drain();
    const idleBefore = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await h.post(DEDUCT, { request_id: 'd1', user_id: fresh, service_name: 'passport' }); // changed since

    const { evicted } = await ctx.accounts.evictIdle(Date.now() - idleBefore); // "idle" = unchanged since idleBefore
    expect(evicted).to.be.greaterThan(0);
    expect(await ctx.redis.exists(ctx.keys.account(fresh)), 'a recent change keeps it').to.equal(1);
    expect(await ctx.redis.exists(ctx.keys.account(idle))).to.equal(0);
    expect(await ctx.redis.exists(ctx.keys.quota(idle, ctx.calendar.period(ctx.clock.now())))).to.equal(0);
    expect(await score(ctx.keys.activityIndex(idle), idle)).to.equal(null);
    expect(await ctx.redis.exists(ctx.keys.account(held)), 'an open hold keeps it').to.equal(1);

    // Back on its next call, from MySQL: the balance, and the free calls already used this month.
    const account = (await h.get('/api/v1/billing/account', { user_id: idle })).body.data;
    expect(account.balance).to.equal('0.98');
    expect(account.quotas[0]).to.include({ usedQuota: 3, remainingQuota: 0 });
    const replay = await h.post(DEDUCT, { request_id: 'd1', user_id: idle, service_name: 'passport', count: 5 });
    expect(replay.body.data.duplicate, 'a replay within the window is still a replay').to.equal(true);
    const next = await h.post(DEDUCT, { request_id: 'd2', user_id: idle, service_name: 'passport' });
    expect(next.body.data).to.include({ freeCount: 0, paidCount: 1, balance: '0.97' });
    await h.drain();
    await h.assertInvariant([idle, fresh]); // (a hold's free calls are not in MySQL until it ends)
  });

  it('never evicts an account with a change on its way to MySQL', async () => {
    const api = await startHarness({ roles: ['api'] }); // no worker: the change stays on its way
    try {
      const ctx = api.running.ctx;
      const user = api.user('in-flight');
      await api.post(DEDUCT, { request_id: 'f1', user_id: user, service_name: 'passport' });
      await ctx.persistence.drainBuffer();
      await new Promise((r) => setTimeout(r, 5));
      const { busy, evicted } = await ctx.accounts.evictIdle(1);
      expect([busy, evicted]).to.deep.equal([1, 0]);
      expect(await ctx.redis.exists(ctx.keys.account(user))).to.equal(1);
      const workers = startWorkers(ctx, ['persistence']);
      try {
        await api.drain();
      } finally {
        await workers.close();
      }
      await api.assertInvariant([user]);
    } finally {
      await api.stop();
    }
  });
});
