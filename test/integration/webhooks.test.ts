import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { startRedis, type LocalServer } from '../../scripts/local-servers.js';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { WebhookReceiver, signatureValid } from '../support/webhook-receiver.js';

/*
 * SPEC 13 webhooks against a real HTTP receiver that fails, stalls, never answers and answers too
 * much: at least once, same event id, valid signature, every attempt recorded, no endpoint slowed
 * by another.
 */
const SERVICES = [{ name: 'tokens', free_quota: 0, unit_price: '1' }];
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const M = 1_000_000n;

interface Endpoint {
  id: string;
  secret: string;
}

/** The admin CLI, run as an operator would, against the harness's servers. */
function adminCli(
  env: Record<string, string>,
  args: string[],
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main/admin.ts', ...args], {
      env: { ...process.env, ...env },
      timeout: 30_000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Makes one balance.low event for a new user (the only event of that user); returns its id. */
async function lowEvent(h: Harness, name: string): Promise<string> {
  const user = h.user(name);
  await seedBalance(h, user, 11n * M);
  const r = await h.post('/internal/v1/billing/deduct', {
    request_id: 'x',
    user_id: user,
    service_name: 'tokens',
    count: 2,
  });
  expect(r.status).to.equal(200);
  await h.drain();
  const events = (await h.get('/admin/v1/events', { user_id: user }, admin)).body.data.events;
  expect(events.map((e: { type: string }) => e.type)).to.deep.equal(['balance.low']);
  return events[0].id;
}

describe('webhooks (SPEC 13)', function () {
  this.timeout(120_000);
  let h: Harness;
  let rx: WebhookReceiver;
  const created: string[] = [];

  async function endpoint(path: string, behaviour: Parameters<WebhookReceiver['on']>[1], events = ['*']) {
    const r = await h.post('/admin/v1/webhooks', { url: rx.on(path, behaviour), events }, admin);
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    created.push(r.body.data.id);
    return r.body.data as Endpoint;
  }

  before(async () => {
    rx = await new WebhookReceiver().start();
    h = await startHarness({
      overrides: { services: SERVICES, webhooks: { timeout: '1s', backoff_base: '200ms', dispatch_every: '1s' } },
    });
  });
  afterEach(async () => {
    // Each case's endpoints go, so the next case's events reach only its own.
    for (const id of created.splice(0)) await h.del(`/admin/v1/webhooks/${id}`, admin);
  });
  after(async () => {
    await h.stop();
    await rx.stop();
  });

  it('a receiver failing 3 times, one timing out and one answering 2xx each get the event, signed, same id', async () => {
    const failing = await endpoint('/fail', 'fail:3');
    const stalling = await endpoint('/stall', 'stall:1');
    const fine = await endpoint('/fine', 'ok', ['balance.low']);
    const other = await endpoint('/other', 'ok', ['quota.low']);
    const id = await lowEvent(h, 'three');
    await rx.waitFor(
      () => rx.at('/fail', id).length >= 4 && rx.at('/stall', id).length >= 2 && rx.at('/fine', id).length >= 1,
    );
    for (const [path, ep] of [
      ['/fail', failing],
      ['/stall', stalling],
      ['/fine', fine],
    ] as const) {
      for (const got of rx.at(path, id)) {
        expect(got.eventType).to.equal('balance.low');
        expect(JSON.parse(got.body).id).to.equal(id);
        expect(signatureValid(got.signature, got.body, ep.secret), path).to.equal(true);
        expect(signatureValid(got.signature, got.body, other.secret), path).to.equal(false);
      }
    }
    expect(rx.at('/other')).to.have.length(0);

    await new Promise((r) => setTimeout(r, 500)); // the last attempt's row lands after the answer
    const attempts = (await h.get(`/admin/v1/webhooks/${failing.id}/deliveries`, { event_id: id }, admin)).body.data
      .deliveries;
    expect(attempts.map((a: any) => [a.attempt, a.statusCode, a.delivered])).to.deep.equal([
      [4, 200, true],
      [3, 500, false],
      [2, 500, false],
      [1, 500, false],
    ]);
    expect(attempts[1].responseExcerpt).to.equal('failing attempt 3');
    // The first attempt is a batch's, the retries a single job's: the backoff doubles on from the base (200 ms).
    const at = rx.at('/fail', id).map((r) => r.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    gaps.forEach((gap, i) => expect(gap, `wait before attempt ${i + 2}`).to.be.at.least(0.9 * 200 * 2 ** i));
    const stalled = (await h.get(`/admin/v1/webhooks/${stalling.id}/deliveries`, {}, admin)).body.data.deliveries;
    expect(stalled[stalled.length - 1]).to.include({ statusCode: null, delivered: false });
    expect(stalled[stalled.length - 1].error).to.match(/timed out/);
  });

  it('re-sends an event on request (the receiver dedupes by the same id), from the admin API and the CLI', async () => {
    const ep = await endpoint('/twice', 'ok');
    const id = await lowEvent(h, 'twice');
    await rx.waitFor(() => rx.at('/twice', id).length === 1);
    const again = await h.post(`/admin/v1/webhooks/${ep.id}/resend`, { event_id: id }, admin);
    expect(again.status, JSON.stringify(again.body)).to.equal(202);
    await rx.waitFor(() => rx.at('/twice', id).length === 2);
    const [first, second] = rx.at('/twice', id);
    expect(JSON.parse(second.body)).to.deep.equal(JSON.parse(first.body));
    expect(signatureValid(second.signature, second.body, ep.secret)).to.equal(true);
    const missing = await h.post(`/admin/v1/webhooks/${ep.id}/resend`, { event_id: 'evt_nope' }, admin);
    expect(missing.status).to.equal(404);
    const cli = await adminCli(h.env, ['webhook-resend', ep.id, id]);
    expect(cli.code, cli.err).to.equal(0);
    expect(JSON.parse(cli.out)).to.include({ endpointId: ep.id, eventId: id });
    await rx.waitFor(() => rx.at('/twice', id).length === 3);
    expect(JSON.parse(rx.at('/twice', id)[2].body).id).to.equal(id);
    const unknown = await adminCli(h.env, ['webhook-resend', ep.id, 'evt_nope']);
    expect(unknown.code).to.equal(1);
    expect(unknown.err).to.match(/event evt_nope not found/);
    expect(unknown.err).to.not.match(/\n\s+at /);
  });

  it('a rotated secret keeps signing beside the new one for the overlap window', async () => {
    const ep = await endpoint('/rotate', 'ok');
    const rotated = await h.post(`/admin/v1/webhooks/${ep.id}/rotate-secret`, {}, admin);
    expect(rotated.status).to.equal(200);
    expect(rotated.body.data.secret).to.not.equal(ep.secret);
    expect(rotated.body.data.previousSecretUntil).to.be.a('string');
    const id = await lowEvent(h, 'rotate');
    await rx.waitFor(() => rx.at('/rotate', id).length === 1);
    const got = rx.at('/rotate', id)[0];
    expect(got.signature.split(',').filter((p) => p.startsWith('v1='))).to.have.length(2);
    expect(signatureValid(got.signature, got.body, rotated.body.data.secret)).to.equal(true);
    expect(signatureValid(got.signature, got.body, ep.secret)).to.equal(true);
  });

  it('stores at most 1 KiB of an answer, however large', async () => {
    const ep = await endpoint('/huge', 'huge');
    const id = await lowEvent(h, 'huge');
    await rx.waitFor(() => rx.at('/huge', id).length === 1);
    await new Promise((r) => setTimeout(r, 300));
    const [attempt] = (await h.get(`/admin/v1/webhooks/${ep.id}/deliveries`, {}, admin)).body.data.deliveries;
    expect(attempt).to.include({ statusCode: 200, delivered: true });
    expect(attempt.responseExcerpt).to.equal('x'.repeat(1024));
  });

  it('a dead endpoint does not slow another endpoint: each has its own queue', async () => {
    await endpoint('/dead', 'dead');
    const live = await endpoint('/live', 'ok');
    const users = Array.from({ length: 20 }, (_, i) => h.user(`fair${i}`));
    await Promise.all(users.map((u) => seedBalance(h, u, 11n * M)));
    const started = Date.now();
    await Promise.all(
      users.map((u) =>
        h.post('/internal/v1/billing/deduct', { request_id: 'f', user_id: u, service_name: 'tokens', count: 2 }),
      ),
    );
    await h.drain();
    // 20 events; the dead endpoint, 4 at a time with a 1 s timeout, needs 5 s for its first attempts alone.
    await rx.waitFor(() => new Set(rx.at('/live').map((r) => r.eventId)).size === 20, 4_000, 'the live endpoint');
    expect(Date.now() - started).to.be.below(4_000);
    expect(rx.at('/live').every((r) => signatureValid(r.signature, r.body, live.secret))).to.equal(true);
  });

  it('manages endpoints: list, get, delete; unknown ids are 404', async () => {
    const ep = await endpoint('/manage', 'ok', ['balance.low', 'quota.low']);
    const got = await h.get(`/admin/v1/webhooks/${ep.id}`, {}, admin);
    expect(got.body.data).to.include({ id: ep.id, url: `${rx.url}/manage` });
    expect(got.body.data).to.not.have.property('secret');
    expect(got.body.data.events).to.deep.equal(['balance.low', 'quota.low']);
    const list = await h.get('/admin/v1/webhooks', {}, admin);
    expect(list.body.data.endpoints.map((e: any) => e.id)).to.include(ep.id);
    expect((await h.del(`/admin/v1/webhooks/${ep.id}`, admin)).status).to.equal(200);
    expect((await h.get(`/admin/v1/webhooks/${ep.id}`, {}, admin)).status).to.equal(404);
    expect((await h.del(`/admin/v1/webhooks/${ep.id}`, admin)).status).to.equal(404);
    created.splice(created.indexOf(ep.id), 1);
  });

  it('a burst goes out in batches of ≤ 100 at the endpoint rate; a batch run again sends none twice', async () => {
    const ep = await endpoint('/burst', 'ok', ['balance.low']);
    const users = Array.from({ length: 150 }, (_, i) => h.user(`burst${i}`));
    await Promise.all(users.map((u) => seedBalance(h, u, 11n * M)));
    const deducts = await Promise.all(
      users.map((u) =>
        h.post('/internal/v1/billing/deduct', { request_id: 'b', user_id: u, service_name: 'tokens', count: 2 }),
      ),
    );
    expect(deducts.every((r) => r.status === 200)).to.equal(true);
    await h.drain();
    await rx.waitFor(() => new Set(rx.at('/burst').map((r) => r.eventId)).size === 150, 30_000, 'the burst');
    const got = rx.at('/burst');
    expect(got, 'each event once').to.have.length(150);
    // At most webhooks.max_per_second_per_endpoint (25) started in any second.
    const at = got.map((r) => r.at).sort((a, b) => a - b);
    const busiest = Math.max(...at.map((t, i) => at.filter((u, j) => j >= i && u < t + 1000).length));
    expect(busiest, 'deliveries in the busiest second').to.be.at.most(26);

    const queue = new Queue(`webhook-${ep.id}`, { connection: { url: h.env.REDIS_URL }, prefix: h.env.QUEUE_PREFIX });
    try {
      // The last batch completes once its attempts' rows are in, a little after its last POST arrived.
      for (let i = 0; (await queue.getJobCounts('active')).active > 0; i++) {
        expect(i, 'the batches complete').to.be.below(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      const jobs = await queue.getJobs(['completed']);
      const batches = jobs.filter((j) => j.name === 'deliver-webhook-batch');
      expect(jobs.length, 'jobs: batches only, no retry').to.equal(batches.length);
      expect(batches.length).to.be.within(2, 20);
      expect(batches.every((j) => j.data.eventIds.length <= 100)).to.equal(true);
      const ids = batches.flatMap((j) => j.data.eventIds as string[]);
      expect(new Set(ids)).to.deep.equal(new Set(got.map((r) => r.eventId)));
      expect(ids).to.have.length(150);
      // The same batch run again (as after a crash mid-batch): what is recorded delivered is skipped.
      const rerun = await queue.add('deliver-webhook-batch', batches[0].data, { jobId: 'rerun' });
      for (let i = 0; (await queue.getJobState(rerun.id!)) !== 'completed'; i++) {
        expect(i, 'the re-run completes').to.be.below(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await queue.getJob(rerun.id!))!.returnvalue).to.deep.equal({
        delivered: 0,
        handedOn: 0,
        skipped: batches[0].data.eventIds.length,
      });
      expect(rx.at('/burst')).to.have.length(150);
    } finally {
      await queue.close();
    }
  });

  it('a batch run again hands on the events it failed instead of sending them again', async () => {
    const ep = await endpoint('/always-500', 'fail:1000', ['balance.low']);
    const id = await lowEvent(h, 'rerun-failed');
    const queue = new Queue(`webhook-${ep.id}`, { connection: { url: h.env.REDIS_URL }, prefix: h.env.QUEUE_PREFIX });
    try {
      let batch: Awaited<ReturnType<Queue['getJobs']>>[number] | undefined;
      for (
        let i = 0;
        !(batch = (await queue.getJobs(['completed'])).find((j) => j.name === 'deliver-webhook-batch'));
        i++
      ) {
        expect(i, 'the batch completes').to.be.below(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(batch.returnvalue).to.deep.equal({ delivered: 0, handedOn: 1, skipped: 0 });
      const rerun = await queue.add('deliver-webhook-batch', batch.data, { jobId: 'rerun-failed' });
      for (let i = 0; (await queue.getJobState(rerun.id!)) !== 'completed'; i++) {
        expect(i, 'the re-run completes').to.be.below(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await queue.getJob(rerun.id!))!.returnvalue).to.deep.equal({ delivered: 0, handedOn: 1, skipped: 0 });
      const firsts = await h.probe.db('webhook_deliveries').where({ endpoint_id: ep.id, event_id: id, attempt: 1 });
      expect(firsts, 'first attempts of the event').to.have.length(1);
      expect((await queue.getJob(`${id}.${ep.id}`))!.data).to.include({ eventId: id, attemptsBefore: 1 });
    } finally {
      await queue.close();
    }
  });

  it('refuses hostile endpoint input with clear 400s and creates nothing', async () => {
    const before = (await h.get('/admin/v1/webhooks', {}, admin)).body.data.endpoints.length;
    const bad: unknown[] = [
      { url: 'ftp://example.com/x', events: ['*'] },
      { url: 'file:///etc/passwd', events: ['*'] },
      { url: 'javascript:alert(1)', events: ['*'] },
      { url: 'http://user:pass@example.com/hook', events: ['*'] },
      { url: 'https://user@example.com/hook', events: ['*'] },
      { url: 'not a url', events: ['*'] },
      { url: `https://example.com/${'a'.repeat(3000)}`, events: ['*'] },
      { url: 'https://example.com/hook', events: ['balance.nope'] },
      { url: 'https://example.com/hook', events: [] },
      { url: 'https://example.com/hook', events: ['*', 'balance.low'] },
      { url: 'https://example.com/hook', events: ['balance.low', 'balance.low'] },
      { url: 'https://example.com/hook', events: 'balance.low' },
      { url: 'https://example.com/hook', events: ['*'], description: 'd'.repeat(256) },
      { url: 'https://example.com/hook', events: ['*'], secret: 'mine' },
      { url: 12, events: ['*'] },
      [],
    ];
    for (const body of bad) {
      const r = await h.post('/admin/v1/webhooks', body, admin);
      expect(r.status, JSON.stringify(body).slice(0, 100)).to.equal(400);
      expect(r.body.code).to.equal(40000);
      expect(r.body.message).to.not.match(/at .*\.ts/);
    }
    const huge = await h.post(
      '/admin/v1/webhooks',
      { url: 'https://example.com/h', events: ['*'], description: 'x'.repeat(2 << 20) },
      admin,
    );
    expect([400, 413]).to.include(huge.status);
    for (const id of ['a b', '../x', 'x'.repeat(41)]) {
      const r = await h.get(`/admin/v1/webhooks/${encodeURIComponent(id)}`, {}, admin);
      expect(r.status, id).to.equal(400);
    }
    expect((await h.post('/admin/v1/webhooks', { url: 'https://example.com/h', events: ['*'] })).status).to.equal(401);
    expect((await h.get('/admin/v1/webhooks', {}, admin)).body.data.endpoints.length).to.equal(before);
  });
});

describe('webhook deliveries on a Redis of their own (webhooks.redis_url)', function () {
  this.timeout(120_000);
  let h: Harness;
  let rx: WebhookReceiver;
  let deliveryRedis: LocalServer;
  let dir: string;
  let endpointId = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'billing-delivery-redis-'));
    deliveryRedis = await startRedis({ dir, aof: false });
    rx = await new WebhookReceiver().start();
    h = await startHarness({
      overrides: { services: SERVICES, webhooks: { timeout: '1s', backoff_base: '200ms', dispatch_every: '1s' } },
      env: { WEBHOOKS_REDIS_URL: deliveryRedis.url },
    });
  });
  after(async () => {
    if (endpointId) await h.del(`/admin/v1/webhooks/${endpointId}`, admin);
    await h.stop();
    await rx.stop();
    await deliveryRedis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers, retries and re-sends through that Redis; the counters’ Redis holds no delivery', async () => {
    const created = await h.post('/admin/v1/webhooks', { url: rx.on('/own', 'fail:1'), events: ['*'] }, admin);
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    endpointId = created.body.data.id;
    const id = await lowEvent(h, 'own-redis');
    await rx.waitFor(() => rx.at('/own', id).length >= 2);
    const again = await h.post(`/admin/v1/webhooks/${endpointId}/resend`, { event_id: id }, admin);
    expect(again.status, JSON.stringify(again.body)).to.equal(202);
    const cli = await adminCli(h.env, ['webhook-resend', endpointId, id]);
    expect(cli.code, cli.err).to.equal(0);
    await rx.waitFor(() => rx.at('/own', id).length >= 4);
    for (const got of rx.at('/own', id)) {
      expect(signatureValid(got.signature, got.body, created.body.data.secret)).to.equal(true);
    }
    const queueKeys = `${h.env.QUEUE_PREFIX}:webhook-${endpointId}:*`;
    const own = new Redis(deliveryRedis.url);
    try {
      expect((await own.keys(queueKeys)).length, 'delivery queue keys on the delivery Redis').to.be.greaterThan(0);
    } finally {
      own.disconnect();
    }
    expect(await h.probe.redis.keys(queueKeys), 'delivery queue keys on the counters’ Redis').to.deep.equal([]);
  });
});

describe('deliveries wait for spare CPU (webhooks.yield_above_cpu_percent)', function () {
  this.timeout(120_000);
  let h: Harness;
  let rx: WebhookReceiver;
  let webhooks: { close(): Promise<void> } | undefined;
  let endpointId = '';
  let secret = '';
  // The machine's CPU as the delivering process reads it (/proc/stat's first line), moved by the test.
  const machine = { busyPercent: 95, normal: 0, idle: 0 };
  const readCpuStat = () => {
    machine.normal += machine.busyPercent * 1_000;
    machine.idle += (100 - machine.busyPercent) * 1_000;
    return Promise.resolve(`cpu  ${machine.normal} 0 0 ${machine.idle} 0 0 0 0 0 0\n`);
  };

  before(async () => {
    rx = await new WebhookReceiver().start();
    // The worker role leaves deliveries to a delivering process of the test's own, as npm start does.
    h = await startHarness({
      overrides: { services: SERVICES, webhooks: { timeout: '1s', backoff_base: '200ms', dispatch_every: '1s' } },
      env: { WEBHOOKS_OWN_PROCESS: 'true' },
    });
    const created = await h.post('/admin/v1/webhooks', { url: rx.on('/gated', 'ok'), events: ['*'] }, admin);
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    endpointId = created.body.data.id;
    secret = created.body.data.secret;
    webhooks = await startDelivering();
    // Its gate has a reading after two samples (500 ms apart); before that it holds nothing.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
  });
  after(async () => {
    await webhooks?.close();
    if (endpointId) await h.del(`/admin/v1/webhooks/${endpointId}`, admin);
    await h.stop();
    await rx.stop();
  });

  /** A delivering process's workers, reading the test's machine; a wait is held up to a minute here. */
  async function startDelivering() {
    const { startWorkers } = await import('../../src/workers/workers.js');
    return startWorkers(
      {
        ...h.probe.workers,
        webhookCpuGate: { holdAbovePercent: 75, leaveOutOwn: false, maxHoldMs: 60_000, readStat: readCpuStat },
      },
      ['webhooks'],
      true,
    );
  }

  it('holds an event while the machine is busy and delivers it once the CPU frees up', async () => {
    machine.busyPercent = 95;
    const id = await lowEvent(h, 'gated');
    // Busy: the delivering process holds it (the endpoint's worker starts within 2 s).
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(rx.at('/gated'), 'delivered while the machine was busy').to.have.length(0);
    machine.busyPercent = 30;
    const freed = Date.now();
    await rx.waitFor(() => rx.at('/gated', id).length === 1, 3_000, 'the held delivery');
    expect(Date.now() - freed).to.be.below(2_000);
    const got = rx.at('/gated')[0];
    expect(signatureValid(got.signature, got.body, secret)).to.equal(true);
  });

  it('stopped while it holds a batch and a re-send, it sends nothing; the next process sends each once', async () => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const attempts = async (eventId: string) =>
      (await h.probe.db('webhook_deliveries').where({ event_id: eventId })).map((a) => [a.attempt, a.delivered]);
    machine.busyPercent = 30;
    await sleep(1_200); // the gate's next samples
    const earlier = await lowEvent(h, 'gated-stop-1');
    await rx.waitFor(() => rx.at('/gated', earlier).length === 1, 6_000, 'the first delivery');
    machine.busyPercent = 95;
    await sleep(1_200);
    // Held: a re-send (a single deliver-webhook job) and a new event's batch job.
    const resent = await h.post(`/admin/v1/webhooks/${endpointId}/resend`, { event_id: earlier }, admin);
    expect(resent.status, JSON.stringify(resent.body)).to.equal(202);
    const id = await lowEvent(h, 'gated-stop-2');
    await sleep(3_000);
    await webhooks!.close();
    webhooks = undefined;
    expect(rx.at('/gated', earlier), 're-sent by the stopping process').to.have.length(1);
    expect(rx.at('/gated', id), 'sent by the stopping process').to.have.length(0);
    expect(await attempts(earlier)).to.deep.equal([[1, 1]]);
    expect(await attempts(id)).to.deep.equal([]);
    machine.busyPercent = 30;
    webhooks = await startDelivering();
    await rx.waitFor(
      () => rx.at('/gated', earlier).length === 2 && rx.at('/gated', id).length === 1,
      8_000,
      'the deliveries after the restart',
    );
    await sleep(1_000);
    expect(rx.at('/gated', earlier)).to.have.length(2);
    expect(rx.at('/gated', id)).to.have.length(1);
    // Neither used an attempt while held and stopped.
    expect(await attempts(earlier)).to.deep.equal([
      [1, 1],
      [1, 1],
    ]);
    expect(await attempts(id)).to.deep.equal([[1, 1]]);
  });
});
