import { expect } from 'chai';
import * as grpc from '@grpc/grpc-js';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import {
  originalClients,
  fullClients,
  healthClient,
  reflectionClient,
  metadata,
  call,
  callFails,
} from '../fixtures/grpc-clients.js';

describe('gRPC API (billing.v1)', function () {
  this.timeout(120_000);
  let h: Harness;
  let old: ReturnType<typeof originalClients>;
  let full: ReturnType<typeof fullClients>;

  before(async function () {
    h = await startHarness({
      overrides: {
        services: [
          { name: 'passport', free_quota: 3, unit_price: '0.001' },
          { name: 'asset', free_quota: 2, unit_price: '0.5' },
          { name: 'freebie', free_quota: 2, unit_price: null },
        ],
      },
    });
    expect(h.running.grpcAddress).to.match(/^127\.0\.0\.1:\d+$/);
    old = originalClients(h.running.grpcAddress!);
    full = fullClients(h.running.grpcAddress!);
  });
  after(async () => {
    for (const c of [old, full]) {
      c.user.close();
      c.internal.close();
    }
    await h.stop();
  });

  it('serves a client built from the original contract: account, check, deduct, records, statistics', async () => {
    const user = h.user('old');
    await seedBalance(h, user, 2_000_000n);
    const account = await call(old.user, 'GetAccount', { userId: user });
    expect(account.userId).to.equal(user);
    expect(account.balance).to.equal(2);
    expect(account.quotas.map((q: any) => [q.serviceName, q.totalQuota, q.usedQuota])).to.deep.equal([
      ['passport', 3, 0],
      ['asset', 2, 0],
      ['freebie', 2, 0],
    ]);
    expect(account.quotas[0].resetMonth).to.match(/^\d{4}-\d{2}$/);

    expect(await call(old.internal, 'CheckQuota', { userId: user, serviceName: 'asset', count: 3 })).to.deep.equal({
      allowed: true,
      reason: 'balance',
    });
    expect(await call(old.internal, 'CheckQuota', { userId: user, serviceName: 'asset', count: 7 })).to.deep.equal({
      allowed: false,
      reason: 'insufficient_balance',
    });

    const first = await call(
      old.internal,
      'DeductQuota',
      { userId: user, serviceName: 'asset', count: 3, cost: 999 },
      metadata({ 'x-request-id': 'old-1' }),
    );
    expect(first.success).to.equal(true);
    expect(first.recordId).to.match(/^rec_/);
    const again = await call(
      old.internal,
      'DeductQuota',
      { userId: user, serviceName: 'asset', count: 3, cost: 0 },
      metadata({ 'x-request-id': 'old-1' }),
    );
    expect(again).to.deep.equal(first);
    await call(
      old.internal,
      'DeductQuota',
      { userId: user, serviceName: 'passport' },
      metadata({ 'x-request-id': 'old-2' }),
    );
    // 2 free + 1 paid asset call at 0.5, and 1 free passport call (count 0 is proto3's unset: 1)
    expect((await call(old.user, 'GetAccount', { userId: user })).balance).to.equal(1.5);

    await h.drain();
    const records = await call(old.user, 'ListRecords', { userId: user, page: 1, pageSize: 10 });
    expect(records.total).to.equal(2);
    const asset = records.records.find((r: any) => r.id === first.recordId);
    expect(asset).to.include({ serviceName: 'asset', type: 3, amount: 0.5, count: 3 });
    expect(Number(asset.createdAt.seconds)).to.be.closeTo(Date.now() / 1000, 120);
    expect(records.records.find((r: any) => r.id !== first.recordId)).to.include({
      serviceName: 'passport',
      type: 1,
      amount: 0,
      count: 1,
    });

    const today = await call(old.user, 'GetStatsToday', { userId: user, serviceName: 'asset' });
    expect(today).to.deep.equal({
      userId: user,
      serviceName: 'asset',
      totalCount: 3,
      totalCost: 0.5,
      freeCount: 2,
      paidCount: 1,
      period: 'today',
    });
    const month = await call(old.user, 'GetStatsMonth', { userId: user });
    expect(month).to.include({
      serviceName: '',
      totalCount: 4,
      totalCost: 0.5,
      freeCount: 3,
      paidCount: 1,
      period: 'month',
    });
    const summary = await call(old.user, 'GetStatsSummary', { userId: user });
    expect(summary).to.include({ userId: user, totalCount: 4, totalCost: 0.5 });
    expect(summary.services).to.have.length(2);
    await h.assertInvariant([user]);
  });

  it('gives new clients the exact decimal fields and the new rpcs', async () => {
    const user = h.user('new');
    await seedBalance(h, user, 1_000_000n);
    const r = await call(full.internal, 'DeductQuota', {
      userId: user,
      serviceName: 'asset',
      count: 3,
      requestId: 'n1',
    });
    expect(r).to.deep.include({
      success: true,
      requestId: 'n1',
      freeCount: 2,
      paidCount: 1,
      amountDecimal: '0.50',
      balanceDecimal: '0.50',
      duplicate: false,
    });
    const dup = await call(full.internal, 'DeductQuota', {
      userId: user,
      serviceName: 'asset',
      count: 3,
      requestId: 'n1',
    });
    expect(dup).to.deep.include({ recordId: r.recordId, duplicate: true });
    const check = await call(full.internal, 'CheckQuota', { userId: user, serviceName: 'passport', count: 2 });
    expect(check).to.deep.equal({ allowed: true, reason: 'free', freeRemaining: '3', balanceDecimal: '0.50' });
    const account = await call(full.user, 'GetAccount', { userId: user });
    expect(account).to.include({ balance: 0.5, balanceDecimal: '0.50', heldAmountDecimal: '0.00', currency: 'CNY' });
    // The exact counts beside the original's int32 ones (wider than int32: test/unit/grpc-messages.test.ts).
    await h.drain();
    const summary = await call(full.user, 'GetStatsSummary', { userId: user });
    expect(summary).to.include({ totalCount: 3, totalCount64: '3', totalCostDecimal: '0.50' });
    expect(summary.services[0]).to.include({ serviceName: 'asset', freeCount: 2, freeCount64: '2', paidCount64: '1' });
    const services = await call(full.user, 'ListServices', {});
    expect(services.services).to.deep.equal([
      { serviceName: 'passport', freeQuota: '3', unitPrice: '0.001', currency: 'CNY' },
      { serviceName: 'asset', freeQuota: '2', unitPrice: '0.50', currency: 'CNY' },
      { serviceName: 'freebie', freeQuota: '2', unitPrice: '', currency: 'CNY' },
    ]);

    const held = await call(full.internal, 'Reserve', {
      userId: user,
      serviceName: 'passport',
      count: 2,
      requestId: 'rv1',
    });
    expect(held).to.include({ status: 'held', freeCount: 2, paidCount: 0, duplicate: false });
    const committed = await call(full.internal, 'CommitReservation', { reservationId: held.reservationId, count: 1 });
    expect(committed).to.include({ status: 'committed', count: 1, freeCount: 1, duplicate: false });
    const again = await call(full.internal, 'CommitReservation', { reservationId: held.reservationId, count: 1 });
    expect(again).to.include({ recordId: committed.recordId, duplicate: true });
    const held2 = await call(full.internal, 'Reserve', {
      userId: user,
      serviceName: 'asset',
      count: 1,
      requestId: 'rv2',
    });
    expect(held2.heldAmountDecimal).to.equal('0.50');
    // A commit that leaves the count out is refused, and the hold stays: it is not a commit of 0.
    const noCount = await callFails(full.internal, 'CommitReservation', { reservationId: held2.reservationId });
    expect(noCount).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    const released = await call(full.internal, 'ReleaseReservation', { reservationId: held2.reservationId });
    expect(released).to.include({ status: 'released', releasedAmountDecimal: '0.50', balanceDecimal: '0.50' });
    const held3 = await call(full.internal, 'Reserve', {
      userId: user,
      serviceName: 'asset',
      count: 1,
      requestId: 'rv3',
    });
    const zero = await call(full.internal, 'CommitReservation', { reservationId: held3.reservationId, count: 0 });
    expect(zero).to.include({ status: 'committed', count: 0 });
    expect((await call(full.user, 'GetAccount', { userId: user })).balanceDecimal).to.equal('0.50');
    const gone = await callFails(full.internal, 'CommitReservation', { reservationId: 'nope', count: 1 });
    expect(gone).to.include({ code: grpc.status.NOT_FOUND, billingCode: 10008 });
    await h.drain();
    const records = await call(full.user, 'ListRecords', { userId: user, pageSize: 1 });
    expect(records.total).to.equal(2);
    expect(records.records[0]).to.include({ requestId: records.records[0].requestId });
    expect(records.nextCursor).to.not.equal('');
    const next = await call(full.user, 'ListRecords', { userId: user, pageSize: 1, cursor: records.nextCursor });
    expect(next.records[0].id).to.not.equal(records.records[0].id);
    await h.assertInvariant([user]);
  });

  it('maps every refusal to a gRPC status with billing-code trailing metadata, changing nothing', async () => {
    const user = h.user('refused');
    const md = (id: string) => metadata({ 'x-request-id': id });
    expect(
      await callFails(
        old.internal,
        'DeductQuota',
        { userId: user, serviceName: 'passport' },
        metadata({ 'x-request-id': 'x' }, null),
      ),
    ).to.include({ code: grpc.status.UNAUTHENTICATED, billingCode: 40100 });
    expect(
      await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'passport' }, metadata({}, 'wrong')),
    ).to.include({ code: grpc.status.UNAUTHENTICATED, billingCode: 40100 });
    const noId = await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'passport' });
    expect(noId).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    expect(noId.billingDetails).to.contain('requestId');
    expect(await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'nope' }, md('u1'))).to.include({
      code: grpc.status.INVALID_ARGUMENT,
      billingCode: 10006,
    });
    for (let i = 0; i < 2; i++)
      await call(old.internal, 'DeductQuota', { userId: user, serviceName: 'freebie' }, md(`f${i}`));
    expect(await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'freebie' }, md('f2'))).to.include(
      { code: grpc.status.FAILED_PRECONDITION, billingCode: 10002 },
    );
    for (let i = 0; i < 2; i++)
      await call(old.internal, 'DeductQuota', { userId: user, serviceName: 'asset' }, md(`a${i}`));
    const broke = await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'asset' }, md('a2'));
    expect(broke).to.include({ code: grpc.status.FAILED_PRECONDITION, billingCode: 10001 });
    expect(broke.details).to.contain('insufficient balance');
    expect(
      await callFails(old.internal, 'DeductQuota', { userId: user, serviceName: 'asset', count: 2 }, md('a0')),
    ).to.include({ code: grpc.status.ALREADY_EXISTS, billingCode: 10007 });
    const account = await call(old.user, 'GetAccount', { userId: user });
    expect(account.quotas.map((q: any) => q.usedQuota)).to.deep.equal([0, 2, 2]);
    expect(account.balance).to.equal(0);
    await h.drain();
    expect((await call(old.user, 'ListRecords', { userId: user })).total).to.equal(4);
    await h.assertInvariant([user]);
  });

  it('answers a check for more calls than the cap with a plain no (gRPC and HTTP); deduct keeps the 400', async () => {
    const user = h.user('cap');
    expect(
      await call(old.internal, 'CheckQuota', { userId: user, serviceName: 'passport', count: 1_000_000 }),
    ).to.deep.equal({ allowed: false, reason: 'too_many_calls' });
    const http = await h.post('/internal/v1/billing/check', {
      user_id: user,
      service_name: 'passport',
      count: 1_000_000,
    });
    expect(http.status).to.equal(200);
    expect(http.body.data).to.deep.equal({
      allowed: false,
      reason: 'too_many_calls',
      freeRemaining: 3,
      balance: '0.00',
    });
    const deduct = await h.post('/internal/v1/billing/deduct', {
      request_id: 'big',
      user_id: user,
      service_name: 'passport',
      count: 1_000_000,
    });
    expect(deduct.status).to.equal(400);
    expect(
      await callFails(
        old.internal,
        'DeductQuota',
        { userId: user, serviceName: 'passport', count: 1_000_000 },
        metadata({ 'x-request-id': 'big' }),
      ),
    ).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
    // The cap's own check still goes through the catalogue: an unknown service is still 10006.
    expect(
      await callFails(old.internal, 'CheckQuota', { userId: user, serviceName: 'nope', count: 1_000_000 }),
    ).to.include({ billingCode: 10006 });
  });

  it('keeps SPEC 7 under 200 concurrent callers repeating each other’s requests', async () => {
    const user = h.user('crowd');
    // 3 free passport calls and a balance for exactly 10 paid ones: 13 calls, whatever the order.
    await seedBalance(h, user, 10_000n);
    const ids = Array.from({ length: 100 }, (_, i) => `c${i}`);
    const attempts = await Promise.allSettled(
      [...ids, ...ids].map((id, i) =>
        call(
          i % 2 ? old.internal : full.internal,
          'DeductQuota',
          { userId: user, serviceName: 'passport', count: 1 },
          metadata({ 'x-request-id': id }),
        ),
      ),
    );
    const ok = attempts.filter((a) => a.status === 'fulfilled').map((a) => (a as PromiseFulfilledResult<any>).value);
    const recordIds = new Set(ok.map((r) => r.recordId));
    expect(recordIds.size).to.equal(13);
    for (const a of attempts) {
      if (a.status === 'rejected')
        expect((a.reason as grpc.ServiceError).code).to.equal(grpc.status.FAILED_PRECONDITION);
    }
    const account = await call(full.user, 'GetAccount', { userId: user });
    expect(account.balanceDecimal).to.equal('0.00');
    await h.drain();
    expect((await call(full.user, 'ListRecords', { userId: user })).total).to.equal(13);
    await h.assertInvariant([user]);
  });

  it('serves the standard health service and server reflection', async () => {
    const health = healthClient(h.running.grpcAddress!);
    for (const service of ['', 'billing.v1.BillingService', 'billing.v1.BillingInternalService']) {
      expect(await call(health, 'Check', { service }, new grpc.Metadata())).to.deep.equal({ status: 'SERVING' });
    }
    health.close();
    const reflection = reflectionClient(h.running.grpcAddress!);
    const stream = (reflection as any).ServerReflectionInfo();
    const answer = new Promise<any>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    stream.write({ list_services: '' });
    const listed = (await answer).list_services_response.service.map((s: any) => s.name);
    stream.end();
    reflection.close();
    expect(listed).to.include.members(['billing.v1.BillingService', 'billing.v1.BillingInternalService']);
  });

  it('serves the original /health answer over HTTP', async () => {
    const res = await fetch(`${h.url}/health`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ status: 'UP', service: 'billing-service' });
  });
});
