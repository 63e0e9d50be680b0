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

  const score = (key: string, user: string) => h.probe.redis.zscore(key, user);

  it('lists a user in the journal index while a change is unpersisted, and in the holds index by its earliest hold', async () => {
    const ctx = h.probe;
    const user = h.user('indexed');
    await seedBalance(h, user, 1_000_000n);
    await h.drain();
    expect(await score(ctx.keys.journalIndex(user), user)).to.equal(null);
    expect(Number(await score(ctx.keys.activityIndex(user), user))).to.be.greaterThan(0);

    const late = await h.post(RESERVE, {
      request_id: 'late',
      user_id: user,
      service_name: 'passport',
      count: 5,
      ttl_seconds: 600,
    });
    const early = await h.post(RESERVE, {
      request_id: 'early',
      user_id: user,
      service_name: 'passport',
      count: 1,
      ttl_seconds: 60,
    });
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
    const ctx = api.probe;
    try {
      const user = api.user('lost');
      await api.post(DEDUCT, { request_id: 'l1', user_id: user, service_name: 'passport' });
      await ctx.persistence.drainBuffer();
      await ctx.queues.queueOf('persist-changes').obliterate({ force: true });
      expect(await score(ctx.keys.journalIndex(user), user)).not.to.equal(null);
      expect(await ctx.persistence.sweep(0)).to.equal(1);
      const again = startWorkers(ctx.workers, ['persistence']);
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
    const ctx = h.probe;
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
      const ctx = api.probe;
      const user = api.user('in-flight');
      await api.post(DEDUCT, { request_id: 'f1', user_id: user, service_name: 'passport' });
      await ctx.persistence.drainBuffer();
      await new Promise((r) => setTimeout(r, 5));
      const { busy, evicted } = await ctx.accounts.evictIdle(1);
      expect([busy, evicted]).to.deep.equal([1, 0]);
      expect(await ctx.redis.exists(ctx.keys.account(user))).to.equal(1);
      const workers = startWorkers(ctx.workers, ['persistence']);
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

  it('archives records and verified ledger entries past the retention horizon; balances stay provable', async () => {
    const ctx = h.probe;
    const user = h.user('archived');
    await seedBalance(h, user, 2_000_000n);
    await h.post(DEDUCT, { request_id: 'old1', user_id: user, service_name: 'passport', count: 5 });
    await h.drain();
    const longAgo = new Date(Date.now() - 800 * 86_400_000);
    await ctx.db('consumption_records').where({ user_id: user }).update({ created_at: longAgo });
    await ctx.db('ledger_entries').where({ user_id: user }).update({ created_at: longAgo });
    await ctx
      .db('usage_daily')
      .where({ user_id: user })
      .update({ day: ctx.calendar.day(longAgo) });
    // Not yet verified by reconciliation: its ledger entries stay; the records move.
    await ctx.db('accounts').where({ user_id: user }).update({ audited_entry_id: 0 });
    const first = await ctx.archive.run();
    expect(first.records).to.be.greaterThan(0);
    expect(await ctx.db('ledger_entries').where({ user_id: user }).count({ n: '*' }).first()).to.deep.include({
      n: '2',
    });
    await ctx.reconciliation.run('manual'); // verifies them
    const second = await ctx.archive.run();
    expect(second.ledgerEntries).to.be.greaterThan(0);
    expect(await ctx.db('ledger_entries').where({ user_id: user }).count({ n: '*' }).first()).to.deep.include({
      n: '0',
    });
    expect(await ctx.db('ledger_entries_archive').where({ user_id: user }).count({ n: '*' }).first()).to.deep.include({
      n: '2',
    });
    const acct = await ctx.db('accounts').where({ user_id: user }).first('balance', 'archived_balance');
    expect(String(acct.archived_balance)).to.equal(String(acct.balance)).and.to.equal('1980000');
    await h.assertInvariant([user]);

    // Life goes on: a new charge books after the archived history, and every kind of check agrees.
    await h.post(DEDUCT, { request_id: 'new1', user_id: user, service_name: 'passport' });
    await h.drain();
    await h.assertInvariant([user]);
    const full = await ctx.reconciliation.run('manual', undefined, { full: true });
    const repairs = await ctx.db('reconciliation_repairs').where({ run_id: full.id, user_id: user });
    expect(repairs).to.have.length(0);
    const listed = (await h.get('/api/v1/billing/records', { user_id: user })).body.data;
    expect(listed.total, JSON.stringify(listed.records)).to.equal(1);
    const summary = (await h.get('/api/v1/billing/stats/summary', { user_id: user })).body.data;
    expect(summary.totalCount, 'statistics come from the daily aggregates, never archived').to.equal(6);
  });

  it('remembers each deduct request compactly, for its whole window and no longer', async () => {
    const W = 3_600_000;
    // A clock a day ahead, 59 minutes into a window (hash expiries are set from it).
    let t = (Math.floor(Date.now() / W) + 24) * W + 59 * 60_000;
    const clock = { now: () => new Date(t) };
    const hc = await startHarness({ clock, overrides: { redis: { idempotency_ttl: '1h' } } });
    try {
      const user = hc.user('compact');
      const deduct = (id: string, count = 1) =>
        hc.post(DEDUCT, { request_id: id, user_id: user, service_name: 'passport', count });
      const first = (await deduct('r1')).body.data;
      for (let i = 0; i < 300; i++) await deduct(`bulk-${i}`);
      t += 2 * 60_000; // the next window, 2 minutes later: still within the hour
      const replay = (await deduct('r1')).body.data;
      expect(replay).to.include({ duplicate: true, recordId: first.recordId, freeCount: 1 });
      expect((await deduct('r1', 2)).status, 'another payload within the window').to.equal(409);
      // Deducts and reservations share one request-id space per user, whichever came first.
      const reserve = (id: string) =>
        hc.post('/internal/v1/billing/reservations', {
          request_id: id,
          user_id: user,
          service_name: 'passport',
          count: 1,
        });
      expect((await reserve('r1')).body.code, "a reservation with a deduct's id").to.equal(10007);
      expect((await reserve('h1')).status).to.equal(200);
      expect((await deduct('h1')).body.code, "a deduct with a reservation's id").to.equal(10007);
      t += 58 * 60_000; // 60 minutes after the first call: a new call
      const again = (await deduct('r1')).body.data;
      expect(again.duplicate).to.equal(false);
      expect(again.recordId).not.to.equal(first.recordId);
      await hc.drain();
      const records = await hc.probe
        .db('consumption_records')
        .where({ user_id: user, request_id: 'r1' })
        .pluck('record_id');
      expect(records.sort()).to.deep.equal([first.recordId, again.recordId].sort());

      // 12-byte fields, 32-byte answers, hashes that stay listpacks (about 48 bytes a request).
      const firstWindow = Math.floor((t - 60 * 60_000) / W);
      const keys = [firstWindow, firstWindow + 1].flatMap((w) =>
        [...Array(16).keys()].map((s) => hc.probe.keys.requests(user, w, s)),
      );
      let remembered = 0;
      for (const key of keys) {
        if (!(await hc.probe.redis.exists(key))) continue;
        expect(await hc.probe.redis.call('OBJECT', 'ENCODING', key)).to.equal('listpack');
        const entries = await hc.probe.redis.hgetallBuffer(key);
        for (const value of Object.values(entries)) {
          expect(value.length).to.equal(32);
          remembered++;
        }
        // The scripts are given each field as hex and store its 12 bytes.
        for (const field of await hc.probe.redis.hkeysBuffer(key)) expect(field.length).to.equal(12);
      }
      expect(remembered, 'r1 and 300 others in the first window, r1 again in the next').to.equal(302);
    } finally {
      await hc.stop();
    }
  });

  it('evicts and reloads accounts again and again while they are charged, and loses nothing', async () => {
    const users = [0, 1, 2, 3].map((i) => h.user(`churn-${i}`));
    for (const u of users) await seedBalance(h, u, 1_000_000n);
    await h.drain();
    let running = true;
    let evicted = 0;
    const evictor = (async () => {
      while (running) {
        evicted += (await h.probe.accounts.evictIdle(150)).evicted;
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    const sent = new Map<string, number>(users.map((u) => [u, 0]));
    const until = Date.now() + 3_000;
    await Promise.all(
      users.map(async (user, k) => {
        for (let i = 0; Date.now() < until; i++) {
          const r = await h.post(DEDUCT, {
            request_id: `c${i}`,
            user_id: user,
            service_name: 'passport',
            count: 1 + (i % 3),
          });
          expect(r.status).to.equal(200);
          sent.set(user, sent.get(user)! + 1);
          // Each user pauses long enough, now and then, to become idle and leave Redis.
          await new Promise((r) => setTimeout(r, i % 4 === k % 4 ? 250 : 10));
        }
      }),
    );
    running = false;
    await evictor;
    await h.drain();
    expect(evicted, 'accounts left Redis during the run').to.be.greaterThan(0);
    await h.assertInvariant(users);
    for (const user of users) {
      const n = await h.probe.db('consumption_records').where({ user_id: user }).count({ n: '*' }).first();
      expect(Number(n!.n), `records of ${user}`).to.equal(sent.get(user));
    }
  });

  it('evicts every idle account in one run, more than one page of them', async () => {
    const users = Array.from({ length: 1_100 }, (_, i) => h.user(`page-${i}`));
    for (let i = 0; i < users.length; i += 100) {
      await Promise.all(users.slice(i, i + 100).map((u) => seedBalance(h, u, 10_000n)));
    }
    await h.drain();
    // A few that must stay (an open hold), among the first: the walk steps over them to the rest.
    const held = users.slice(0, 5);
    for (const u of held)
      await h.post(RESERVE, { request_id: 'hold', user_id: u, service_name: 'passport', count: 1, ttl_seconds: 600 });
    await new Promise((r) => setTimeout(r, 300));
    const { evicted, busy } = await h.probe.accounts.evictIdle(250);
    // (other tests' accounts of this harness count too)
    expect(evicted).to.be.at.least(users.length - held.length);
    expect(busy).to.be.at.least(held.length);
    const left = await Promise.all(users.map((u) => h.probe.redis.exists(h.probe.keys.account(u))));
    expect(left.filter((n) => n === 1).length, 'accounts still in Redis: the held ones').to.equal(held.length);
    await h.assertInvariant(users.slice(5, 25));
  });
});
