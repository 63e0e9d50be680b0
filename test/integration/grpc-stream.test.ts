import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { fullClients, metadata, call, callFails, streamAll } from '../fixtures/grpc-clients.js';

describe('gRPC DeductBatch and DeductStream', function () {
  this.timeout(180_000);
  let h: Harness;
  let full: ReturnType<typeof fullClients>;
  before(async () => {
    h = await startHarness({
      overrides: {
        max_batch_items: 100,
        services: [
          { name: 'passport', free_quota: 3, unit_price: '0.001' },
          { name: 'bulk', free_quota: 1_000_000, unit_price: null },
        ],
      },
    });
    full = fullClients(h.running.grpcAddress!);
  });
  after(async () => {
    full.user.close();
    full.internal.close();
    await h.stop();
  });

  it('DeductBatch: answers in order, refusals alone, replays charge nothing, bad envelopes refused whole', async () => {
    const user = h.user('batch');
    await seedBalance(h, user, 1_000n);
    const items = [
      { requestId: 'b1', userId: user, serviceName: 'passport', count: 3 },
      { requestId: 'b2', userId: user, serviceName: 'passport', count: 2 }, // 1 paid call affordable, not 2
      { requestId: 'b3', userId: user, serviceName: 'passport' },
      { requestId: 'b4', userId: user, serviceName: 'nope' },
      { requestId: 'b1', userId: user, serviceName: 'passport', count: 3 },
    ];
    const { results } = await call(full.internal, 'DeductBatch', { items });
    expect(results.map((r: any) => [r.index, r.ok, r.code, r.requestId])).to.deep.equal([
      [0, true, 0, 'b1'],
      [1, false, 10001, 'b2'],
      [2, true, 0, 'b3'],
      [3, false, 10006, 'b4'],
      [4, true, 0, 'b1'],
    ]);
    expect(results[4].reply).to.include({ recordId: results[0].reply.recordId, duplicate: true });
    expect(results[2].reply).to.include({ paidCount: 1, amountDecimal: '0.001', balanceDecimal: '0.00' });
    const replay = await call(full.internal, 'DeductBatch', { items });
    expect(replay.results.map((r: any) => r.reply?.duplicate ?? r.code)).to.deep.equal([
      true,
      10001,
      true,
      10006,
      true,
    ]);

    for (const bad of [
      [],
      Array.from({ length: 101 }, (_, i) => ({ ...items[0], requestId: `x${i}` })),
      [items[0], { userId: user, serviceName: 'passport' }],
      [{ ...items[0], count: -1 }],
    ]) {
      expect(await callFails(full.internal, 'DeductBatch', { items: bad })).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 40000,
      });
    }
    expect(await callFails(full.internal, 'DeductBatch', { items }, metadata({}, null))).to.include({
      code: grpc.status.UNAUTHENTICATED,
    });
    await h.drain();
    expect((await call(full.user, 'ListRecords', { userId: user })).total).to.equal(2);
    await h.assertInvariant([user]);
  });

  it('DeductStream: answers carry the request id, keep each user’s order, hold SPEC 7 with repeats', async () => {
    const users = [h.user('s0'), h.user('s1'), h.user('s2')];
    for (const u of users) await seedBalance(h, u, 27_000n); // 3 free + 27 paid = 30 calls each
    const messages: any[] = [];
    for (let i = 0; i < 100; i++) {
      for (const u of users) messages.push({ requestId: `q${i}`, userId: u, serviceName: 'passport' });
      if (i % 5 === 4) messages.push({ requestId: `q${i - 3}`, userId: users[i % 3], serviceName: 'passport' });
    }
    messages.push({ userId: users[0], serviceName: 'passport' }); // no requestId: refused alone
    messages.push({ requestId: 'bad', userId: 'not a user id!', serviceName: 'passport' });
    const answers = await streamAll(full.internal, messages);
    expect(answers).to.have.length(messages.length);
    const byIndex = new Map(answers.map((a) => [a.index, a]));
    expect(byIndex.size).to.equal(messages.length);
    for (const u of users) {
      const mine = answers.filter((a) => a.userId === u);
      expect(
        mine.map((a) => a.index),
        `order of ${u}`,
      ).to.deep.equal([...mine.map((a) => a.index)].sort((x, y) => x - y));
      const records = new Set(mine.filter((a) => a.ok).map((a) => a.reply.recordId));
      expect(records.size, `calls charged to ${u}`).to.equal(30);
      for (const a of mine) {
        expect(a.requestId).to.equal(messages[a.index].requestId ?? '');
        if (!a.ok) expect(a.code).to.equal(a.requestId === '' ? 40000 : 10001);
      }
    }
    expect(answers.filter((a) => a.ok === false && a.code === 40000)).to.have.length(2);
    await h.drain();
    await h.assertInvariant(users);
  });

  it('DeductStream beside unary calls and a second stream on the same user: each request charged once', async () => {
    const user = h.user('mixed');
    await seedBalance(h, user, 97_000n); // 100 calls
    const ids = Array.from({ length: 150 }, (_, i) => `m${i}`);
    const msg = (id: string) => ({ requestId: id, userId: user, serviceName: 'passport' });
    const [a, b, unary] = await Promise.all([
      streamAll(full.internal, ids.map(msg)),
      streamAll(full.internal, [...ids].reverse().map(msg)),
      Promise.allSettled(ids.map((id) => call(full.internal, 'DeductQuota', msg(id)))),
    ]);
    const charged = new Map<string, string>();
    for (const r of [...a, ...b].filter((x) => x.ok)) {
      if (charged.has(r.requestId)) expect(charged.get(r.requestId)).to.equal(r.reply.recordId);
      charged.set(r.requestId, r.reply.recordId);
    }
    for (const u of unary) if (u.status === 'fulfilled') charged.set(u.value.requestId, u.value.recordId);
    expect(new Set(charged.values()).size).to.equal(100);
    await h.drain();
    expect((await call(full.user, 'ListRecords', { userId: user })).total).to.equal(100);
    await h.assertInvariant([user]);
  });

  it('DeductStream refuses a caller without the gateway token', async () => {
    const err = await streamAll(
      full.internal,
      [{ requestId: 'x', userId: h.user('x'), serviceName: 'passport' }],
      metadata({}, 'wrong'),
    ).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).to.equal(grpc.status.UNAUTHENTICATED);
    expect(err?.metadata.get('billing-code')[0]).to.equal('40100');
  });

  it('DeductStream stops reading from a client that never reads its answers, and catches up when it does', async () => {
    const user = h.user('slow-reader');
    const stream = (full.internal as any).DeductStream(metadata());
    const answers: any[] = [];
    stream.on('data', (a: any) => answers.push(a));
    stream.on('error', () => undefined); // a failure is reported by the assertions, not as uncaught
    stream.pause(); // never reads, until told to
    const total = 20_000;
    for (let i = 0; i < total; i++) stream.write({ requestId: `w${i}`, userId: user, serviceName: 'bulk' });
    stream.end();
    const used = async () =>
      Number(
        (await call(full.user, 'GetAccount', { userId: user })).quotas.find((q: any) => q.serviceName === 'bulk')
          .usedQuota,
      );
    let last = -1;
    let now = await used();
    // Wait until the server stops charging (it has stopped reading), then check it stopped early:
    // what it holds is bounded (deducts in flight, answers waiting for HTTP/2 flow control), about
    // 800 here, whatever the client sends.
    for (let i = 0; i < 100 && now !== last; i++) {
      await new Promise((r) => setTimeout(r, 300));
      last = now;
      now = await used();
    }
    expect(now).to.equal(last);
    expect(now, 'deducts charged while the client read nothing').to.be.greaterThan(0).and.below(5000);
    expect(answers).to.have.length(0);
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.resume();
    await ended;
    expect(answers).to.have.length(total);
    expect(answers.every((a) => a.ok)).to.equal(true);
    expect(await used()).to.equal(total);
    await h.drain();
    await h.assertInvariant([user]);
  });
});
