import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisCluster } from '../../scripts/local-servers.js';
import { testServers } from '../support/servers.js';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { fullClients, call, streamAll } from '../fixtures/grpc-clients.js';

const DEDUCT_BATCH = '/internal/v1/billing/deduct/batch';
const SERVICES = { services: [{ name: 'passport', free_quota: 0, unit_price: '0.01' }] };

type Result = { index: number; ok: boolean; code?: number; message?: string; duplicate?: boolean };
type StreamAnswer = { index: number; ok: boolean; code?: number; message?: string; reply?: { duplicate: boolean } };

/**
 * A batch when one shard of a Redis Cluster stalls (its redis-server stopped with SIGSTOP, as a node
 * stuck on a slow disk or paused VM is): the items of users on that node answer 50300 and the others
 * are charged and answered; retried, each item lands once (SPEC 12, SPEC 7).
 */
describe('batch deducts while one Redis Cluster node stalls', function () {
  this.timeout(180_000);
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let dir: string;
  let h: Harness;
  let probe: Redis;
  let grpcClients: ReturnType<typeof fullClients>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'billing-batch-outage-'));
    cluster = await startRedisCluster(join(dir, 'cluster'));
    const { databaseUrl } = await testServers();
    h = await startHarness({ servers: { redisUrl: cluster.url, databaseUrl }, overrides: SERVICES });
    probe = new Redis(cluster.nodes[0].url);
    grpcClients = fullClients(h.running.grpcAddress!);
  });
  after(async () => {
    for (const n of cluster?.nodes ?? []) n.process.kill('SIGCONT');
    grpcClients?.user.close();
    grpcClients?.internal.close();
    probe?.disconnect();
    await h?.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const unavailableCount = async () => {
    const text = await (
      await fetch(`${h.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text();
    return Number(/billing_gateway_outcomes_total\{op="deduct",outcome="unavailable"\} (\d+)/.exec(text)?.[1] ?? 0);
  };

  /** The port of the master serving a hash tag's slot. */
  async function portOf(tag: string): Promise<number> {
    const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', `{${tag}}`));
    const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (!range) throw new Error(`no node serves slot ${slot}`);
    return range[2][1];
  }

  /** A user of this harness whose keys live on the node at `port` (or, with `not`, anywhere else). */
  async function userOn(name: string, port: number, not = false): Promise<string> {
    for (let i = 0; i < 200; i++) {
      const user = h.user(`${name}${i}`);
      if (((await portOf(user)) === port) !== not) return user;
    }
    throw new Error(`no user found for ${port}`);
  }

  const item = (requestId: string, userId: string) => ({
    request_id: requestId,
    user_id: userId,
    service_name: 'passport',
  });
  /**
   * The node to stall (one that does not hold the queues), a user whose keys live on it and one whose
   * keys do not, each with 1.00 of balance. The node has run the deduct script (a third user's deduct),
   * as a node that has served does: a deduct sent to it while it is stalled then runs when it wakes
   * (on a node without the script it would fail, and be sent again as EVAL only if still waited for).
   */
  async function stalledAndHealthy(nameA: string, nameB: string) {
    const queuePort = await portOf(h.config.queue.prefix.replace(/^\{|\}$/g, ''));
    const stalled = cluster.nodes.find((n) => n.port !== queuePort)!;
    const a = await userOn(nameA, stalled.port);
    const b = await userOn(nameB, stalled.port, true);
    for (const user of [a, b]) await seedBalance(h, user, 1_000_000n);
    const warm = await userOn(`${nameA}Warm`, stalled.port);
    const deduct = { request_id: 'warm', user_id: warm, service_name: 'passport' };
    expect((await h.post('/internal/v1/billing/deduct', deduct)).status).to.equal(402);
    return { stalled, a, b };
  }

  const summary = (results: Result[]) => results.map((r) => [r.index, r.ok, r.code ?? null]);

  it('answers the stalled users 50300 and the others ok; retried, every item is charged once', async () => {
    const { stalled, a, b } = await stalledAndHealthy('stalledA', 'healthyB');

    const mixed = [item('a1', a), item('b1', b), item('a2', a), item('b2', b)];
    stalled.process.kill('SIGSTOP');
    let first: { status: number; body: any };
    let aOnly: { status: number; body: any };
    let overGrpc: { results: { index: number; ok: boolean; code: number; requestId: string }[] };
    const grpcItems = [
      { requestId: 'ga1', userId: a, serviceName: 'passport' },
      { requestId: 'gb1', userId: b, serviceName: 'passport' },
    ];
    try {
      [first, aOnly, overGrpc] = await Promise.all([
        h.post(DEDUCT_BATCH, { items: mixed }),
        h.post(DEDUCT_BATCH, { items: [item('a3', a)] }),
        call(grpcClients.internal, 'DeductBatch', { items: grpcItems }),
      ]);
    } finally {
      stalled.process.kill('SIGCONT');
    }

    expect(first.status).to.equal(200);
    const results = first.body.data.results as Result[];
    expect(summary(results)).to.deep.equal([
      [0, false, 50300],
      [1, true, null],
      [2, false, 50300],
      [3, true, null],
    ]);
    expect(results[0].message).to.contain('same request id');
    expect(results[2].message).to.contain('not tried');
    // Both carry the batch's correlation id, which its log line carries too.
    const [id0, id2] = [results[0], results[2]].map((r) => /correlation id ([0-9a-f-]{36})/.exec(r.message!)?.[1]);
    expect(id0).to.be.a('string').and.equal(id2);
    // Every item met the outage: the whole batch fails, as one call would.
    expect(aOnly.status).to.equal(503);
    expect(aOnly.body.code).to.equal(50300);
    // The items that met the outage are counted: 2 of the HTTP batch, 1 of the gRPC one (the batch that
    // failed whole is a 503, counted by status).
    const metrics = await (
      await fetch(`${h.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text();
    expect(metrics).to.match(/billing_gateway_outcomes_total\{op="deduct",outcome="unavailable"\} 3\n/);
    // gRPC DeductBatch runs the same batches: the same answers.
    expect(overGrpc.results.map((r) => [r.index, r.ok, r.code, r.requestId])).to.deep.equal([
      [0, false, 50300, 'ga1'],
      [1, true, 0, 'gb1'],
    ]);

    // Retried with the same request ids once the node runs again: what went through is a duplicate.
    const again = await h.post(DEDUCT_BATCH, { items: mixed });
    expect(summary(again.body.data.results)).to.deep.equal([
      [0, true, null],
      [1, true, null],
      [2, true, null],
      [3, true, null],
    ]);
    // a1 reached the stalled node before its answer timed out, and ran when the node woke.
    expect(again.body.data.results[0].duplicate).to.equal(true);
    expect(again.body.data.results[1].duplicate).to.equal(true);
    // a2 was never sent (not tried): it applies now, for the first time.
    expect(again.body.data.results[2].duplicate).to.equal(false);
    expect(again.body.data.results[3].duplicate).to.equal(true);
    expect((await h.post(DEDUCT_BATCH, { items: [item('a3', a)] })).body.data.results[0].ok).to.equal(true);
    const grpcAgain = await call(grpcClients.internal, 'DeductBatch', { items: grpcItems });
    expect(grpcAgain.results.map((r: { ok: boolean }) => r.ok)).to.deep.equal([true, true]);
    expect(grpcAgain.results[1].reply.duplicate).to.equal(true);

    const balance = async (user: string) =>
      (await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance;
    expect(await balance(a)).to.equal('0.96');
    expect(await balance(b)).to.equal('0.97');
    // What the stalled node ran on waking (a1, a3, ga1) was answered as a timeout, so nothing queued
    // its persistence, and its retries were duplicates: the scheduled sweep finds it in the journal.
    await h.probe.persistence.sweep(0);
    await h.drain();
    const records = async (user: string) => (await h.get('/api/v1/billing/records', { user_id: user })).body.data.total;
    expect([await records(a), await records(b)]).to.deep.equal([4, 3]);
    await h.assertInvariant([a, b]);
  });

  it('DeductStream: the stalled user’s message 50300, the ones queued behind it 50300 untried, others ok', async () => {
    const { stalled, a, b } = await stalledAndHealthy('streamA', 'streamB');
    const message = (requestId: string, userId: string) => ({ requestId, userId, serviceName: 'passport' });
    const messages = [message('sa1', a), message('sb1', b), message('sa2', a), message('sa3', a), message('sb2', b)];
    const unavailableBefore = await unavailableCount();

    // The same messages on two streams at once, while the node is stalled.
    stalled.process.kill('SIGSTOP');
    let both: StreamAnswer[][];
    try {
      both = await Promise.all([1, 2].map(() => streamAll<StreamAnswer>(grpcClients.internal, messages)));
    } finally {
      stalled.process.kill('SIGCONT');
    }
    for (const answers of both) {
      const byIndex = answers.sort((x, y) => x.index - y.index);
      expect(byIndex.map((x) => [x.index, x.ok, x.code ?? 0])).to.deep.equal([
        [0, false, 50300],
        [1, true, 0],
        [2, false, 50300],
        [3, false, 50300],
        [4, true, 0],
      ]);
      // The first was sent and may have applied; the two queued behind it were not sent (each would have
      // waited out its own timeout on the stalled node, holding the stream's room for other users).
      expect(byIndex[0].message)
        .to.contain('same request id')
        .and.match(/correlation id [0-9a-f-]{36}/);
      expect(byIndex[2].message).to.contain('not tried');
      expect(byIndex[3].message).to.contain('not tried');
    }
    // b's calls went through on the healthy node: each charged by exactly one of the two streams.
    for (const index of [1, 4]) {
      const duplicates = both.map((answers) => answers[index].reply?.duplicate);
      expect(duplicates.sort(), `sb answers at ${index}`).to.deep.equal([false, true]);
    }
    expect((await unavailableCount()) - unavailableBefore).to.equal(6);

    // The same messages again once the node runs: sa1 ran when the node woke (once: the second stream's
    // copy found the first), sa2 and sa3 apply now.
    const again = (await streamAll<StreamAnswer>(grpcClients.internal, messages)).sort((x, y) => x.index - y.index);
    expect(again.map((x) => [x.ok, x.reply?.duplicate])).to.deep.equal([
      [true, true],
      [true, true],
      [true, false],
      [true, false],
      [true, true],
    ]);
    await h.probe.persistence.sweep(0);
    await h.drain();
    const balance = async (user: string) =>
      (await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance;
    expect([await balance(a), await balance(b)]).to.deep.equal(['0.97', '0.98']);
    await h.assertInvariant([a, b]);
  });
});
