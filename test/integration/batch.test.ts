import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { formatMoney } from '../../src/lib/money.js';
import { REPORTED_DETAILS } from '../../src/api/validation.js';

const DEDUCT_BATCH = '/internal/v1/billing/deduct/batch';
const CHECK_BATCH = '/internal/v1/billing/check/batch';

describe('batch deducts and checks over HTTP (SPEC 12)', function () {
  this.timeout(180_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({
      overrides: {
        max_batch_items: 50,
        services: [
          { name: 'passport', free_quota: 3, unit_price: '0.001' },
          { name: 'asset', free_quota: 2, unit_price: '0.5' },
        ],
      },
    });
  });
  after(() => h.stop());

  const account = async (user: string) => (await h.get('/api/v1/billing/account', { user_id: user })).body.data;

  it('answers each item in order: refused items change and stop nothing; a replay charges nothing', async () => {
    const a = h.user('mixA');
    const b = h.user('mixB');
    await seedBalance(h, b, 500_000n);
    const items = [
      { request_id: 'r1', user_id: a, service_name: 'passport' },
      { request_id: 'r2', user_id: a, service_name: 'passport', count: 2 },
      { request_id: 'r3', user_id: a, service_name: 'passport' }, // free quota used up, no balance
      { requestId: 'b1', userId: b, serviceName: 'asset', count: 3 }, // camelCase, 2 free + 1 paid
      { request_id: 'r4', user_id: a, service_name: 'nope' },
      { request_id: 'r1', user_id: a, service_name: 'passport' }, // the first item again
      { request_id: 'r1', user_id: a, service_name: 'passport', count: 2 }, // r1 with another payload
      { request_id: 'b2', user_id: b, service_name: 'asset' }, // balance used up by b1
    ];
    const res = await h.post(DEDUCT_BATCH, { items });
    expect(res.status).to.equal(200);
    const results = res.body.data.results;
    expect(results.map((r: any) => [r.index, r.ok, r.code ?? null])).to.deep.equal([
      [0, true, null],
      [1, true, null],
      [2, false, 10001],
      [3, true, null],
      [4, false, 10006],
      [5, true, null],
      [6, false, 10007],
      [7, false, 10001],
    ]);
    expect(results[0]).to.include({ requestId: 'r1', freeCount: 1, duplicate: false });
    expect(results[5]).to.include({ recordId: results[0].recordId, duplicate: true });
    expect(results[3]).to.include({ freeCount: 2, paidCount: 1, amount: '0.50', balance: '0.00' });
    expect(results[2].message).to.contain('insufficient balance');

    const before = [await account(a), await account(b)];
    const replay = await h.post(DEDUCT_BATCH, { items });
    expect(replay.status).to.equal(200);
    expect(replay.body.data.results.map((r: any) => [r.ok, r.code ?? null, r.recordId ?? null])).to.deep.equal(
      results.map((r: any) => [r.ok, r.code ?? null, r.recordId ?? null]),
    );
    for (const i of [0, 1, 3, 5]) expect(replay.body.data.results[i].duplicate).to.equal(true);
    expect([await account(a), await account(b)]).to.deep.equal(before);
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: a })).body.data.total).to.equal(2);
    expect((await h.get('/api/v1/billing/records', { user_id: b })).body.data.total).to.equal(1);
    await h.assertInvariant([a, b]);
  });

  it('refuses an invalid envelope whole, before any item runs', async () => {
    const user = h.user('envelope');
    const good = (i: number) => ({ request_id: `g${i}`, user_id: user, service_name: 'passport' });
    const bodies: unknown[] = [
      {},
      { items: 'nope' },
      { items: [] },
      { items: Array.from({ length: 51 }, (_, i) => good(i)) },
      { items: [good(0), { request_id: 'x', user_id: 'bad user!', service_name: 'passport' }] },
      { items: [good(0), { request_id: 'x', user_id: user, service_name: 'passport', count: 0 }] },
      { items: [good(0), { request_id: 'x', user_id: user, service_name: 'passport', count: '1' }] },
      { items: [good(0), null] },
      { items: [good(0), { request_id: 'x', user_id: user }] },
      { items: [good(0), { request_id: 'x', user_id: user, service_name: 'passport', count: 1e20 }] },
      [good(0)],
      'garbage',
    ];
    for (const body of bodies) {
      const res = await h.post(DEDUCT_BATCH, body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).to.equal(400);
      expect(res.body).to.include({ success: false, code: 40000 });
    }
    const malformed = await h.post(DEDUCT_BATCH, '{"items": [');
    expect(malformed.status).to.equal(400);
    const unauthenticated = await h.post(DEDUCT_BATCH, { items: [good(0)] }, { authorization: 'Bearer wrong' });
    expect(unauthenticated.status).to.equal(401);
    const huge = await h.post(DEDUCT_BATCH, JSON.stringify({ items: [good(0)], pad: 'x'.repeat(50 * 512) }));
    expect(huge.status).to.equal(413);
    expect((await account(user)).quotas[0].usedQuota).to.equal(0);
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(0);
  });

  it('counts the items before looking at any, and answers a body of bad items in bounded words', async () => {
    const user = h.user('bounded');
    const deduct = (i: number) => ({ request_id: `g${i}`, user_id: user, service_name: 'passport' });
    // Within the body limit (50 items x 512 bytes): far more items than a batch may hold, each one bad.
    const oversized = [
      `{"items":[${new Array(12_000).fill('0').join(',')}]}`,
      `{"items":[${new Array(8_000).fill('{}').join(',')}]}`,
      JSON.stringify({ items: [...Array.from({ length: 50 }, (_, i) => deduct(i)), ...new Array(3000).fill(null)] }),
    ];
    for (const path of [DEDUCT_BATCH, CHECK_BATCH]) {
      const good = (i: number) => {
        const { request_id: requestId, ...check } = deduct(i);
        return path === DEDUCT_BATCH ? { request_id: requestId, ...check } : check;
      };
      for (const body of oversized) {
        const res = await h.post(path, body);
        expect(res.status, body.slice(0, 40)).to.equal(400);
        expect(res.body).to.include({ success: false, code: 40000 });
        expect(res.body.details).to.deep.equal([
          { field: 'items', message: 'items must contain less than or equal to 50 items' },
        ]);
      }
      // Within the count, every item bad: the first REPORTED_DETAILS problems, in item order, and no more.
      const res = await h.post(path, { items: [good(0), ...new Array(49).fill({ ...good(1), user_id: 'bad user!' })] });
      expect(res.status).to.equal(400);
      const details = res.body.details ?? [];
      expect(details).to.have.length(REPORTED_DETAILS);
      expect(details[0].field).to.equal('items.1.user_id');
      expect(res.body.message).to.match(/^validation failed: items\.1\.user_id, .* \(the first 20 problems\)$/);
      // One bad item among good ones: named exactly, with its index.
      const one = await h.post(path, { items: [good(0), good(1), { ...good(2), count: 0 }] });
      expect(one.body.details).to.deep.equal([
        { field: 'items.2.count', message: 'count must be greater than or equal to 1' },
      ]);
    }
    expect((await account(user)).quotas[0].usedQuota).to.equal(0);
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(0);
    await h.assertInvariant([user]);
  });

  it('keeps SPEC 7 with 500 parallel batches against a balance for exactly 50 calls, replays included', async () => {
    const user = h.user('parallel');
    const other = h.user('parallel-other');
    await seedBalance(h, user, 47_000n); // 3 free + 47 paid passport calls
    const batches = Array.from({ length: 500 }, (_, b) => ({
      items: [
        { request_id: `p${b}`, user_id: user, service_name: 'passport' },
        { request_id: `o${b}`, user_id: other, service_name: 'passport' },
        { request_id: `p${(b + 1) % 500}`, user_id: user, service_name: 'passport' }, // another batch's item again
      ],
    }));
    const answers = await Promise.all(batches.map((body) => h.post(DEDUCT_BATCH, body)));
    const recordIds = new Set<string>();
    const accepted = new Set<string>();
    for (const res of answers) {
      expect(res.status).to.equal(200);
      for (const r of res.body.data.results) {
        if (r.ok && r.requestId.startsWith('p')) {
          recordIds.add(r.recordId);
          accepted.add(r.requestId);
        } else if (!r.ok) {
          expect(r.code).to.equal(10001);
        }
      }
    }
    expect(recordIds.size).to.equal(50);
    expect(accepted.size).to.equal(50);
    expect((await account(user)).balance).to.equal('0.00');
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(50);
    await h.assertInvariant([user, other]);
  });

  it('charges hostile request ids and user ids each once, sent twice at once and again, and keeps SPEC 7', async () => {
    const user = h.user('hostile.a:b@c');
    const longUser = `${h.user('long')}.:@`.padEnd(64, '-'); // the longest user id, with every separator allowed
    await seedBalance(h, user, 20_000_000n);
    // Ids that differ only by spaces, key separators, glob and quote characters, and the longest allowed.
    const ids = ['h1', 'h1 ', ' h1', 'h1|passport|1', 'h1:g', '{h1}', 'h*', 'h?[a]', 'h1\\', 'h1%', "h1'", 'h1"'];
    ids.push('x'.repeat(128));
    const max = h.config.maxCallsPerRequest;
    const items = [
      ...ids.map((id) => ({ request_id: id, user_id: user, service_name: 'passport' })),
      { request_id: 'max', user_id: user, service_name: 'passport', count: max },
      { request_id: 'h1', user_id: longUser, service_name: 'passport' },
    ];
    const tooLong = { request_id: 'x'.repeat(129), user_id: user, service_name: 'passport' };
    expect((await h.post(DEDUCT_BATCH, { items: [...items, tooLong] })).status).to.equal(400);

    const [a, b] = await Promise.all([h.post(DEDUCT_BATCH, { items }), h.post(DEDUCT_BATCH, { items })]);
    const c = await h.post(DEDUCT_BATCH, { items });
    for (const res of [a, b, c]) {
      expect(res.status).to.equal(200);
      expect(res.body.data.results.every((r: any) => r.ok)).to.equal(true);
    }
    const [ra, rb, rc] = [a, b, c].map((res) => res.body.data.results);
    // The same record for an item every time, a distinct one per item, charged by exactly one of the two.
    expect(rb.map((r: any) => r.recordId)).to.deep.equal(ra.map((r: any) => r.recordId));
    expect(rc.map((r: any) => r.recordId)).to.deep.equal(ra.map((r: any) => r.recordId));
    expect(new Set(ra.map((r: any) => r.recordId)).size).to.equal(items.length);
    ra.forEach((r: any, i: number) => expect(r.duplicate !== rb[i].duplicate, `item ${i}`).to.equal(true));
    expect(rc.every((r: any) => r.duplicate)).to.equal(true);

    // 13 single calls and `max` calls: 3 free, the rest at 0.001.
    const paid = BigInt(ids.length + max - 3);
    const left = 20_000_000n - paid * 1_000n;
    expect((await account(user)).balance).to.equal(formatMoney(left));
    await h.drain();
    const records = async (u: string) => (await h.get('/api/v1/billing/records', { user_id: u })).body.data.total;
    expect([await records(user), await records(longUser)]).to.deep.equal([ids.length + 1, 1]);
    await h.assertInvariant([user, longUser]);
  });

  it('checks in batches, answering too_many_calls for a count above the cap, and changes nothing', async () => {
    const user = h.user('checks');
    const res = await h.post(CHECK_BATCH, {
      items: [
        { user_id: user, service_name: 'passport', count: 3 },
        { user_id: user, service_name: 'passport', count: 4 },
        { userId: user, serviceName: 'asset', count: 1_000_000 },
        { user_id: user, service_name: 'nope' },
      ],
    });
    expect(res.status).to.equal(200);
    expect(res.body.data.results).to.deep.equal([
      { index: 0, ok: true, allowed: true, reason: 'free', freeRemaining: 3, balance: '0.00' },
      { index: 1, ok: true, allowed: false, reason: 'insufficient_balance', freeRemaining: 3, balance: '0.00' },
      { index: 2, ok: true, allowed: false, reason: 'too_many_calls', freeRemaining: 2, balance: '0.00' },
      { index: 3, ok: false, code: 10006, message: 'unknown service: nope' },
    ]);
    expect(
      (await h.post(CHECK_BATCH, { items: [{ user_id: user, service_name: 'passport', count: -1 }] })).status,
    ).to.equal(400);
    expect((await account(user)).quotas.map((q: any) => q.usedQuota)).to.deep.equal([0, 0]);
  });
});
