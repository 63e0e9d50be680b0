import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';

const DEDUCT = '/internal/v1/billing/deduct';

describe('records and statistics', function () {
  let h: Harness;
  const clock = new FakeClock(new Date('2026-11-01T02:00:00Z')); // 10:00 on 1 Nov in Asia/Shanghai
  let user: string;

  before(async function () {
    this.timeout(120_000);
    h = await startHarness({
      clock,
      overrides: {
        services: [
          { name: 'passport', free_quota: 5, unit_price: '0.001' },
          { name: 'asset', free_quota: 0, unit_price: '0.25' },
        ],
      },
    });
    user = h.user('stats');
    await seedBalance(h, user, 100_000_000n);
    // Day 1: 4 passport calls (free), day 2: 3 passport (1 free, 2 paid) + 2 asset, day 3: 1 asset of count 4.
    let n = 0;
    const call = (service: string, count = 1) =>
      h.post(DEDUCT, { request_id: `s${n++}`, user_id: user, service_name: service, count });
    for (let i = 0; i < 4; i++) await call('passport');
    clock.set('2026-11-02T15:59:59.900Z'); // 23:59:59.9 on 2 Nov in Shanghai
    for (let i = 0; i < 3; i++) await call('passport');
    await call('asset');
    await call('asset');
    clock.set('2026-11-02T16:00:00.100Z'); // 00:00:00.1 on 3 Nov in Shanghai
    await call('asset', 4);
    await h.drain();
  });
  after(() => h.stop());

  it('lists records newest first with page and page_size, and filters by service and type', async () => {
    const all = await h.get('/api/v1/billing/records', { user_id: user, page_size: 100 });
    expect(all.body.data.total).to.equal(10);
    const recs = all.body.data.records;
    expect(recs[0]).to.include({ serviceName: 'asset', type: 'balance', count: 4, paidCount: 4, amount: '1.00' });
    expect(recs[0].createdAt).to.equal('2026-11-02T16:00:00.100Z');
    const times = recs.map((r: any) => r.createdAt);
    expect([...times].sort().reverse()).to.deep.equal(times);

    const page2 = await h.get('/api/v1/billing/records', { user_id: user, page: 2, page_size: 3 });
    expect(page2.body.data.records.map((r: any) => r.id)).to.deep.equal(recs.slice(3, 6).map((r: any) => r.id));
    expect(page2.body.data).to.include({ page: 2, pageSize: 3, total: 10 });

    const mixed = await h.get('/api/v1/billing/records', { user_id: user, type: 'mixed' });
    expect(mixed.body.data.total).to.equal(0);
    const paidPassport = await h.get('/api/v1/billing/records', {
      user_id: user,
      service_name: 'passport',
      type: 'balance',
    });
    expect(paidPassport.body.data.total).to.equal(2);
    const day2 = await h.get('/api/v1/billing/records', { user_id: user, from: '2026-11-02', to: '2026-11-02' });
    expect(day2.body.data.total).to.equal(5);
  });

  it('walks every record exactly once by cursor', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await h.get('/api/v1/billing/records', { user_id: user, page_size: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...r.body.data.records.map((x: any) => x.id));
      cursor = r.body.data.nextCursor ?? undefined;
      if (!cursor) break;
    }
    const all = await h.get('/api/v1/billing/records', { user_id: user, page_size: 100 });
    expect(seen).to.deep.equal(all.body.data.records.map((x: any) => x.id));
  });

  it('gives today, this month, the summary and one row per day, in the business time zone', async () => {
    clock.set('2026-11-03T01:00:00Z');
    const today = await h.get('/api/v1/billing/stats/today', { user_id: user });
    expect(today.body.data).to.include({
      period: 'today',
      totalCount: 4,
      freeCount: 0,
      paidCount: 4,
      totalCost: '1.00',
    });
    const todayPassport = await h.get('/api/v1/billing/stats/today', { user_id: user, service_name: 'passport' });
    expect(todayPassport.body.data).to.include({ totalCount: 0, totalCost: '0.00' });
    const month = await h.get('/api/v1/billing/stats/month', { user_id: user });
    expect(month.body.data).to.include({
      period: 'month',
      totalCount: 13,
      freeCount: 5,
      paidCount: 8,
      totalCost: '1.502',
    });
    const summary = await h.get('/api/v1/billing/stats/summary', { user_id: user });
    expect(summary.body.data).to.deep.include({ totalCount: 13, totalCost: '1.502' });
    expect(summary.body.data.services).to.deep.equal([
      { serviceName: 'asset', totalCount: 6, freeCount: 0, paidCount: 6, totalCost: '1.50' },
      { serviceName: 'passport', totalCount: 7, freeCount: 5, paidCount: 2, totalCost: '0.002' },
    ]);
    const daily = await h.get('/api/v1/billing/stats/daily', { user_id: user, from: '2026-10-31', to: '2026-11-04' });
    expect(daily.body.data.days.map((d: any) => [d.day, d.totalCount, d.totalCost])).to.deep.equal([
      ['2026-10-31', 0, '0.00'],
      ['2026-11-01', 4, '0.00'],
      ['2026-11-02', 5, '0.502'],
      ['2026-11-03', 4, '1.00'],
      ['2026-11-04', 0, '0.00'],
    ]);
  });

  it('counts a call at 23:59:59.9 on the last day of a month and one at 00:00:00.1 against different months', async () => {
    const u = h.user('boundary');
    clock.set('2026-11-30T15:59:59.900Z'); // 23:59:59.9, 30 Nov, Shanghai
    await h.post(DEDUCT, { request_id: 'b1', user_id: u, service_name: 'passport', count: 5 });
    const nov = await h.post('/internal/v1/billing/check', { user_id: u, service_name: 'passport' });
    expect(nov.body.data).to.include({ freeRemaining: 0, reason: 'insufficient_balance' });
    clock.set('2026-11-30T16:00:00.100Z'); // 00:00:00.1, 1 Dec, Shanghai
    const dec = await h.post(DEDUCT, { request_id: 'b2', user_id: u, service_name: 'passport' });
    expect(dec.body.data).to.include({ freeCount: 1, paidCount: 0 });
    const acct = await h.get('/api/v1/billing/account', { user_id: u });
    expect(acct.body.data.quotas.find((q: any) => q.serviceName === 'passport')).to.deep.equal({
      serviceName: 'passport',
      totalQuota: 5,
      usedQuota: 1,
      remainingQuota: 4,
      period: '2026-12',
    });
    await h.drain();
    const rows = await h.probe.db('quota_usage').where({ user_id: u }).orderBy('period').select('period', 'used');
    expect(rows).to.deep.equal([
      { period: '202611', used: '5' },
      { period: '202612', used: '1' },
    ]);
    await h.assertInvariant([u]);
  });
});

describe('quota period housekeeping', function () {
  it('deletes quota hashes older than the previous month, keeps the rest, and does nothing the second time', async function () {
    this.timeout(60_000);
    const clock = new FakeClock(new Date('2026-12-01T16:30:00Z')); // 00:30 on 2 Dec, Shanghai
    const h = await startHarness({ clock, roles: ['api'] });
    try {
      const probe = h.probe;
      const u = h.user('prune');
      for (const p of ['202609', '202610', '202611', '202612'])
        await probe.redis.hset(probe.keys.quota(u, p), 'passport', '1');
      expect(await probe.accounts.prunePeriods()).to.equal(2);
      expect(await probe.accounts.prunePeriods()).to.equal(0);
      for (const [p, n] of [
        ['202609', 0],
        ['202610', 0],
        ['202611', 1],
        ['202612', 1],
      ] as const)
        expect(await probe.redis.exists(probe.keys.quota(u, p)), p).to.equal(n);
    } finally {
      await h.stop();
    }
  });
});

describe('persistence sweep', function () {
  it('re-enqueues a change whose job was lost between the script and the enqueue', async function () {
    this.timeout(60_000);
    const h = await startHarness({ roles: ['api'] });
    try {
      const probe = h.probe;
      const user = h.user('lost');
      await seedBalance(h, user, 10_000_000n);
      for (let i = 0; i < 5; i++)
        await h.post(DEDUCT, { request_id: `l${i}`, user_id: user, service_name: 'passport', count: 3000 });
      await probe.persistence.drainBuffer();
      // The crash: every queued persistence job is gone; only the journal in Redis remains.
      await probe.queues.queueOf('persist-changes').obliterate({ force: true });
      expect(await probe.persistence.pendingCount()).to.equal(6);
      expect(await probe.persistence.sweep(60_000)).to.equal(0); // too young to sweep
      expect(await probe.persistence.sweep(0)).to.equal(6);
      const { startWorkers } = await import('../../src/workers/workers.js');
      const workers = startWorkers(probe.workers);
      try {
        await h.drain();
      } finally {
        await workers.close();
      }
      expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(5);
      await h.assertInvariant([user]);
    } finally {
      await h.stop();
    }
  });
});
