import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';

/**
 * 20,000 deductions over 200 users, 64 in flight at a time. Each user has 30 free calls and a
 * balance for 50 paid ones, then asks for 100: 80 accepted, 20 refused with 10001.
 */
describe('20,000 deductions over 200 users', function () {
  this.timeout(300_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: [{ name: 'passport', free_quota: 30, unit_price: '0.001' }] } });
  });
  after(() => h.stop());

  it('keeps Redis = MySQL = ledger for every user after the queues drain', async () => {
    const users = Array.from({ length: 200 }, (_, i) => h.user(`load${i}`));
    await Promise.all(users.map((u) => seedBalance(h, u, 50_000n)));
    const calls = users.flatMap((u) =>
      Array.from({ length: 100 }, (_, i) => ({ request_id: `q${i}`, user_id: u, service_name: 'passport' })),
    );
    // Interleave users so that every user's calls race with everybody else's.
    calls.sort((a, b) => Number(a.request_id.slice(1)) - Number(b.request_id.slice(1)));

    const probe = h.probe;
    let maxBacklog = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxBacklog = Math.max(maxBacklog, await probe.persistence.pendingCount());
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    const started = Date.now();
    const outcome = { ok: 0, refused: 0, other: 0 };
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < calls.length) {
          const r = await h.post('/internal/v1/billing/deduct', calls[next++]);
          if (r.status === 200) outcome.ok++;
          else if (r.status === 402 && r.body.code === 10001) outcome.refused++;
          else outcome.other++;
        }
      }),
    );
    const loadMs = Date.now() - started;
    const lagMs = await h.drain(120_000);
    sampling = false;
    await sampler;

    console.log(
      `      20,000 deductions in ${loadMs} ms (${Math.round(20_000 / (loadMs / 1000))}/s through HTTP); ` +
        `persistence caught up ${lagMs} ms after the last answer; largest backlog ${maxBacklog} changes`,
    );
    expect(outcome).to.deep.equal({ ok: 16_000, refused: 4_000, other: 0 });
    await h.assertInvariant(users);
    const perUser = await probe
      .db('consumption_records')
      .whereIn('user_id', users)
      .groupBy('user_id')
      .select(
        'user_id',
        probe.db.raw('COUNT(*) AS n'),
        probe.db.raw('SUM(free_count) AS free'),
        probe.db.raw('SUM(amount) AS amount'),
      );
    expect(perUser).to.have.length(200);
    for (const row of perUser)
      expect({ n: Number(row.n), free: String(row.free), amount: String(row.amount) }).to.deep.equal({
        n: 80,
        free: '30',
        amount: '50000',
      });
    for (const u of users) expect(await probe.redis.hget(probe.keys.account(u), 'bal')).to.equal('0');
  });
});
