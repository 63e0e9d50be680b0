import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { admin, grantsPath, voidPath, listGrants, grantEntries } from '../support/money.js';
import { FakeClock } from '../support/fake-clock.js';
import { startWorkers } from '../../src/workers/workers.js';
import type { LedgerChange } from '../../src/lib/ledger-change.js';
import * as grpc from '@grpc/grpc-js';
import { Scripts } from '../../src/redis/scripts.js';
import { Metrics } from '../../src/lib/metrics.js';
import { RefundService } from '../../src/services/refund.service.js';
import { CatalogueService } from '../../src/services/catalogue.service.js';
import { fullClients, call, callFails } from '../fixtures/grpc-clients.js';

const DEDUCT = '/internal/v1/billing/deduct';
const REFUND = '/internal/v1/billing/refunds';
const SERVICES = [
  { name: 'passport', free_quota: 3, unit_price: '0.001' },
  { name: 'asset', free_quota: 2, unit_price: '0.5' },
  { name: 'freebie', free_quota: 2, unit_price: null },
];

async function account(h: Harness, user: string) {
  const a = (await h.get('/api/v1/billing/account', { user_id: user })).body.data;
  const used = Object.fromEntries(
    a.quotas.map((q: { serviceName: string; usedQuota: number }) => [q.serviceName, q.usedQuota]),
  );
  return { balance: a.balance as string, used: used as Record<string, number> };
}

async function deduct(h: Harness, user: string, requestId: string, service: string, count: number) {
  const r = await h.post(DEDUCT, { request_id: requestId, user_id: user, service_name: service, count });
  expect(r.status, JSON.stringify(r.body)).to.equal(200);
  return r.body.data;
}

async function recordOf(h: Harness, user: string, recordId: string) {
  const records = (await h.get('/api/v1/billing/records', { user_id: user, page_size: 100 })).body.data.records;
  return records.find((r: { id: string }) => r.id === recordId);
}

async function refundEntries(h: Harness, user: string) {
  return h.probe.db('ledger_entries').where({ user_id: user, entry_type: 'refund' }).select('ref_id', 'amount');
}

describe('refunds', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async function () {
    h = await startHarness({ overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('gives the paid part back in reverse: the balance first, then the grants, last one first; an ended grant forfeits', async () => {
    const user = h.user('grants');
    await seedBalance(h, user, 1_000_000n);
    const give = (grant_id: string, amount: string, priority: number) =>
      h.post(grantsPath(user), { grant_id, amount, category: 'promotional', priority }, admin);
    expect((await give('first', '1.00', 10)).status).to.equal(200);
    expect((await give('second', '0.50', 20)).status).to.equal(200);
    // 4 paid calls of asset (0.50 each, 2 free first): 1.00 from 'first', 0.50 from 'second', 0.50 from the balance.
    const d = await deduct(h, user, 'g1', 'asset', 6);
    expect(d).to.include({ freeCount: 2, paidCount: 4, amount: '2.00', balance: '0.50' });
    const left = async () => {
      const grants = (await listGrants(h, user)).map((g: any) => [g.grantId, g.remaining]);
      return { balance: (await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance, grants };
    };
    // 2 calls (1.00): the balance's 0.50, then 'second''s 0.50.
    const r1 = await h.post(REFUND, { refund_id: 'f1', user_id: user, request_id: 'g1', count: 2 });
    expect(r1.body.data).to.include({ paidCount: 2, amount: '1.00' });
    expect(await left()).to.deep.equal({
      balance: '1.50',
      grants: [
        ['second', '0.50'],
        ['first', '0.00'],
      ],
    });
    // 'first' ends before the next refund: its part is forfeited, never turned into balance.
    expect((await h.post(voidPath(user, 'first'), {}, admin)).status).to.equal(200);
    const r2 = await h.post(REFUND, { refund_id: 'f2', user_id: user, request_id: 'g1', count: 2 });
    expect(r2.body.data).to.include({ paidCount: 2, amount: '0.00', balance: '1.50' });
    await h.drain();
    const entries = (await grantEntries(h, user)).map((e) => [e.grant_id, e.entry_type, e.amount]);
    expect(entries).to.have.deep.members([
      ['first', 'grant', 1_000_000n],
      ['second', 'grant', 500_000n],
      ['first', 'grant_spend', -1_000_000n],
      ['second', 'grant_spend', -500_000n],
      ['second', 'grant_refund', 500_000n],
      ['first', 'grant_voided', 0n],
    ]);
    const ledger = await h.probe.db('ledger_entries').where({ user_id: user }).orderBy('id').pluck('amount');
    expect(ledger.map(String)).to.have.members(['1000000', '-500000', '500000']);
    await h.assertInvariant([user]);
  });

  it('refunds a whole mixed call: money to the balance, free calls to this month’s quota', async () => {
    const user = h.user('whole');
    await seedBalance(h, user, 10_000_000n);
    const d = await deduct(h, user, 'r1', 'asset', 5);
    expect(d).to.include({ freeCount: 2, paidCount: 3, amount: '1.50', balance: '8.50' });

    const r = await h.post(REFUND, { refund_id: 'f1', user_id: user, request_id: 'r1' });
    expect(r.status).to.equal(200);
    expect(r.body.data).to.deep.equal({
      refundId: 'f1',
      recordId: d.recordId,
      count: 5,
      freeCount: 2,
      paidCount: 3,
      amount: '1.50',
      balance: '10.00',
      duplicate: false,
    });
    expect(await account(h, user)).to.deep.include({ balance: '10.00' });
    expect((await account(h, user)).used.asset).to.equal(0);

    await h.drain();
    await h.assertInvariant([user]);
    expect(await recordOf(h, user, d.recordId)).to.include({ count: 5, refundedCount: 5, refundedAmount: '1.50' });
    const entries = await refundEntries(h, user);
    expect(entries.map((e) => String(e.amount))).to.deep.equal(['1500000']);
    const month = h.probe.calendar.monthDays(new Date()).from.slice(0, 7);
    const statement = (await h.get(`/api/v1/billing/statements/${month}`, { user_id: user })).body.data;
    expect(statement.refunds).to.deep.equal({ entries: 1, amount: '1.50' });
    expect(statement.closingBalance).to.equal('10.00');
    const csv = await (
      await fetch(`${h.url}/api/v1/billing/records/export?user_id=${user}`, {
        headers: { authorization: 'Bearer test-gateway-token' },
      })
    ).text();
    const [header, line] = csv.trim().split('\r\n');
    const cells = line.split(',');
    expect(cells[header.split(',').indexOf('refunded_count')]).to.equal('5');
    expect(cells[header.split(',').indexOf('refunded_amount')]).to.equal('1.50');
  });

  it('refunds in parts, paid calls first, never more than the call’s count (409 / 10010 beyond)', async () => {
    const user = h.user('parts');
    await seedBalance(h, user, 10_000_000n);
    const d = await deduct(h, user, 'r1', 'asset', 5); // 2 free, 3 paid at 0.50
    const part = async (id: string, count?: number) =>
      h.post(REFUND, { refund_id: id, user_id: user, request_id: 'r1', ...(count ? { count } : {}) });

    expect((await part('p1', 2)).body.data).to.include({ count: 2, paidCount: 2, freeCount: 0, amount: '1.00' });
    expect((await part('p2', 2)).body.data).to.include({ count: 2, paidCount: 1, freeCount: 1, amount: '0.50' });
    const before = await account(h, user);
    expect(before).to.deep.equal({ balance: '10.00', used: { passport: 0, asset: 1, freebie: 0 } });

    const tooMany = await part('p3', 2);
    expect(tooMany.status).to.equal(409);
    expect(tooMany.body).to.include({ success: false, code: 10010 });
    expect(tooMany.body.message).to.match(/only 1 calls/);
    const whole = await part('p4');
    expect(whole.status).to.equal(409);
    expect(await account(h, user)).to.deep.equal(before);

    expect((await part('p5', 1)).body.data).to.include({ count: 1, paidCount: 0, freeCount: 1, amount: '0.00' });
    expect((await part('p6', 1)).status).to.equal(409);
    expect(await account(h, user)).to.deep.equal({ balance: '10.00', used: { passport: 0, asset: 0, freebie: 0 } });

    await h.drain();
    await h.assertInvariant([user]);
    expect(await recordOf(h, user, d.recordId)).to.include({ refundedCount: 5, refundedAmount: '1.50' });
    const refunds = await h.probe.db('refunds').where({ user_id: user }).orderBy('id');
    expect(refunds.map((r) => [r.refund_id, r.count, r.paid_count, r.free_count, String(r.amount)])).to.deep.equal([
      ['p1', 2, 2, 0, '1000000'],
      ['p2', 2, 1, 1, '500000'],
      ['p5', 1, 0, 1, '0'],
    ]);
  });

  it('answers 50 identical concurrent refunds once, the others as duplicates of the first', async () => {
    const user = h.user('same');
    await seedBalance(h, user, 10_000_000n);
    await deduct(h, user, 'r1', 'asset', 4); // 2 free, 2 paid
    const body = { refund_id: 'once', user_id: user, request_id: 'r1', count: 3 };
    const answers = await Promise.all(Array.from({ length: 50 }, () => h.post(REFUND, body)));
    expect(answers.map((a) => a.status)).to.deep.equal(Array(50).fill(200));
    const firsts = answers.filter((a) => !a.body.data.duplicate);
    expect(firsts).to.have.length(1);
    const { duplicate, ...first } = firsts[0].body.data;
    void duplicate;
    for (const a of answers) expect({ ...a.body.data, duplicate: false }).to.deep.equal({ ...first, duplicate: false });
    expect(first).to.include({ count: 3, paidCount: 2, freeCount: 1, amount: '1.00', balance: '10.00' });

    // Run twice: a replay later gives the first answer again and changes nothing.
    const again = await h.post(REFUND, body);
    expect(again.body.data).to.deep.equal({ ...first, duplicate: true });
    expect(await account(h, user)).to.deep.include({ balance: '10.00' });
    // The same refund_id with another payload is refused, changing nothing.
    const reused = await h.post(REFUND, { ...body, count: 1 });
    expect(reused.status).to.equal(409);
    expect(reused.body.code).to.equal(10010);
    expect((await account(h, user)).used.asset).to.equal(1);

    await h.drain();
    await h.assertInvariant([user]);
    expect(await refundEntries(h, user)).to.have.length(1);
  });

  it('lets 50 different concurrent refunds of one call take no more than its count', async () => {
    const user = h.user('many');
    await seedBalance(h, user, 10_000_000n);
    const d = await deduct(h, user, 'r1', 'asset', 10); // 2 free, 8 paid: 4.00
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        h.post(REFUND, { refund_id: `m${i}`, user_id: user, request_id: 'r1', count: 1 }),
      ),
    );
    const ok = answers.filter((a) => a.status === 200);
    expect(ok).to.have.length(10);
    for (const a of answers.filter((x) => x.status !== 200))
      expect([a.status, a.body.code]).to.deep.equal([409, 10010]);
    expect(ok.reduce((n, a) => n + a.body.data.paidCount, 0)).to.equal(8);
    expect(ok.reduce((n, a) => n + a.body.data.freeCount, 0)).to.equal(2);
    expect(await account(h, user)).to.deep.equal({ balance: '10.00', used: { passport: 0, asset: 0, freebie: 0 } });

    await h.drain();
    await h.assertInvariant([user]);
    expect(await recordOf(h, user, d.recordId)).to.include({ refundedCount: 10, refundedAmount: '4.00' });
  });

  it('answers a refund racing its deduct as before it (404) or after it (free calls back), never half (found by the model test)', async () => {
    // The refund read the deduct's record as none, the deduct then landed, and the refund's step found
    // it: the call was refunded but its free call kept, and the change booked without its record id.
    const users = Array.from({ length: 40 }, (_, i) => h.user(`race-${i}`));
    const answers = await Promise.all(
      users.map(async (user) => {
        const [refund, d] = await Promise.all([
          h.post(REFUND, { refund_id: 'f', user_id: user, request_id: 'r' }),
          h.post(DEDUCT, { request_id: 'r', user_id: user, service_name: 'freebie', count: 1 }),
        ]);
        expect(d.status, JSON.stringify(d.body)).to.equal(200);
        return { user, refund, recordId: d.body.data.recordId as string };
      }),
    );
    await h.drain();
    await h.assertInvariant(users);
    for (const { user, refund, recordId } of answers) {
      const seen = JSON.stringify(refund.body);
      const rows = await h.probe.db('refunds').where({ user_id: user }).select('record_id');
      if (refund.status === 404) {
        expect((await account(h, user)).used.freebie, seen).to.equal(1);
        expect(rows, seen).to.deep.equal([]);
      } else {
        expect(refund.body.data, seen).to.include({ recordId, count: 1, freeCount: 1 });
        expect((await account(h, user)).used.freebie, seen).to.equal(0);
        expect(rows, seen).to.deep.equal([{ record_id: recordId }]);
      }
    }
    expect(new Set(answers.map((a) => a.refund.status)), 'both orders were met').to.include(404);
  });

  it('reads the record again when its deduct lands between the read and the refund’s step', async () => {
    // The interleaving the race above may or may not meet, forced: the deduct is sent right after the
    // refund's first read of the record (which finds none), before the refund's atomic step.
    const user = h.user('late-deduct');
    let deducted: { recordId: string } | undefined;
    class DeductAfterFirstRead extends Scripts {
      override async rememberedDeduct(...args: Parameters<Scripts['rememberedDeduct']>) {
        const record = await super.rememberedDeduct(...args);
        if (!deducted) deducted = await deduct(h, user, 'r', 'freebie', 1);
        return record;
      }
    }
    const { probe, config } = h;
    const scripts = new DeductAfterFirstRead(
      probe.redis,
      probe.keys,
      { load: (u, now) => probe.accounts.load(u, now) },
      new Metrics(),
    );
    const refunds = new RefundService({
      scripts,
      catalogue: new CatalogueService(config.services, config.currency),
      persistence: probe.persistence,
      calendar: probe.calendar,
      clock: probe.clock,
      idempotencyTtlMs: config.redis.idempotencyTtlMs,
      refundWindowMs: config.refundWindowMs,
    });
    const refund = await refunds.refund({ refundId: 'f', userId: user, requestId: 'r' });
    expect(refund).to.include({ recordId: deducted!.recordId, count: 1, freeCount: 1, duplicate: false });
    expect((await account(h, user)).used.freebie).to.equal(0);
    await h.drain();
    await h.assertInvariant([user]);
    const rows = await probe.db('refunds').where({ user_id: user }).select('record_id');
    expect(rows).to.deep.equal([{ record_id: deducted!.recordId }]);
  });

  it('refunds a free-only call to its quota', async () => {
    const user = h.user('free');
    await deduct(h, user, 'a', 'freebie', 1);
    await deduct(h, user, 'b', 'freebie', 1);
    const r = await h.post(REFUND, { refund_id: 'x', user_id: user, request_id: 'b' });
    expect(r.body.data).to.include({ count: 1, freeCount: 1, paidCount: 0, amount: '0.00', balance: '0.00' });
    // The quota is back: a call that the used-up free-only quota would refuse is served.
    await deduct(h, user, 'c', 'freebie', 1);
    await h.drain();
    await h.assertInvariant([user]);
    expect(await refundEntries(h, user)).to.have.length(0);
    expect(await h.probe.db('refunds').where({ user_id: user }).count({ n: '*' })).to.deep.equal([{ n: '1' }]);
  });

  it('answers 404 / 10010 for an unknown call, another user’s call, and checks its input', async () => {
    const user = h.user('unknown');
    const other = h.user('other');
    await deduct(h, other, 'theirs', 'passport', 1);
    for (const body of [
      { refund_id: 'u1', user_id: user, request_id: 'never' },
      { refund_id: 'u2', user_id: user, request_id: 'theirs' },
    ]) {
      const r = await h.post(REFUND, body);
      expect([r.status, r.body.code]).to.deep.equal([404, 10010]);
    }
    for (const bad of [
      { user_id: user, request_id: 'theirs' },
      { refund_id: 'x', user_id: user, request_id: 'theirs', count: 0 },
      { refund_id: 'x', user_id: user, request_id: 'theirs', count: 1.5 },
      { refund_id: 'x'.repeat(129), user_id: user, request_id: 'theirs' },
      { refund_id: 'x', user_id: 'a b', request_id: 'theirs' },
    ]) {
      const r = await h.post(REFUND, bad);
      expect([r.status, r.body.code], JSON.stringify(bad)).to.deep.equal([400, 40000]);
    }
    const camel = await h.post(REFUND, { refundId: 'c1', userId: other, requestId: 'theirs' });
    expect(camel.status).to.equal(200);
    await h.drain();
    await h.assertInvariant([user, other]);
  });
});

describe('refunds over gRPC', function () {
  this.timeout(120_000);
  it('refunds with Refund as over HTTP, refusals as FAILED_PRECONDITION / NOT_FOUND with billing-code 10010', async () => {
    const h = await startHarness({ overrides: { services: SERVICES } });
    const full = fullClients(h.running.grpcAddress!);
    try {
      const user = h.user('grpc');
      await seedBalance(h, user, 10_000_000n);
      const d = await deduct(h, user, 'g1', 'asset', 3); // 2 free, 1 paid
      const first = await call(full.internal, 'Refund', { refundId: 'gf1', userId: user, requestId: 'g1', count: 2 });
      expect(first).to.deep.equal({
        refundId: 'gf1',
        recordId: d.recordId,
        count: 2,
        freeCount: 1,
        paidCount: 1,
        amountDecimal: '0.50',
        balanceDecimal: '10.00',
        duplicate: false,
      });
      const again = await call(full.internal, 'Refund', { refundId: 'gf1', userId: user, requestId: 'g1', count: 2 });
      expect(again).to.deep.equal({ ...first, duplicate: true });
      const tooMany = await callFails(full.internal, 'Refund', {
        refundId: 'gf2',
        userId: user,
        requestId: 'g1',
        count: 2,
      });
      expect(tooMany).to.include({ code: grpc.status.FAILED_PRECONDITION, billingCode: 10010 });
      const unknown = await callFails(full.internal, 'Refund', { refundId: 'gf3', userId: user, requestId: 'none' });
      expect(unknown).to.include({ code: grpc.status.NOT_FOUND, billingCode: 10010 });
      const bad = await callFails(full.internal, 'Refund', { refundId: '', userId: user, requestId: 'g1' });
      expect(bad).to.include({ code: grpc.status.INVALID_ARGUMENT, billingCode: 40000 });
      // A count of 0 is refused as over HTTP (the field is `optional`), not taken as the whole call (which,
      // after the partial refund above, would be 10010).
      const zero = { refundId: 'gf4', userId: user, requestId: 'g1', count: 0 };
      expect(await callFails(full.internal, 'Refund', zero)).to.include({
        code: grpc.status.INVALID_ARGUMENT,
        billingCode: 40000,
      });
      await h.drain();
      // The record shows what was given back over gRPC too (SPEC 14), with the price it was charged at.
      const listed = await call(full.user, 'ListRecords', { userId: user });
      expect(listed.records[0]).to.include({
        id: d.recordId,
        refundedCount: 2,
        refundedAmountDecimal: '0.50',
        unitPriceDecimal: '0.50',
      });
      await h.assertInvariant([user]);
    } finally {
      full.user.close();
      full.internal.close();
      await h.stop();
    }
  });
});

describe('refunds before persistence', function () {
  this.timeout(120_000);
  it('refunds a deduct still in the journal, and holds when the refund lands in MySQL first', async () => {
    const h = await startHarness({ roles: ['api'], overrides: { services: SERVICES } });
    try {
      const user = h.user('early');
      await seedBalance(h, user, 10_000_000n);
      const workers0 = startWorkers(h.probe.workers, ['persistence']);
      await h.drain();
      await workers0.close();

      const d = await deduct(h, user, 'r1', 'asset', 3); // 2 free, 1 paid
      const r = await h.post(REFUND, { refund_id: 'e1', user_id: user, request_id: 'r1', count: 2 });
      expect(r.body.data).to.include({ recordId: d.recordId, paidCount: 1, freeCount: 1, amount: '0.50' });
      const journal = Object.values(await h.probe.redis.hgetall(h.probe.keys.pending(user))).map(
        (j) => JSON.parse(j) as LedgerChange,
      );
      expect(journal.map((c) => c.kind).sort()).to.deep.equal(['deduction', 'refund']);
      // The refund's batch commits before its deduction's.
      await h.probe.persistence.persist(journal.filter((c) => c.kind === 'refund'));
      expect(await refundEntries(h, user)).to.have.length(1);

      const workers = startWorkers(h.probe.workers, ['persistence']);
      try {
        await h.drain();
      } finally {
        await workers.close();
      }
      await h.assertInvariant([user]);
      const used = await h.probe.repositories.accounts.quotaUsage(user, h.probe.calendar.period(new Date()));
      expect(used.find((u) => u.service_name === 'asset')?.used).to.equal('1');
      expect(await recordOf(h, user, d.recordId)).to.include({ refundedCount: 2, refundedAmount: '0.50' });
    } finally {
      await h.stop();
    }
  });
});

describe('refunds across a month boundary and past the refund window', function () {
  this.timeout(120_000);
  it('returns money but not last month’s free calls, and nothing after the window', async () => {
    // Asia/Shanghai (UTC+8): November ends at 16:00 UTC on the 30th.
    const clock = new FakeClock(new Date('2026-11-30T15:30:00Z'));
    const h = await startHarness({ clock, overrides: { services: SERVICES, refund_window: '2h' } });
    try {
      const user = h.user('month');
      await seedBalance(h, user, 10_000_000n);
      const d = await deduct(h, user, 'r1', 'asset', 3); // November: 2 free, 1 paid
      await deduct(h, user, 'late', 'asset', 1); // November: 1 paid
      clock.set('2026-11-30T16:30:00Z'); // December 1st, 00:30 in Shanghai
      await deduct(h, user, 'dec', 'asset', 1); // December: 1 free
      const r = await h.post(REFUND, { refund_id: 'm1', user_id: user, request_id: 'r1' });
      expect(r.body.data).to.include({ recordId: d.recordId, count: 3, freeCount: 2, paidCount: 1, amount: '0.50' });
      // Money is back; December's quota is not credited with November's calls.
      expect(await account(h, user)).to.deep.equal({
        balance: '9.50',
        used: { passport: 0, asset: 1, freebie: 0 },
      });

      clock.set('2026-11-30T17:30:00Z'); // two hours after the November calls: past the refund window
      const late = await h.post(REFUND, { refund_id: 'm2', user_id: user, request_id: 'late' });
      expect([late.status, late.body.code]).to.deep.equal([404, 10010]);
      // A replay of a refund is still its first answer.
      const replay = await h.post(REFUND, { refund_id: 'm1', user_id: user, request_id: 'r1' });
      expect(replay.body.data).to.include({ duplicate: true, amount: '0.50' });
      expect((await account(h, user)).balance).to.equal('9.50');

      await h.drain();
      await h.assertInvariant([user]);
      const november = await h.probe.repositories.accounts.quotaUsage(user, '202611');
      expect(november.find((u) => u.service_name === 'asset')?.used).to.equal('2');
      const refund = await h.probe.db('refunds').where({ user_id: user }).first();
      expect(refund).to.include({ period: '202611', free_count: 2, free_returned: 0 });
    } finally {
      await h.stop();
    }
  });
});
