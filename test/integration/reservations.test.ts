import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';

const RESERVE = '/internal/v1/billing/reservations';
const commitPath = (id: string) => `${RESERVE}/${encodeURIComponent(id)}/commit`;
const releasePath = (id: string) => `${RESERVE}/${encodeURIComponent(id)}/release`;
const SERVICES = [
  { name: 'asset', free_quota: 2, unit_price: '0.5' },
  { name: 'tokens', free_quota: 0, unit_price: '0.01' },
];

async function account(h: Harness, user: string) {
  return (await h.get('/api/v1/billing/account', { user_id: user })).body.data;
}

describe('reservations', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('holds free quota then balance, and a commit of less charges that and returns the rest', async () => {
    const user = h.user('less');
    await seedBalance(h, user, 10_000_000n);
    const hold = await h.post(RESERVE, {
      request_id: 'h1',
      user_id: user,
      service_name: 'asset',
      count: 6,
      ttl_seconds: 60,
    });
    expect(hold.status).to.equal(200);
    expect(hold.body.data).to.include({
      freeCount: 2,
      paidCount: 4,
      heldAmount: '2.00',
      balance: '8.00',
      status: 'held',
      duplicate: false,
    });
    let acct = await account(h, user);
    expect(acct).to.include({ balance: '8.00', heldAmount: '2.00' });
    expect(acct.quotas.find((q: any) => q.serviceName === 'asset')).to.include({ usedQuota: 2, remainingQuota: 0 });

    const id = hold.body.data.reservationId;
    const commit = await h.post(commitPath(id), { count: 3 });
    expect(commit.body.data).to.include({
      count: 3,
      freeCount: 2,
      paidCount: 1,
      amount: '0.50',
      releasedAmount: '1.50',
      balance: '9.50',
      duplicate: false,
    });
    const again = await h.post(commitPath(id), { count: 3 });
    expect(again.body.data).to.include({ recordId: commit.body.data.recordId, amount: '0.50', duplicate: true });
    expect((await h.post(commitPath(id), { count: 2 })).body.code).to.equal(10007);
    expect((await h.post(releasePath(id), {})).body.code).to.equal(10008);

    acct = await account(h, user);
    expect(acct).to.include({ balance: '9.50', heldAmount: '0.00' });
    await h.drain();
    const records = await h.get('/api/v1/billing/records', { user_id: user });
    expect(records.body.data.records).to.have.length(1);
    expect(records.body.data.records[0]).to.include({
      requestId: 'h1',
      type: 'mixed',
      count: 3,
      freeCount: 2,
      paidCount: 1,
      amount: '0.50',
    });
    const month = await h.get('/api/v1/billing/stats/month', { user_id: user, service_name: 'asset' });
    expect(month.body.data).to.include({ totalCount: 3, totalCost: '0.50' });
    await h.assertInvariant([user]);
  });

  it('returns everything on release, once, and refuses a commit afterwards with 10008', async () => {
    const user = h.user('release');
    await seedBalance(h, user, 3_000_000n);
    const hold = (await h.post(RESERVE, { request_id: 'r1', user_id: user, service_name: 'asset', count: 5 })).body
      .data;
    expect(hold).to.include({ heldAmount: '1.50', balance: '1.50' });
    const releases = await Promise.all([1, 2, 3].map(() => h.post(releasePath(hold.reservationId), {})));
    expect(releases.map((r) => r.status)).to.deep.equal([200, 200, 200]);
    expect(releases.filter((r) => !r.body.data.duplicate)).to.have.length(1);
    expect(releases.find((r) => !r.body.data.duplicate)!.body.data.releasedAmount).to.equal('1.50');
    const commit = await h.post(commitPath(hold.reservationId), { count: 1 });
    expect(commit.status).to.equal(404);
    expect(commit.body.code).to.equal(10008);
    const acct = await account(h, user);
    expect(acct).to.include({ balance: '3.00', heldAmount: '0.00' });
    expect(acct.quotas.find((q: any) => q.serviceName === 'asset').usedQuota).to.equal(0);
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('lets its expiry job return a hold not committed in time', async () => {
    const user = h.user('expire');
    await seedBalance(h, user, 1_000_000n);
    const hold = (
      await h.post(RESERVE, { request_id: 'e1', user_id: user, service_name: 'tokens', count: 50, ttl_seconds: 1 })
    ).body.data;
    expect((await account(h, user)).heldAmount).to.equal('0.50');
    const deadline = Date.now() + 10_000;
    while ((await account(h, user)).heldAmount !== '0.00' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await account(h, user)).to.include({ heldAmount: '0.00', balance: '1.00' });
    expect((await h.post(commitPath(hold.reservationId), { count: 10 })).body.code).to.equal(10008);
    expect((await h.post(releasePath(hold.reservationId), {})).body.code).to.equal(10008);
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('keeps held money from a concurrent deduct, and lets 50 of 200 concurrent holds through against a balance for 50', async () => {
    const user = h.user('crowd');
    await seedBalance(h, user, 500_000n); // 50 calls of tokens at 0.01
    const holds = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        h.post(RESERVE, { request_id: `c${i}`, user_id: user, service_name: 'tokens', count: 1 }),
      ),
    );
    const held = holds.filter((r) => r.status === 200);
    expect(held).to.have.length(50);
    expect(holds.filter((r) => r.status === 402 && r.body.code === 10001)).to.have.length(150);
    expect(await account(h, user)).to.include({ balance: '0.00', heldAmount: '0.50' });
    const deduct = await h.post('/internal/v1/billing/deduct', {
      request_id: 'd',
      user_id: user,
      service_name: 'tokens',
    });
    expect(deduct.body.code).to.equal(10001);
    // Commit half, release the other half.
    await Promise.all(
      held.map((r, i) =>
        i % 2
          ? h.post(commitPath(r.body.data.reservationId), { count: 1 })
          : h.post(releasePath(r.body.data.reservationId), {}),
      ),
    );
    expect(await account(h, user)).to.include({ balance: '0.25', heldAmount: '0.00' });
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(25);
    await h.assertInvariant([user]);
  });

  it('holds once for 20 concurrent identical reserves, and charges once for 20 concurrent identical commits', async () => {
    const user = h.user('twice');
    await seedBalance(h, user, 1_000_000n);
    const body = { request_id: 'same', user_id: user, service_name: 'tokens', count: 30 };
    const holds = await Promise.all(Array.from({ length: 20 }, () => h.post(RESERVE, body)));
    expect(holds.every((r) => r.status === 200)).to.equal(true);
    expect(new Set(holds.map((r) => r.body.data.reservationId)).size).to.equal(1);
    expect(holds.filter((r) => !r.body.data.duplicate)).to.have.length(1);
    expect(await account(h, user)).to.include({ balance: '0.70', heldAmount: '0.30' });
    const id = holds[0].body.data.reservationId;
    const commits = await Promise.all(Array.from({ length: 20 }, () => h.post(commitPath(id), { count: 12 })));
    expect(commits.every((r) => r.status === 200 && r.body.data.amount === '0.12')).to.equal(true);
    expect(commits.filter((r) => !r.body.data.duplicate)).to.have.length(1);
    expect(new Set(commits.map((r) => r.body.data.recordId)).size).to.equal(1);
    expect(await account(h, user)).to.include({ balance: '0.88', heldAmount: '0.00' });
    await h.drain();
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
    await h.assertInvariant([user]);
  });

  it('answers unknown, malformed and over-count commits, and replays a hold by request_id', async () => {
    const user = h.user('edge');
    await seedBalance(h, user, 1_000_000n);
    const body = { request_id: 'x1', user_id: user, service_name: 'tokens', count: 10 };
    const first = (await h.post(RESERVE, body)).body.data;
    const replay = (await h.post(RESERVE, body)).body.data;
    expect(replay).to.include({ reservationId: first.reservationId, duplicate: true });
    expect((await h.post(RESERVE, { ...body, count: 11 })).body.code).to.equal(10007);
    const over = await h.post(commitPath(first.reservationId), { count: 11 });
    expect(over.status).to.equal(400);
    expect(over.body.details![0].field).to.equal('count');
    expect((await h.post(commitPath('rsv_nope'), { count: 1 })).body.code).to.equal(10008);
    const forged = first.reservationId.replace(/.{4}$/, '0000');
    expect((await h.post(commitPath(forged), { count: 1 })).body.code).to.equal(10008);
    expect((await h.post(RESERVE, { ...body, request_id: 'x2', ttl_seconds: 0 })).status).to.equal(400);
    expect((await h.post(commitPath(first.reservationId), {})).status).to.equal(400);
    const zero = await h.post(commitPath(first.reservationId), { count: 0 });
    expect(zero.body.data).to.include({ recordId: null, amount: '0.00', releasedAmount: '0.10' });
    await h.drain();
    await h.assertInvariant([user]);
  });
});

describe('reservation commit racing expiry', function () {
  this.timeout(60_000);
  it('lets exactly one of them move each hold, and the money follows the winner', async () => {
    const clock = new FakeClock(new Date('2026-11-10T00:00:00Z'));
    const h = await startHarness({ clock, roles: ['api'], overrides: { services: SERVICES } });
    try {
      const probe = h.probe;
      const user = h.user('race');
      await seedBalance(h, user, 100_000_000n);
      const ids: string[] = [];
      for (let i = 0; i < 20; i++)
        ids.push(
          (
            await h.post(RESERVE, {
              request_id: `q${i}`,
              user_id: user,
              service_name: 'tokens',
              count: 100,
              ttl_seconds: 60,
            })
          ).body.data.reservationId,
        );
      expect((await account(h, user)).heldAmount).to.equal('20.00');
      clock.set('2026-11-10T00:01:00Z'); // every hold is now due
      let committed = 0;
      let expired = 0;
      await Promise.all(
        ids.map(async (id, i) => {
          const [commit, expiry, sweep] = await Promise.all([
            i % 2
              ? h.post(commitPath(id), { count: 40 })
              : probe.reservations.release(id, 'expired').then(() => h.post(commitPath(id), { count: 40 })),
            probe.reservations.release(id, 'expired'),
            probe.reservations.expireDue(),
          ]);
          void sweep;
          if (commit.status === 200) committed++;
          else {
            expect(commit.body.code).to.equal(10008);
            expired++;
          }
          expect(['ok', 'expired', 'committed']).to.include(expiry.outcome);
        }),
      );
      // A due hold can only expire: a commit that arrives after its time is refused.
      expect({ committed, expired }).to.deep.equal({ committed: 0, expired: 20 });
      expect(await account(h, user)).to.include({ heldAmount: '0.00', balance: '100.00' });

      // Before the deadline the commit wins and the expiry finds nothing to return.
      const late = (
        await h.post(RESERVE, { request_id: 'w', user_id: user, service_name: 'tokens', count: 100, ttl_seconds: 60 })
      ).body.data.reservationId;
      const [c, e] = await Promise.all([
        h.post(commitPath(late), { count: 40 }),
        probe.reservations.release(late, 'expired'),
      ]);
      expect(c.body.data.amount).to.equal('0.40');
      expect(e.outcome).to.be.oneOf(['not_due', 'committed']);
      expect(await account(h, user)).to.include({ heldAmount: '0.00', balance: '99.60' });
      const { startWorkers } = await import('../../src/workers/workers.js');
      const workers = startWorkers(probe.workers, ['persistence']);
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
