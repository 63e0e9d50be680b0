import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { admin, account, CHECK, commitPath, DEDUCT, micros, pricingPath, put, RESERVE } from '../support/money.js';

/*
 * Per-user pricing (SPEC 14, issue #14 part 4): free quota and unit price per user and service, used
 * atomically by check, deduct and reserve; each record carries the price it was charged at; an
 * override takes effect from the next call on, never within one.
 */
const SERVICES = [
  { name: 'metered', free_quota: 2, unit_price: '0.01' },
  { name: 'tokens', free_quota: 0, unit_price: '0.01' },
  { name: 'freebie', free_quota: 1, unit_price: null },
];

const pricingOf = async (h: Harness, user: string): Promise<any[]> => {
  const r = await h.get(pricingPath(user), {}, admin);
  expect(r.status, JSON.stringify(r.body)).to.equal(200);
  return r.body.data.pricing.map((p: Record<string, unknown>) => ({
    serviceName: p.serviceName,
    freeQuota: p.freeQuota,
    unitPrice: p.unitPrice,
    overridden: p.overridden,
  }));
};
const override = async (h: Harness, user: string, service: string, body: Record<string, unknown>) => {
  const r = await put(h, pricingPath(user, service), body, admin);
  expect(r.status, JSON.stringify(r.body)).to.equal(200);
  return r.body.data;
};
const recordsOf = async (h: Harness, user: string): Promise<any[]> =>
  (await h.get('/api/v1/billing/records', { user_id: user, page_size: 100 })).body.data.records;

describe('per-user pricing', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('shows the catalogue until overridden, then charges the user’s price and records it', async () => {
    const user = h.user('price');
    const other = h.user('other');
    await seedBalance(h, user, 1_000_000n);
    await seedBalance(h, other, 1_000_000n);
    expect(await pricingOf(h, user)).to.have.deep.members([
      { serviceName: 'metered', freeQuota: 2, unitPrice: '0.01', overridden: false },
      { serviceName: 'tokens', freeQuota: 0, unitPrice: '0.01', overridden: false },
      { serviceName: 'freebie', freeQuota: 1, unitPrice: null, overridden: false },
    ]);
    const before = await h.post(DEDUCT, { request_id: 'b', user_id: user, service_name: 'tokens', count: 3 });
    expect(before.body.data).to.include({ amount: '0.03' });
    const set = await override(h, user, 'tokens', { unit_price: '0.025' });
    expect(set).to.include({ userId: user, serviceName: 'tokens', freeQuota: 0, unitPrice: '0.025' });
    // Twice and concurrently: the same answer.
    const again = await Promise.all(
      [1, 2, 3].map(() => put(h, pricingPath(user, 'tokens'), { unitPrice: '0.025' }, admin)),
    );
    for (const a of again) expect(a.body.data).to.deep.equal(set);
    expect((await pricingOf(h, user)).find((p) => p.serviceName === 'tokens')).to.deep.equal({
      serviceName: 'tokens',
      freeQuota: 0,
      unitPrice: '0.025',
      overridden: true,
    });
    // 0.97 at 0.025 a call: 38 calls, not 39.
    const check = await h.post(CHECK, { user_id: user, service_name: 'tokens', count: 38 });
    expect(check.body.data).to.include({ allowed: true, balance: '0.97' });
    expect((await h.post(CHECK, { user_id: user, service_name: 'tokens', count: 39 })).body.data).to.include({
      allowed: false,
      reason: 'insufficient_balance',
    });
    const after = await h.post(DEDUCT, { request_id: 'a', user_id: user, service_name: 'tokens', count: 4 });
    expect(after.body.data).to.include({ paidCount: 4, amount: '0.10', balance: '0.87' });
    // Another user keeps the catalogue price, and the catalogue itself is unchanged.
    const theirs = await h.post(DEDUCT, { request_id: 'a', user_id: other, service_name: 'tokens', count: 4 });
    expect(theirs.body.data).to.include({ amount: '0.04' });
    const services = (await h.get('/api/v1/billing/services')).body.data;
    expect(JSON.stringify(services)).to.include('"unitPrice":"0.01"');
    await h.drain();
    const records = await recordsOf(h, user);
    expect(records.map((r) => [r.requestId, r.amount, r.unitPrice])).to.deep.equal([
      ['a', '0.10', '0.025'],
      ['b', '0.03', '0.01'],
    ]);
    const stored = await h.probe.db('consumption_records').where({ user_id: user }).orderBy('id');
    expect(stored.map((r: { unit_price: string | number }) => BigInt(r.unit_price))).to.deep.equal([10_000n, 25_000n]);
    // null takes the override away: the catalogue's price again, from the next call on.
    expect(await override(h, user, 'tokens', { unit_price: null })).to.include({ unitPrice: '0.01', freeQuota: 0 });
    expect((await pricingOf(h, user)).find((p) => p.serviceName === 'tokens')).to.include({ overridden: false });
    const back = await h.post(DEDUCT, { request_id: 'c', user_id: user, service_name: 'tokens', count: 4 });
    expect(back.body.data).to.include({ amount: '0.04', balance: '0.83' });
    await h.drain();
    await h.assertInvariant([user, other]);
  });

  it('gives the user’s free quota in /account, check and deduct, and prices a free-only service for one user', async () => {
    const user = h.user('quota');
    await seedBalance(h, user, 1_000_000n);
    const set = await override(h, user, 'metered', { free_quota: 5 });
    expect(set).to.include({ freeQuota: 5, unitPrice: '0.01' });
    const quota = (await account(h, user)).quotas.find((q: { serviceName: string }) => q.serviceName === 'metered');
    expect(quota).to.include({ totalQuota: 5, usedQuota: 0, remainingQuota: 5 });
    expect((await h.post(CHECK, { user_id: user, service_name: 'metered' })).body.data).to.include({
      reason: 'free',
      freeRemaining: 5,
    });
    const d = await h.post(DEDUCT, { request_id: 'q1', user_id: user, service_name: 'metered', count: 6 });
    expect(d.body.data).to.include({ freeCount: 5, paidCount: 1, amount: '0.01' });
    // Lowered below what is used: nothing free is left, nothing is taken back.
    await override(h, user, 'metered', { free_quota: 1 });
    const q2 = await h.post(DEDUCT, { request_id: 'q2', user_id: user, service_name: 'metered' });
    expect(q2.body.data).to.include({ freeCount: 0, paidCount: 1 });
    expect(
      (await account(h, user)).quotas.find((q: { serviceName: string }) => q.serviceName === 'metered'),
    ).to.include({
      totalQuota: 1,
      remainingQuota: 0,
    });
    // A free-only service past its quota: refused with 10002, unless this user has a price for it.
    await h.post(DEDUCT, { request_id: 'f1', user_id: user, service_name: 'freebie' });
    const refused = await h.post(DEDUCT, { request_id: 'f2', user_id: user, service_name: 'freebie' });
    expect([refused.status, refused.body.code]).to.deep.equal([402, 10002]);
    await override(h, user, 'freebie', { unit_price: '0.05' });
    const priced = await h.post(DEDUCT, { request_id: 'f2', user_id: user, service_name: 'freebie' });
    expect(priced.body.data).to.include({ paidCount: 1, amount: '0.05' });
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('charges each of 200 deducts racing a price change at one price, and every call after the change at the new one', async () => {
    const user = h.user('race');
    await seedBalance(h, user, 100_000_000n);
    const call = (i: number) =>
      h.post(DEDUCT, { request_id: `r${i}`, user_id: user, service_name: 'tokens', count: 3 });
    const early = Array.from({ length: 100 }, (_, i) => call(i));
    const change = override(h, user, 'tokens', { unit_price: '0.07' });
    const middle = Array.from({ length: 50 }, (_, i) => call(100 + i));
    await change;
    const late = await Promise.all(Array.from({ length: 50 }, (_, i) => call(150 + i)));
    const answers = [...(await Promise.all([...early, ...middle])), ...late];
    expect(answers.map((a) => a.status)).to.deep.equal(answers.map(() => 200));
    for (const a of answers) expect(['0.03', '0.21'], JSON.stringify(a.body.data)).to.include(a.body.data.amount);
    for (const a of late) expect(a.body.data.amount, 'a call after the change').to.equal('0.21');
    const total = answers.reduce((s, a) => s + micros(a.body.data.amount), 0n);
    expect(micros((await account(h, user)).balance)).to.equal(100_000_000n - total);
    await h.drain();
    const records = await h.probe.db('consumption_records').where({ user_id: user });
    expect(records).to.have.length(200);
    for (const r of records as { request_id: string; amount: string; unit_price: string }[]) {
      expect([10_000n, 70_000n]).to.deep.include(BigInt(r.unit_price));
      expect(BigInt(r.amount), r.request_id).to.equal(3n * BigInt(r.unit_price));
      const answered = answers[Number(r.request_id.slice(1))].body.data.amount;
      expect(micros(answered), `answer vs record of ${r.request_id}`).to.equal(BigInt(r.amount));
    }
    await h.assertInvariant([user]);
  });

  it('commits a hold at the price it was made at', async () => {
    const user = h.user('hold');
    await seedBalance(h, user, 1_000_000n);
    const hold = await h.post(RESERVE, { request_id: 'h', user_id: user, service_name: 'tokens', count: 10 });
    expect(hold.body.data).to.include({ heldAmount: '0.10' });
    await override(h, user, 'tokens', { unit_price: '0.03' });
    const commit = await h.post(commitPath(hold.body.data.reservationId), { count: 5 });
    expect(commit.body.data).to.include({ amount: '0.05', releasedAmount: '0.05', balance: '0.95' });
    const hold2 = await h.post(RESERVE, { request_id: 'h2', user_id: user, service_name: 'tokens', count: 10 });
    expect(hold2.body.data).to.include({ heldAmount: '0.30' });
    await h.post(commitPath(hold2.body.data.reservationId), { count: 10 });
    await h.drain();
    expect((await recordsOf(h, user)).map((r) => [r.amount, r.unitPrice])).to.deep.equal([
      ['0.30', '0.03'],
      ['0.05', '0.01'],
    ]);
    await h.assertInvariant([user]);
  });

  it('refuses hostile pricing input with 400 and a code, and changes nothing', async () => {
    const user = h.user('hostile');
    await override(h, user, 'tokens', { unit_price: '0.02', free_quota: 3 });
    const before = await pricingOf(h, user);
    const cases: [string, string, unknown, number][] = [
      [user, 'tokens', { unit_price: '-0.01' }, 40000],
      [user, 'tokens', { unit_price: -1 }, 40000],
      [user, 'tokens', { unit_price: '0.0000001' }, 40000],
      [user, 'tokens', { unit_price: 0.0000001 }, 40000],
      [user, 'tokens', { unit_price: '1e3' }, 40000],
      [user, 'tokens', { unit_price: '9'.repeat(40) }, 40000],
      [user, 'tokens', { unit_price: 1e308 }, 40000],
      [user, 'tokens', { unit_price: 'NaN' }, 40000],
      [user, 'tokens', { unit_price: ' 0.01' }, 40000],
      [user, 'tokens', { unit_price: [] }, 40000],
      [user, 'tokens', { free_quota: -1 }, 40000],
      [user, 'tokens', { free_quota: 1.5 }, 40000],
      [user, 'tokens', { free_quota: '5x' }, 40000],
      [user, 'tokens', { free_quota: 1e12 }, 40000],
      [user, 'tokens', { free_quota: 3, extra: 1 }, 40000],
      [user, 'tokens', 'null', 40000],
      [user, 'tokens', '[]', 40000],
      [user, 'nope', { unit_price: '0.01' }, 10006],
      [user, 'TOKENS', { unit_price: '0.01' }, 10006],
      ['a b', 'tokens', { unit_price: '0.01' }, 40000],
      ['x'.repeat(65), 'tokens', { unit_price: '0.01' }, 40000],
      ['用户', 'tokens', { unit_price: '0.01' }, 40000],
    ];
    const problems: string[] = [];
    for (const [u, service, body, code] of cases) {
      const r = await put(h, pricingPath(u, service), body, admin);
      if (r.status !== 400 || r.body.code !== code)
        problems.push(`${u.slice(0, 10)}/${service} ${JSON.stringify(body).slice(0, 40)}: ${r.status} ${r.body.code}`);
    }
    for (const u of ['a b', 'x'.repeat(65)]) {
      const r = await h.get(pricingPath(u), {}, admin);
      if (r.status !== 400 || r.body.code !== 40000) problems.push(`GET ${u.slice(0, 10)}: ${r.status} ${r.body.code}`);
    }
    const gateway = await put(h, pricingPath(user, 'tokens'), { unit_price: '0' });
    if (gateway.status !== 401) problems.push(`gateway token on an admin route: ${gateway.status}`);
    expect(problems).to.deep.equal([]);
    expect(await pricingOf(h, user)).to.deep.equal(before);
    await h.drain();
    await h.assertInvariant([user]);
  });
});
