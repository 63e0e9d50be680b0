import { expect } from 'chai';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { startRoles } from '../../src/main/processes.js';
import { createLogger } from '../../src/lib/logger.js';
import { OwnServers } from '../faults/support.js';
import { ModelEnv, runSequence } from './runner.js';

/**
 * Failures the model test found, each shrunk to its smallest sequence and written out by hand as a
 * regular test (the last case replays a shrunk sequence through the model runner as printed).
 */
describe('model test regressions', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: [{ name: 'alpha', free_quota: 3, unit_price: '0.25' }] } });
  });
  after(() => h.stop());

  /** Waits until these users' changes are in MySQL (a drain scoped to them: a stuck change elsewhere is not theirs). */
  async function persisted(users: string[], timeoutMs = 15_000): Promise<void> {
    const ctx = h.probe;
    await ctx.persistence.drainBuffer();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const lengths = await Promise.all(users.map((u) => ctx.redis.hlen(ctx.keys.pending(u))));
      if (lengths.every((n) => n === 0)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`changes of ${users.join(', ')} not persisted within ${timeoutMs} ms`);
  }

  const deduct = (user: string, requestId: string) =>
    h.post('/internal/v1/billing/deduct', { request_id: requestId, user_id: user, service_name: 'alpha', count: 1 });

  // SPEC 10.1: 'r1' and 'r1 ' are two request ids. Redis took both; MySQL's PAD SPACE unique key
  // (user_id, request_id) refused the second record, and its batch never landed.
  it('persists two deductions whose request ids differ only by a trailing space', async () => {
    const user = h.user('trailing');
    const [a, b] = await Promise.all([deduct(user, 'r1'), deduct(user, 'r1 ')]);
    expect([a.body.data?.duplicate, b.body.data?.duplicate]).to.deep.equal([false, false]);
    await persisted([user]);
    const rows = await h.probe.db('consumption_records').where({ user_id: user }).select('request_id');
    expect(rows.map((r) => r.request_id).sort()).to.deep.equal(['r1', 'r1 ']);
    await h.assertInvariant([user]);
  });

  // SPEC 10.1: the adjustment of user 'c' with key 'd:k1' and of user 'c:d' with key 'k1' were both
  // stored under the journal id "c:d:k1": MySQL kept one, and the other user's money existed in Redis only.
  it('keeps adjustments of two users apart when "user:key" would join to the same text', async () => {
    const c = h.user('c');
    const cd = `${c}:d`;
    const adjust = (user: string, key: string, amount: string) =>
      h.post(
        `/admin/v1/accounts/${encodeURIComponent(user)}/adjustments`,
        { amount, reason: 'regression', idempotency_key: key },
        { authorization: `Bearer ${ADMIN_TOKEN}` },
      );
    expect((await adjust(c, 'd:k1', '1.00')).body.data.applied).to.equal(true);
    expect((await adjust(cd, 'k1', '2.50')).body.data.applied).to.equal(true);
    await persisted([c, cd]);
    const { balance: cBalance } = await h.probe.repositories.ledger.balanceAndLedgerSum(c);
    const { balance: cdBalance } = await h.probe.repositories.ledger.balanceAndLedgerSum(cd);
    expect([cBalance, cdBalance]).to.deep.equal([1_000_000n, 2_500_000n]);
    await h.assertInvariant([c, cd]);
  });

  // SPEC 10.5 and 7.1: a check, or a deduct refused for balance, of a user never seen leaves nothing
  // lasting in Redis (a key that expires by itself is not lasting).
  it('leaves no lasting Redis state for a read or a refused call of an unknown user', async () => {
    const reader = h.user('reader');
    expect(
      (await h.post('/internal/v1/billing/check', { user_id: reader, service_name: 'alpha', count: 1 })).body.data
        .allowed,
    ).to.equal(true);
    const fresh = h.user('fresh');
    const r = await h.post('/internal/v1/billing/deduct', {
      request_id: 'r',
      user_id: fresh,
      service_name: 'alpha',
      count: 4,
    });
    expect(r.body.code).to.equal(10001);
    const ctx = h.probe;
    for (const user of [reader, fresh]) expect(await ctx.redis.pttl(ctx.keys.account(user)), user).to.not.equal(-1);
  });

  // SPEC 11: a check for more calls than the per-request cap is a plain no, not a 400.
  it('answers a check over the per-request cap with allowed false, reason too_many_calls', async () => {
    const r = await h.post('/internal/v1/billing/check', {
      user_id: h.user('cap'),
      service_name: 'alpha',
      count: h.config.maxCallsPerRequest + 1,
    });
    expect(r.status).to.equal(200);
    expect(r.body.data).to.include({ allowed: false, reason: 'too_many_calls' });
  });

  // A worker that lived through a Redis restart must still stop (SIGTERM → close) in time. Found when
  // the model runner stopped the worker role right after restarting Redis: BullMQ Worker.close() of
  // every queue did not return while the shared blocking connection was reconnecting (main() then
  // exits 1 after its 30 s grace; a clean stop is what a rolling deploy after a Redis blip needs).
  it('stops a worker that lived through a Redis restart', async () => {
    const servers = await new OwnServers().start();
    try {
      const own = await startHarness({ roles: ['api'], servers: servers.urls });
      const worker = await startRoles(own.config, ['worker'], { logger: createLogger('silent', 'regression') });
      const user = own.user('w');
      await seedBalance(own, user, 1_000_000n);
      await servers.restartRedis();
      const stopped = await Promise.race([
        worker.stop().then(() => 'stopped'),
        new Promise((r) => setTimeout(() => r('hung'), 20_000)),
      ]);
      expect(stopped).to.equal('stopped');
      await own.stop();
    } finally {
      await servers.stop();
    }
  });
});

describe('model test regressions, replayed through the model', function () {
  this.timeout(120_000);
  let env: ModelEnv;
  before(async () => {
    env = await ModelEnv.start();
  });
  after(() => env.stop());

  it('two concurrent deductions with look-alike request ids (seed 11, shrunk)', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          {
            t: 'group',
            ops: [
              { t: 'deduct', u: 0, r: 'r1', s: 'alpha', n: 1 },
              { t: 'deduct', u: 0, r: 'r1 ', s: 'alpha', n: 1 },
            ],
          },
        ],
      },
      { strict: true },
    );
  });

  // The generated SIGKILL fault on its own: a worker process dies inside its first persistence batch
  // after the MySQL commit; the stalled batch runs again on a new worker and books nothing twice.
  it('a worker SIGKILLed mid-batch while deducts, a batch and a stream go on', async () => {
    const before = env.stats.faults['worker-sigkill-mid-batch'] ?? 0;
    await runSequence(
      env,
      {
        start: '2026-12-15T04:00:00.000Z',
        ops: [
          { t: 'adjust', u: 1, k: 'k1', micros: '2500000' },
          {
            t: 'worker-kill',
            ops: [
              { t: 'deduct', u: 1, r: 'r1', s: 'alpha', n: 4 },
              { t: 'grpc-deduct', u: 1, r: 'r2', s: 'gamma', n: 3 },
              {
                t: 'deduct-batch',
                via: 'grpc',
                items: [
                  { u: 0, r: 'r1', s: 'alpha', n: 2 },
                  { u: 1, r: 'r1', s: 'alpha', n: 4 },
                  { u: 0, r: 'r3', s: 'alpha', n: 2 },
                ],
              },
            ],
          },
          {
            t: 'deduct-batch',
            via: 'stream',
            items: [
              { u: 1, r: 'r3', s: 'alpha', n: 1 },
              { u: 1, r: 'r3', s: 'alpha', n: 1 },
            ],
          },
          { t: 'account', u: 1, via: 'grpc' },
        ],
      },
      { strict: true },
    );
    expect(env.stats.faults['worker-sigkill-mid-batch']).to.equal(before + 1);
  });

  // Reservations over gRPC share ids, holds and answers with HTTP; the account view shows the hold.
  it('a reservation made over HTTP and committed over gRPC, then viewed both ways', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'adjust', u: 2, k: 'k2', micros: '1000000' },
          { t: 'reserve', u: 2, r: 'r1', s: 'alpha', n: 4, ttl: 600 },
          { t: 'grpc-reserve', u: 2, r: 'r1', s: 'alpha', n: 4, ttl: 600 },
          { t: 'account', u: 2, via: 'http' },
          { t: 'grpc-commit', u: 2, r: 'r1', n: 4 },
          { t: 'commit', u: 2, r: 'r1', n: 4 },
          { t: 'grpc-release', u: 2, r: 'r1' },
          {
            t: 'check-batch',
            items: [
              { u: 2, s: 'alpha', n: 1 },
              { u: 3, s: 'beta', n: 10_001 },
            ],
          },
          { t: 'account', u: 2, via: 'grpc' },
        ],
      },
      { strict: true },
    );
  });

  // Found by the model test (fixed seed 424242, shrunk): a grant given and voided, then voided again
  // before its rows reach MySQL, is 404 / 40400, as if it had never been given; once they are in
  // MySQL the same call answers 200 with nothing voided. The answer should not depend on persistence.
  // The worker is down here, so that nothing is persisted in between. (Fixed: the creation's marker.)
  it('a second void of a grant not yet in MySQL answers as a void of an ended grant, not 40400', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          {
            t: 'worker-down',
            ops: [
              { t: 'grant', u: 0, g: 'g1', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
              { t: 'void', u: 0, g: 'g1', recent: null },
              { t: 'void', u: 0, g: 'g1', recent: null },
            ],
          },
        ],
      },
      { strict: true },
    );
  });

  // Found by the model test (soak seed 1616, shrunk): a hold on a grant, the grant voided (pending
  // until the hold ends): `/account` says heldAmount 0.00 while the reservation still holds 0.001
  // (it summed the held parts of spendable grants only; now every grant's held part counts).
  it('the account view counts what an open hold holds of a voided grant', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'grant', u: 1, g: 'g2', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
          { t: 'grpc-reserve', u: 1, r: 'r1', s: 'gamma', n: 1, ttl: 60 },
          { t: 'void', u: 1, g: 'g2', recent: null },
          { t: 'account', u: 1, via: 'http' },
        ],
      },
      { strict: true },
    );
  });

  // Found by the model test once it compared events (seed 7, shrunk): a grant given and voided stored no
  // grant.expired when another user had voided a grant of the same id before. The event id was derived
  // from the journal id (`grant_end:g1`) and the type only; it now includes the user.
  it("stores each user's grant.expired when two users void grants of the same id", async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'grant', u: 0, g: 'g1', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
          { t: 'void', u: 0, g: 'g1', recent: null },
          { t: 'grant', u: 1, g: 'g1', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
          { t: 'void', u: 1, g: 'g1', recent: null },
        ],
      },
      { strict: true },
    );
  });

  // Found by reading the scripts while modelling events, confirmed by this case: a recharge or an
  // adjustment compared the balance without the user's grants with the threshold, so a credit to an
  // account whose grants kept it above the threshold fired balance.low (docs/events.md: grants count).
  it('a credit compares the available balance with grants with the balance.low threshold', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'grant', u: 0, g: 'g1', amount: '1.00', cat: 'promotional', prio: 10, exp: null },
          { t: 'adjust', u: 0, k: 'k1', micros: '250000' },
          { t: 'adjust', u: 0, k: 'k2', micros: '-250000' },
        ],
      },
      { strict: true },
    );
  });

  // Found by a CI run's random seed (-660181783, shrunk): a void racing its grant's creation found no
  // live grant, then saw the creation's marker a moment later and answered "voided 0.00" while the grant
  // stayed whole. The void's script now reads the marker in its own step (end-grants-5.lua). The race is
  // not certain to be met here; test/integration/grants.test.ts runs it 40 times.
  it('a void racing its grant’s creation answers as before it or after it', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          {
            t: 'group',
            ops: [
              { t: 'grant', u: 2, g: 'g3', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
              { t: 'void', u: 2, g: 'g3', recent: 0 },
              { t: 'grpc-reserve', u: 0, r: 'r1', s: 'alpha', n: 1, ttl: 60 },
            ],
          },
          { t: 'grant', u: 0, g: 'g1', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
        ],
      },
      { strict: true },
    );
  });

  // Found by the soak of seed 2913 (shrunk): a grant voided while a hold held part of it fired no balance
  // alarm at the void; balance.low came hours later, when the grant ended after its hold expired, with the
  // amount available then (0.75, the expired holds back) instead of at the void (0.747).
  it('a void of a held grant fires the balance alarm at the void, with what is available then', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'adjust', u: 1, k: 'k1', micros: '250000' },
          { t: 'reserve', u: 1, r: 'r3', s: 'gamma', n: 3, ttl: 600 },
          { t: 'grant', u: 1, g: 'g3', amount: '0.50', cat: 'promotional', prio: 10, exp: null },
          { t: 'grant', u: 1, g: 'g1', amount: '0.50', cat: 'promotional', prio: 50, exp: null },
          { t: 'reserve', u: 1, r: 'r1', s: 'gamma', n: 1, ttl: 60 },
          { t: 'void', u: 1, g: 'g3', recent: null },
          { t: 'advance', ms: 21_600_000 },
          { t: 'account', u: 1, via: 'http' },
        ],
      },
      { strict: true },
    );
  });

  // Found by the soak of seed 2914 (shrunk): a refund sent with the deduct it refunds read the record as
  // none, the deduct landed, and the refund's step found it: refunded, but its free call kept from the
  // quota (and the change booked without the record id). The step now refuses a stale read and the
  // service reads again. A race, not certain to be met here; test/integration/refunds.test.ts forces it.
  it('a refund racing its deduct answers as before it or after it', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          {
            t: 'group',
            ops: [
              { t: 'refund', u: 2, f: 'f1', r: 'r*?[1]', n: null, recent: null },
              { t: 'deduct', u: 2, r: 'r*?[1]', s: 'alpha', n: 1 },
            ],
          },
          { t: 'refund', u: 0, f: 'f1 ', r: 'r1', n: null, recent: 0 },
        ],
      },
      { strict: true },
    );
  });

  // Not a failure found: the money rules of SPEC 14 in one fixed sequence, so that each is run on every
  // test run whatever the random runs draw. Grants by priority then expiry, a replay and a reuse of a
  // grant id, a hold that skips a grant expiring before it, refunds back to the balance then the grants
  // last one first (an expired grant forfeiting its part), a spending limit reached, a user's own price,
  // a void, and a refund of free calls after the month turned.
  it('grants, refunds, a spending limit and a per-user price across expiry and the month end', async () => {
    await runSequence(
      env,
      {
        start: '2026-11-30T15:40:00.000Z',
        ops: [
          { t: 'adjust', u: 0, k: 'k1', micros: '1000000' },
          { t: 'grant', u: 0, g: 'g1', amount: '0.30', cat: 'promotional', prio: 50, exp: 600_000 },
          { t: 'grant', u: 0, g: 'g2', amount: '0.50', cat: 'paid', prio: 10, exp: null },
          { t: 'grant', u: 0, g: 'g2', amount: '0.50', cat: 'paid', prio: 10, exp: null },
          { t: 'grant', u: 0, g: 'g2', amount: '1.00', cat: 'paid', prio: 10, exp: null },
          { t: 'deduct', u: 0, r: 'r1', s: 'alpha', n: 4 },
          { t: 'deduct', u: 0, r: 'r2', s: 'alpha', n: 2 },
          { t: 'reserve', u: 0, r: 'r3', s: 'gamma', n: 1, ttl: 3600 },
          { t: 'account', u: 0, via: 'http' },
          { t: 'advance', ms: 600_000 },
          { t: 'refund', u: 0, f: 'f1', r: 'r2', n: null, recent: null },
          { t: 'refund', u: 0, f: 'f2', r: 'r1', n: 1, recent: null },
          { t: 'refund', u: 0, f: 'f1', r: 'r2', n: null, recent: null },
          { t: 'refund', u: 0, f: 'f1', r: 'r1', n: 1, recent: null },
          { t: 'refund', u: 0, f: 'f3', r: 'r1', n: 4, recent: null },
          { t: 'limits', u: 0, daily: '0.30' },
          { t: 'deduct', u: 0, r: 'r4', s: 'alpha', n: 2 },
          { t: 'check', u: 0, s: 'alpha', n: 1 },
          { t: 'pricing', u: 0, s: 'alpha', free: 5, price: '0.00' },
          { t: 'deduct', u: 0, r: 'r5', s: 'alpha', n: 3 },
          { t: 'grpc-commit', u: 0, r: 'r3', n: 1 },
          { t: 'void', u: 0, g: 'g2', recent: null },
          { t: 'account', u: 0, via: 'http' },
          { t: 'advance', ms: 1_200_000 },
          { t: 'refund', u: 0, f: 'f4', r: 'r5', n: null, recent: null },
          { t: 'account', u: 0, via: 'grpc' },
        ],
      },
      { strict: true },
    );
  });
});
