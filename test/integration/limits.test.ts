import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';
import { startWorkers } from '../../src/workers/workers.js';
import {
  account,
  assertGrantsAgree,
  CHECK,
  commitPath,
  createGrant,
  DEDUCT,
  LIMITS,
  put,
  releasePath,
  RESERVE,
} from '../support/money.js';

/*
 * Spending limits (SPEC 14, issue #14 part 3): per business day and month, on what deducts and holds
 * take from grants and the balance; refusal 402 / 10011; check says limit_reached; reset by period.
 */
const SERVICES = [
  { name: 'metered', free_quota: 3, unit_price: '0.01' },
  { name: 'tokens', free_quota: 0, unit_price: '0.01' },
];

/** A whole number of cents as the service writes it (2 fractional digits). */
const cents = (n: number) => `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`;
const limitsOf = async (h: Harness, user: string) => (await h.get(LIMITS, { user_id: user })).body.data;

describe('spending limits', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('sets, shows and removes limits; a new user has none', async () => {
    const user = h.user('crud');
    expect(await limitsOf(h, user)).to.deep.equal({
      userId: user,
      daily: null,
      monthly: null,
      spentToday: '0.00',
      spentThisMonth: '0.00',
    });
    const set = await put(h, LIMITS, { user_id: user, daily: '1.5', monthly: 20 });
    expect(set.status, JSON.stringify(set.body)).to.equal(200);
    expect(set.body.data).to.deep.equal({
      userId: user,
      daily: '1.50',
      monthly: '20.00',
      spentToday: '0.00',
      spentThisMonth: '0.00',
    });
    expect(await limitsOf(h, user)).to.deep.equal(set.body.data);
    // Twice, and concurrently: the same answer each time.
    const again = await Promise.all([1, 2, 3].map(() => put(h, LIMITS, { user_id: user, daily: '1.5', monthly: 20 })));
    for (const a of again) expect(a.body.data).to.deep.equal(set.body.data);
    // A field left out stays; null removes.
    const daily = await put(h, LIMITS, { userId: user, daily: null });
    expect(daily.body.data).to.include({ daily: null, monthly: '20.00' });
    const none = await put(h, LIMITS, { user_id: user, monthly: null });
    expect(none.body.data).to.include({ daily: null, monthly: null });
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('refuses a deduct past the daily limit with 10011, changes nothing, and check says limit_reached', async () => {
    const user = h.user('daily');
    await seedBalance(h, user, 10_000_000n);
    await put(h, LIMITS, { user_id: user, daily: '0.05' });
    // Free calls take nothing from the balance: they do not count.
    const free = await h.post(DEDUCT, { request_id: 'f', user_id: user, service_name: 'metered', count: 3 });
    expect(free.body.data).to.include({ freeCount: 3, amount: '0.00' });
    const four = await h.post(DEDUCT, { request_id: 'p1', user_id: user, service_name: 'tokens', count: 4 });
    expect(four.body.data).to.include({ amount: '0.04', balance: '9.96' });
    // 0.04 + 0.02 would pass 0.05: refused whole.
    const before = await account(h, user);
    const over = await h.post(DEDUCT, { request_id: 'p2', user_id: user, service_name: 'tokens', count: 2 });
    expect([over.status, over.body.code, over.body.success]).to.deep.equal([402, 10011, false]);
    expect(await account(h, user)).to.deep.equal(before);
    const check = await h.post(CHECK, { user_id: user, service_name: 'tokens', count: 2 });
    expect(check.body.data).to.include({ allowed: false, reason: 'limit_reached' });
    expect((await h.post(CHECK, { user_id: user, service_name: 'tokens' })).body.data).to.include({ allowed: true });
    // A refused request_id is not remembered: once the limit is raised it goes through.
    await put(h, LIMITS, { user_id: user, daily: '1.00' });
    const retried = await h.post(DEDUCT, { request_id: 'p2', user_id: user, service_name: 'tokens', count: 2 });
    expect(retried.body.data).to.include({ amount: '0.02', duplicate: false });
    expect(await limitsOf(h, user)).to.include({ spentToday: '0.06', spentThisMonth: '0.06' });
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(3);
    await h.assertInvariant([user]);
  });

  it('counts what grants pay, and caps monthly as daily', async () => {
    const user = h.user('monthly');
    await seedBalance(h, user, 1_000_000n);
    await createGrant(h, user, { grant_id: 'g', amount: '0.50', category: 'promotional' });
    await put(h, LIMITS, { user_id: user, monthly: '0.30' });
    const paid = await h.post(DEDUCT, { request_id: 'a', user_id: user, service_name: 'tokens', count: 30 });
    expect(paid.body.data).to.include({ amount: '0.30', balance: '1.20' });
    const over = await h.post(DEDUCT, { request_id: 'b', user_id: user, service_name: 'tokens' });
    expect([over.status, over.body.code]).to.deep.equal([402, 10011]);
    expect(await limitsOf(h, user)).to.include({ spentToday: '0.30', spentThisMonth: '0.30', monthly: '0.30' });
    await h.drain();
    await assertGrantsAgree(h, [user]);
  });

  it('lets exactly 50 of 200 concurrent deducts through a daily limit for 50 calls, and a replay counts once', async () => {
    const user = h.user('crowd');
    await seedBalance(h, user, 100_000_000n);
    await put(h, LIMITS, { user_id: user, daily: '0.50' });
    const same = { request_id: 'same', user_id: user, service_name: 'tokens', count: 5 };
    const answers = await Promise.all([
      ...Array.from({ length: 10 }, () => h.post(DEDUCT, same)),
      ...Array.from({ length: 190 }, (_, i) =>
        h.post(DEDUCT, { request_id: `c${i}`, user_id: user, service_name: 'tokens' }),
      ),
    ]);
    const replays = answers.slice(0, 10);
    expect(replays.map((a) => a.status)).to.deep.equal(replays.map(() => 200));
    expect(replays.filter((a) => !a.body.data.duplicate)).to.have.length(1);
    const ones = answers.slice(10);
    expect(ones.filter((a) => a.status === 200)).to.have.length(45);
    expect(ones.filter((a) => a.status === 402 && a.body.code === 10011)).to.have.length(145);
    expect(await limitsOf(h, user)).to.include({ spentToday: '0.50' });
    expect((await account(h, user)).balance).to.equal('99.50');
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(46);
    await h.assertInvariant([user]);
  });

  it('counts a hold when made and gives its unused part back; concurrent holds and deducts never pass the cap', async () => {
    const user = h.user('holds');
    await seedBalance(h, user, 100_000_000n);
    await put(h, LIMITS, { user_id: user, daily: '1.00' });
    const hold = await h.post(RESERVE, { request_id: 'h', user_id: user, service_name: 'tokens', count: 60 });
    expect(hold.status, JSON.stringify(hold.body)).to.equal(200);
    expect(await limitsOf(h, user)).to.include({ spentToday: '0.60' });
    const over = await h.post(RESERVE, { request_id: 'h2', user_id: user, service_name: 'tokens', count: 41 });
    expect([over.status, over.body.code]).to.deep.equal([402, 10011]);
    await h.post(commitPath(hold.body.data.reservationId), { count: 20 });
    expect(await limitsOf(h, user)).to.include({ spentToday: '0.20' });

    // 0.80 left: 80 holds and deducts of one call each out of 200 get through.
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2
          ? h.post(DEDUCT, { request_id: `d${i}`, user_id: user, service_name: 'tokens' })
          : h.post(RESERVE, { request_id: `r${i}`, user_id: user, service_name: 'tokens', count: 1 }),
      ),
    );
    expect(answers.filter((a) => a.status === 200)).to.have.length(80);
    expect(answers.filter((a) => a.status === 402 && a.body.code === 10011)).to.have.length(120);
    expect(await limitsOf(h, user)).to.include({ spentToday: '1.00' });
    const holds = answers.filter((a, i) => i % 2 === 0 && a.status === 200);
    await Promise.all(holds.map((a) => h.post(releasePath(a.body.data.reservationId), {})));
    const deducted = answers.filter((a, i) => i % 2 === 1 && a.status === 200).length;
    expect(await limitsOf(h, user)).to.include({ spentToday: cents(20 + deducted) });
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('refuses batch items past the limit one by one', async () => {
    const user = h.user('batch');
    await seedBalance(h, user, 1_000_000n);
    await put(h, LIMITS, { user_id: user, daily: '0.05' });
    const items = Array.from({ length: 8 }, (_, i) => ({ request_id: `b${i}`, user_id: user, service_name: 'tokens' }));
    const r = await h.post('/internal/v1/billing/deduct/batch', { items });
    expect(r.status).to.equal(200);
    expect(r.body.data.results.map((x: any) => x.ok || x.code)).to.deep.equal([
      ...Array.from({ length: 5 }, () => true),
      ...Array.from({ length: 3 }, () => 10011),
    ]);
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('refuses hostile limits with 400 40000 and changes nothing', async () => {
    const user = h.user('hostile');
    await put(h, LIMITS, { user_id: user, daily: '1.00', monthly: '5.00' });
    const before = await limitsOf(h, user);
    const bad: unknown[] = [
      { user_id: user, daily: '-1.00' },
      { user_id: user, daily: -1 },
      { user_id: user, daily: '1.0000001' },
      { user_id: user, monthly: 0.0000001 },
      { user_id: user, daily: '1e3' },
      { user_id: user, daily: '9'.repeat(40) },
      { user_id: user, monthly: 1e308 },
      { user_id: user, daily: 'NaN' },
      { user_id: user, daily: ' 1.00' },
      { user_id: user, daily: '1,00' },
      { user_id: user, daily: [] },
      { user_id: user, daily: true },
      { user_id: user, daily: '1.00', extra: 1 },
      { daily: '1.00' },
      { user_id: '', daily: '1.00' },
      { user_id: 'a b', daily: '1.00' },
      { user_id: 'x'.repeat(65), daily: '1.00' },
      { user_id: '用户', daily: '1.00' },
      'null',
      '[]',
      '{',
    ];
    const problems: string[] = [];
    for (const body of bad) {
      const r = await put(h, LIMITS, body);
      if (r.status !== 400 || r.body.code !== 40000)
        problems.push(`${JSON.stringify(body).slice(0, 60)}: ${r.status} ${r.body.code}`);
    }
    for (const q of [{}, { user_id: '' }, { user_id: 'a b' }, { user_id: 'x'.repeat(65) }] as Record<
      string,
      string
    >[]) {
      const r = await h.get(LIMITS, q);
      if (r.status !== 400 || r.body.code !== 40000)
        problems.push(`GET ${JSON.stringify(q)}: ${r.status} ${r.body.code}`);
    }
    const noAuth = await put(h, LIMITS, { user_id: user, daily: null }, { authorization: 'Bearer nope' });
    if (noAuth.status !== 401) problems.push(`bad token: ${noAuth.status}`);
    expect(problems).to.deep.equal([]);
    expect(await limitsOf(h, user)).to.deep.equal(before);
    await h.drain();
    await h.assertInvariant([user]);
  });
});

describe('spending limits by business day and month', function () {
  this.timeout(120_000);
  it('resets the day at midnight in the business time zone and the month on its first day', async () => {
    // 23:30 on 30 November in Asia/Shanghai (the default business time zone).
    const clock = new FakeClock(new Date('2026-11-30T15:30:00Z'));
    const h = await startHarness({ clock, overrides: { services: SERVICES } });
    try {
      const user = h.user('periods');
      await seedBalance(h, user, 10_000_000n);
      await put(h, LIMITS, { user_id: user, daily: '0.10', monthly: '0.15' });
      expect(
        (await h.post(DEDUCT, { request_id: 'a', user_id: user, service_name: 'tokens', count: 10 })).status,
      ).to.equal(200);
      expect((await h.post(DEDUCT, { request_id: 'b', user_id: user, service_name: 'tokens' })).body.code).to.equal(
        10011,
      );
      // 23:59 the same day: still today.
      clock.set('2026-11-30T15:59:00Z');
      expect((await h.post(DEDUCT, { request_id: 'c', user_id: user, service_name: 'tokens' })).body.code).to.equal(
        10011,
      );
      // 00:30 on 1 December: a new day and a new month.
      clock.set('2026-11-30T16:30:00Z');
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.00', spentThisMonth: '0.00' });
      expect(
        (await h.post(DEDUCT, { request_id: 'd', user_id: user, service_name: 'tokens', count: 10 })).status,
      ).to.equal(200);
      // The next day: the daily limit has room, the month's does not past 0.15.
      clock.set('2026-12-01T16:30:00Z');
      expect(
        (await h.post(DEDUCT, { request_id: 'e', user_id: user, service_name: 'tokens', count: 6 })).body.code,
      ).to.equal(10011);
      expect(
        (await h.post(DEDUCT, { request_id: 'f', user_id: user, service_name: 'tokens', count: 5 })).status,
      ).to.equal(200);
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.05', spentThisMonth: '0.15' });
      const check = await h.post(CHECK, { user_id: user, service_name: 'tokens' });
      expect(check.body.data).to.include({ allowed: false, reason: 'limit_reached' });
      await h.drain();
      await h.assertInvariant([user]);
    } finally {
      await h.stop();
    }
  });

  it('gives a hold back to the day and month it was counted in, also when it ends the next day or by expiry', async () => {
    // 23:50 on 30 November in Asia/Shanghai.
    const clock = new FakeClock(new Date('2026-11-30T15:50:00Z'));
    const h = await startHarness({ clock, roles: ['api'], overrides: { services: SERVICES } });
    try {
      const user = h.user('hold-days');
      await seedBalance(h, user, 10_000_000n);
      await put(h, LIMITS, { user_id: user, daily: '0.10', monthly: '1.00' });
      const hold = await h.post(RESERVE, {
        request_id: 'h',
        user_id: user,
        service_name: 'tokens',
        count: 10,
        ttl_seconds: 3600,
      });
      expect(hold.status, JSON.stringify(hold.body)).to.equal(200);
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.10', spentThisMonth: '0.10' });
      // 00:10 on 1 December: released now, it gives back to 30 November, not to today.
      clock.set('2026-11-30T16:10:00Z');
      await h.post(releasePath(hold.body.data.reservationId), {});
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.00', spentThisMonth: '0.00' });
      const over = await h.post(DEDUCT, { request_id: 'o', user_id: user, service_name: 'tokens', count: 11 });
      expect([over.status, over.body.code], 'the day allows 0.10, no more').to.deep.equal([402, 10011]);
      // A hold that expires gives its amount back as a release does.
      const short = await h.post(RESERVE, {
        request_id: 's',
        user_id: user,
        service_name: 'tokens',
        count: 10,
        ttl_seconds: 60,
      });
      expect(short.status).to.equal(200);
      expect((await h.post(DEDUCT, { request_id: 'x', user_id: user, service_name: 'tokens' })).body.code).to.equal(
        10011,
      );
      clock.set('2026-11-30T16:12:00Z');
      await h.probe.reservations.expireDue();
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.00' });
      const ok = await h.post(DEDUCT, { request_id: 'y', user_id: user, service_name: 'tokens', count: 10 });
      expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
      expect(await limitsOf(h, user)).to.include({ spentToday: '0.10', spentThisMonth: '0.10' });
      const workers = startWorkers(h.probe.workers, ['persistence']);
      try {
        await h.drain();
      } finally {
        await workers.close();
      }
      await h.assertInvariant([user]);
    } finally {
      await h.stop();
    }
  });
});
