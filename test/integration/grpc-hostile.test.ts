import { randomBytes } from 'node:crypto';
import { connect, type IncomingHttpHeaders, type Settings } from 'node:http2';
import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { startHarness, seedBalance, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import { fullClients, metadata, call, callFails, rawCall } from '../fixtures/grpc-clients.js';
import { loadBillingDefinition } from '../../proto/billing/v1/billing.grpc.js';

const INTERNAL_API = '/billing.v1.BillingInternalService';
const varint = (n: number) => {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
};
const stringField = (field: number, s: string) =>
  Buffer.concat([varint((field << 3) | 2), varint(Buffer.byteLength(s)), Buffer.from(s)]);
const varintField = (field: number, n: number) => Buffer.concat([varint(field << 3), varint(n)]);

describe('hostile input over gRPC', function () {
  this.timeout(180_000);
  let h: Harness;
  let full: ReturnType<typeof fullClients>;
  let address: string;
  const user = () => h.user('victim');

  before(async () => {
    h = await startHarness({ overrides: { services: [{ name: 'passport', free_quota: 3, unit_price: '0.001' }] } });
    address = h.running.grpcAddress!;
    // The client may send more than the server accepts: the server's bound is what is tested.
    full = fullClients(address, { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
    await seedBalance(h, user(), 1_000_000n);
  });
  after(async () => {
    full.user.close();
    full.internal.close();
    await h.stop();
  });

  /** Nothing was charged to the victim, and SPEC 7 holds. */
  async function unchanged() {
    const account = await call(full.user, 'GetAccount', { userId: user() });
    expect(account.balanceDecimal).to.equal('1.00');
    expect(account.quotas[0].usedQuota).to.equal(0);
    await h.drain();
    await h.assertInvariant([user()]);
  }

  it('refuses wrong wire types and garbage bytes with INVALID_ARGUMENT, never INTERNAL', async () => {
    const cases = [
      Buffer.concat([varintField(1, 5), stringField(2, 'passport'), stringField(5, 'r1')]), // userId as a number
      // count as text
      Buffer.concat([stringField(1, user()), stringField(2, 'passport'), stringField(3, '5'), stringField(5, 'r1')]),
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // a string longer than the message
      Buffer.from([0xff, 0xff, 0xff]),
    ];
    for (let i = 0; i < 200; i++) cases.push(randomBytes(1 + (i % 64)));
    for (const bytes of cases) {
      for (const method of ['DeductQuota', 'CheckQuota', 'DeductBatch']) {
        const { error } = await rawCall(
          address,
          `${INTERNAL_API}/${method}`,
          bytes,
          metadata({ 'x-request-id': 'raw' }),
        );
        expect(error, `${method} ${bytes.toString('hex')}`).to.not.equal(null);
        expect(
          [grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.FAILED_PRECONDITION],
          `${method} ${bytes.toString('hex')}: ${error!.details}`,
        ).to.include(error!.code);
        expect(error!.billingCode).to.be.a('number');
      }
    }
    const undecodable = await rawCall(address, `${INTERNAL_API}/DeductQuota`, cases[2]);
    expect(undecodable.error).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    expect((await rawCall(address, `${INTERNAL_API}/NoSuchMethod`, Buffer.alloc(0))).error!.code).to.equal(
      grpc.status.UNIMPLEMENTED,
    );
    await unchanged();
  });

  it('refuses missing fields, bad ids, huge or negative counts and unknown services, changing nothing', async () => {
    const base = { userId: user(), serviceName: 'passport', count: 1, requestId: 'h1' };
    const deducts: Record<string, unknown>[] = [
      {},
      { ...base, userId: '' },
      { ...base, serviceName: '' },
      { ...base, requestId: '' },
      { ...base, count: 2_147_483_647 },
      { ...base, count: -1 },
      { ...base, count: -2_147_483_648 },
      { ...base, userId: `${user()}{x}` },
      { ...base, userId: 'u'.repeat(65) },
      { ...base, userId: `${user()}\u0000` },
      { ...base, userId: 'ユーザー' },
      { ...base, requestId: 'r'.repeat(129) },
      { ...base, requestId: 'a\nb' },
    ];
    for (const req of deducts) {
      expect(await callFails(full.internal, 'DeductQuota', req), JSON.stringify(req).slice(0, 80)).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 40000,
      });
    }
    for (const serviceName of ['nope', 'constructor', '__proto__', 'toString', 'PASSPORT', 's'.repeat(64)]) {
      expect(await callFails(full.internal, 'DeductQuota', { ...base, serviceName }), serviceName).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 10006,
      });
      expect(await callFails(full.internal, 'CheckQuota', { ...base, serviceName }), serviceName).to.include({
        billingCode: 10006,
      });
    }
    expect(await call(full.internal, 'CheckQuota', { ...base, count: 2_147_483_647 })).to.include({
      allowed: false,
      reason: 'too_many_calls',
    });
    expect(await callFails(full.internal, 'CheckQuota', { ...base, count: -7 })).to.include({ billingCode: 40000 });
    for (const method of [
      'GetAccount',
      'ListRecords',
      'GetStatsToday',
      'GetStatsMonth',
      'GetStatsSummary',
      'Recharge',
    ]) {
      expect(await callFails(full.user, method, {}), method).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 40000,
      });
    }
    for (const method of ['CheckQuota', 'Reserve', 'CommitReservation', 'ReleaseReservation']) {
      expect(await callFails(full.internal, method, {}), method).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 40000,
      });
    }
    expect(await callFails(full.user, 'ListRecords', { userId: user(), page: -1 })).to.include({ billingCode: 40000 });
    expect(await callFails(full.user, 'ListRecords', { userId: user(), pageSize: 101 })).to.include({
      billingCode: 40000,
    });
    expect(await callFails(full.user, 'ListRecords', { userId: user(), cursor: 'x'.repeat(300) })).to.include({
      billingCode: 40000,
    });
    expect(await callFails(full.user, 'ListRecords', { userId: user(), type: 'gift' })).to.include({
      billingCode: 40000,
    });
    await unchanged();
  });

  it('refuses oversized messages before decoding them, and keeps serving', async () => {
    const big = await callFails(full.internal, 'DeductQuota', {
      userId: 'u'.repeat(2 * 1024 * 1024),
      serviceName: 'passport',
      requestId: 'big',
    });
    expect(big.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    const items = Array.from({ length: 50_000 }, (_, i) => ({
      userId: user(),
      serviceName: 'passport',
      requestId: `b${i}`,
      count: 1,
    }));
    expect((await callFails(full.internal, 'DeductBatch', { items })).code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
    expect((await callFails(full.internal, 'DeductBatch', { items: items.slice(0, 1001) })).billingCode).to.equal(
      40000,
    );
    expect(await call(full.internal, 'CheckQuota', { userId: user(), serviceName: 'passport' })).to.include({
      allowed: true,
    });
    await unchanged();
  });

  it('refuses a DeductBatch of too many items from its bytes: an open call holds no decoded items', async () => {
    const emptyItems = (n: number) => Buffer.alloc(2 * n, Buffer.from([0x0a, 0x00])); // field 1, length 0
    const over = await rawCall(address, `${INTERNAL_API}/DeductBatch`, emptyItems(1001));
    expect(over.error).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    // Just under the 1 MB message limit: 524,280 empty items, each an object of every field once decoded.
    // Calls that never half-close keep what was decoded: nothing, as the count is refused first.
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), emptyItems(524_280)]);
    frame.writeUInt32BE(frame.length - 5, 1);
    const session = connect(`http://${address}`);
    const heapBefore = process.memoryUsage().heapUsed;
    const calls = Array.from({ length: 8 }, () => {
      const stream = session.request({
        ':method': 'POST',
        ':path': `${INTERNAL_API}/DeductBatch`,
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization: `Bearer ${GATEWAY_TOKEN}`,
      });
      stream.on('error', () => undefined);
      stream.resume();
      stream.write(frame);
      return stream;
    });
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const heldMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
    // Decoded first, the 8 calls held about 600 MB.
    if (heldMb >= 100) session.destroy();
    expect(heldMb, `heap grew by ${heldMb.toFixed(0)} MB`).to.be.below(100);
    const trailers = await Promise.all(
      calls.map(
        (stream) =>
          new Promise<string>((resolve) => {
            // The status comes in trailers, or in the headers of a trailers-only answer.
            const status = (h: IncomingHttpHeaders) => {
              if (h['grpc-status'] !== undefined) resolve(`${h['grpc-status']} ${h['billing-code']}`);
            };
            stream.on('response', status);
            stream.on('trailers', status);
            stream.on('close', () => resolve('closed without a status'));
            stream.end();
          }),
      ),
    );
    session.close();
    expect(new Set(trailers)).to.deep.equal(new Set([`${grpc.status.INVALID_ARGUMENT} 40000`]));
    await unchanged();
  });

  it('asks anonymous callers for credentials before reading their messages; caps streams per connection', async () => {
    const anonymous = metadata({}, null);
    const wrong = metadata({}, 'not-the-token');
    // Over the size limit: with the token it is RESOURCE_EXHAUSTED (above); without, its bytes are never read.
    const big = { userId: 'u'.repeat(2 * 1024 * 1024), serviceName: 'passport', requestId: 'big' };
    for (const md of [anonymous, wrong]) {
      expect(await callFails(full.internal, 'DeductQuota', big, md)).to.include({
        code: grpc.status.UNAUTHENTICATED,
        billingCode: 40100,
      });
      const garbage = await rawCall(address, `${INTERNAL_API}/DeductBatch`, randomBytes(4096), md);
      expect(garbage.error).to.include({ code: grpc.status.UNAUTHENTICATED, billingCode: 40100 });
    }
    // A DeductStream without the token ends before any message is read.
    const stream = full.internal.makeBidiStreamRequest(
      `${INTERNAL_API}/DeductStream`,
      (m: Buffer) => m,
      (b: Buffer) => b,
      anonymous,
    );
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    stream.on('data', () => undefined);
    stream.write(Buffer.from('not a message'));
    expect((await ended).code).to.equal(grpc.status.UNAUTHENTICATED);
    // What the server tells every client in its HTTP/2 settings (Node's default: 2^32 - 1).
    const session = connect(`http://${address}`);
    try {
      const settings = await new Promise<Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.maxConcurrentStreams).to.equal(1000);
    } finally {
      session.close();
    }
    await unchanged();
  });

  it('answers garbage inside a DeductStream message by message, and the stream goes on', async () => {
    const method = loadBillingDefinition()['billing.v1.BillingInternalService'] as grpc.ServiceDefinition;
    const { requestSerialize, responseDeserialize } = method.DeductStream;
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const stream = client.makeBidiStreamRequest(
      `${INTERNAL_API}/DeductStream`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      metadata(),
    );
    const answers: any[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (b: Buffer) => answers.push(responseDeserialize(b)));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const sent: ('garbage' | 'ok' | 'refused')[] = [];
    const other = h.user('stream-garbage');
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 0) {
        stream.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, i]));
        sent.push('garbage');
      } else if (i % 3 === 1) {
        stream.write(requestSerialize({ userId: other, serviceName: 'passport', requestId: `g${i}` }));
        sent.push('ok');
      } else {
        stream.write(requestSerialize({ userId: other, serviceName: 'nope', requestId: `n${i}`, count: -5 }));
        sent.push('refused');
      }
    }
    stream.end();
    await done;
    client.close();
    expect(answers).to.have.length(60);
    for (const a of answers) {
      const kind = sent[a.index];
      if (kind === 'garbage' || kind === 'refused') expect(a, kind).to.include({ ok: false, code: 40000 });
      else expect(a.ok || a.code === 10001, JSON.stringify(a)).to.equal(true);
    }
    // 20 valid deducts: 3 free calls, no balance for the rest.
    const charged = answers.filter((a) => a.ok);
    expect(charged).to.have.length(3);
    expect(answers.filter((a) => !a.ok && a.code === 10001)).to.have.length(17);
    await h.drain();
    await h.assertInvariant([other]);
    await unchanged();
  });

  it('keeps a stream cancelled mid-way from charging twice on retry', async () => {
    const other = h.user('cancel');
    await seedBalance(h, other, 1_000_000n);
    const stream = (full.internal as any).DeductStream(metadata());
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    for (let i = 0; i < 200; i++) stream.write({ userId: other, serviceName: 'passport', requestId: `c${i}` });
    await new Promise((r) => setTimeout(r, 20));
    stream.cancel();
    await new Promise((r) => setTimeout(r, 200));
    // The client retries everything: what went through answers as duplicates.
    const retried = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        call(full.internal, 'DeductQuota', { userId: other, serviceName: 'passport', requestId: `c${i}` }),
      ),
    );
    expect(new Set(retried.map((r) => r.recordId)).size).to.equal(200);
    await h.drain();
    expect((await call(full.user, 'ListRecords', { userId: other })).total).to.equal(200);
    await h.assertInvariant([other]);
  });
});
