import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';
import { startWorkers } from '../../src/workers/workers.js';
import {
  admin,
  account,
  assertGrantsAgree,
  commitPath,
  createGrant,
  CHECK,
  DEDUCT,
  grantEntries,
  grantsPath,
  LIMITS,
  listGrants,
  micros,
  pricingPath,
  put,
  releasePath,
  RESERVE,
  runMaintenance,
  voidPath,
} from '../support/money.js';

/*
 * Credit grants (SPEC 14, issue #14 part 2): spending order, expiry that never lets a grant be spent
 * after its time however late the job runs, void, holds from grants, one grant entry per grant touched.
 */
const SERVICES = [
  { name: 'metered', free_quota: 2, unit_price: '0.01' },
  { name: 'tokens', free_quota: 0, unit_price: '0.01' },
];
const DAY = 86_400_000;

const grantOf = (grants: any[], id: string) => grants.find((g) => g.grantId === id);

describe('credit grants', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('creates a grant, answers a replay with the first answer, refuses another payload with 10007', async () => {
    const user = h.user('create');
    await seedBalance(h, user, 1_000_000n);
    const expiresAt = new Date(Date.now() + 30 * DAY).toISOString();
    const body = { grant_id: 'promo-1', amount: '5.00', category: 'promotional', expires_at: expiresAt, note: 'hi' };
    const first = await h.post(grantsPath(user), body, admin);
    expect(first.status).to.equal(200);
    expect(first.body.data).to.include({
      grantId: 'promo-1',
      userId: user,
      category: 'promotional',
      priority: 50,
      amount: '5.00',
      remaining: '5.00',
      status: 'active',
      duplicate: false,
    });
    expect(new Date(first.body.data.expiresAt).getTime()).to.equal(new Date(expiresAt).getTime());
    const replay = await h.post(grantsPath(user), body, admin);
    expect(replay.status).to.equal(200);
    expect(replay.body.data).to.deep.equal({ ...first.body.data, duplicate: true });
    for (const other of [
      { ...body, amount: '5.01' },
      { ...body, category: 'paid' },
      { ...body, priority: 10 },
    ]) {
      const refused = await h.post(grantsPath(user), other, admin);
      expect([refused.status, refused.body.code], JSON.stringify(other)).to.deep.equal([409, 10007]);
    }
    // camelCase fields are accepted too (SPEC 2); a paid grant without expiry.
    const paid = await createGrant(h, user, { grantId: 'paid-1', amount: 2, category: 'paid', priority: 0 });
    expect(paid).to.include({ category: 'paid', priority: 0, amount: '2.00', expiresAt: null });

    const acct = await account(h, user);
    expect(acct.balance, 'total available: balance + grants').to.equal('8.00');
    expect(acct.grants).to.have.deep.members([
      { grantId: 'promo-1', category: 'promotional', remaining: '5.00', expiresAt: first.body.data.expiresAt },
      { grantId: 'paid-1', category: 'paid', remaining: '2.00', expiresAt: null },
    ]);
    const listed = await listGrants(h, user);
    expect(listed).to.have.length(2);
    expect(grantOf(listed, 'promo-1')).to.include({ amount: '5.00', remaining: '5.00', status: 'active' });
    const check = await h.post(CHECK, { user_id: user, service_name: 'tokens' });
    expect(check.body.data).to.include({ allowed: true, balance: '8.00' });
    await h.drain();
    expect((await grantEntries(h, user)).map((e) => [e.grant_id, e.entry_type, e.amount])).to.have.deep.members([
      ['promo-1', 'grant', 5_000_000n],
      ['paid-1', 'grant', 2_000_000n],
    ]);
    await assertGrantsAgree(h, [user]);
  });

  it('spends free quota, then grants by priority, earliest expiry, oldest, then the balance', async () => {
    const user = h.user('order');
    await seedBalance(h, user, 1_000_000n);
    const soon = new Date(Date.now() + 1 * DAY).toISOString();
    const later = new Date(Date.now() + 2 * DAY).toISOString();
    // Created in an order that is none of the spending order.
    await createGrant(h, user, { grant_id: 'D-old', amount: '0.03', category: 'paid' });
    await createGrant(h, user, { grant_id: 'B-later', amount: '0.02', category: 'promotional', expires_at: later });
    await createGrant(h, user, { grant_id: 'E-young', amount: '0.01', category: 'paid' });
    await createGrant(h, user, { grant_id: 'C-soon', amount: '0.02', category: 'promotional', expires_at: soon });
    await createGrant(h, user, { grant_id: 'A-first', amount: '0.02', category: 'promotional', priority: 10 });
    await createGrant(h, user, { grant_id: 'Z-last', amount: '0.01', category: 'promotional', priority: 900 });
    const expected = [
      ...['free', 'free'],
      ...['A-first', 'A-first'],
      ...['C-soon', 'C-soon'],
      ...['B-later', 'B-later'],
      ...['D-old', 'D-old', 'D-old'],
      'E-young',
      'Z-last',
      ...['balance', 'balance'],
    ];
    const recordIds: string[] = [];
    for (let i = 0; i < expected.length; i++) {
      const r = await h.post(DEDUCT, { request_id: `o${i}`, user_id: user, service_name: 'metered' });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      recordIds.push(r.body.data.recordId);
    }
    await h.drain();
    const entries = await grantEntries(h, user);
    const ledger = await h.probe.db('ledger_entries').where({ user_id: user, entry_type: 'deduction' });
    const spentFrom = recordIds.map((id, i) => {
      const spends = entries.filter((e) => e.ref_id === id && e.entry_type === 'grant_spend');
      const fromBalance = ledger.filter((l: { ref_id: string }) => l.ref_id === id);
      if (spends.length + fromBalance.length > 1) return `call ${i}: ${spends.length} grants + balance`;
      if (spends.length === 1) {
        expect(spends[0].amount).to.equal(-10_000n);
        return spends[0].grant_id;
      }
      return fromBalance.length === 1 ? 'balance' : 'free';
    });
    expect(spentFrom).to.deep.equal(expected);
    const acct = await account(h, user);
    expect(acct.balance).to.equal('0.98');
    expect(acct.grants.every((g: { remaining: string }) => g.remaining === '0.00')).to.equal(true);
    await assertGrantsAgree(h, [user]);
  });

  it('books a deduct across three grants and the balance as one entry each', async () => {
    const user = h.user('span');
    await seedBalance(h, user, 1_000_000n);
    await createGrant(h, user, { grant_id: 'g1', amount: '0.10', category: 'promotional', priority: 1 });
    await createGrant(h, user, { grant_id: 'g2', amount: '0.20', category: 'promotional', priority: 2 });
    await createGrant(h, user, { grant_id: 'g3', amount: '0.30', category: 'paid', priority: 3 });
    const r = await h.post(DEDUCT, { request_id: 'big', user_id: user, service_name: 'tokens', count: 70 });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.data).to.include({ freeCount: 0, paidCount: 70, amount: '0.70', balance: '0.90' });
    await h.drain();
    const spends = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_spend');
    expect(spends.map((e) => [e.grant_id, e.ref_id, e.amount])).to.have.deep.members([
      ['g1', r.body.data.recordId, -100_000n],
      ['g2', r.body.data.recordId, -200_000n],
      ['g3', r.body.data.recordId, -300_000n],
    ]);
    const ledger = await h.probe.db('ledger_entries').where({ user_id: user, entry_type: 'deduction' });
    expect(ledger.map((l: { ref_id: string; amount: string }) => [l.ref_id, BigInt(l.amount)])).to.deep.equal([
      [r.body.data.recordId, -100_000n],
    ]);
    const records = (await h.get('/api/v1/billing/records', { user_id: user })).body.data;
    expect(records.total).to.equal(1);
    expect(records.records[0]).to.include({ amount: '0.70', paidCount: 70 });
    await assertGrantsAgree(h, [user]);
  });

  it('refunds a call three grants and the balance paid: the balance first, then the grants, last one first, once', async () => {
    const user = h.user('refund');
    await seedBalance(h, user, 1_000_000n);
    await createGrant(h, user, { grant_id: 'g1', amount: '0.10', category: 'promotional', priority: 1 });
    await createGrant(h, user, { grant_id: 'g2', amount: '0.20', category: 'promotional', priority: 2 });
    await createGrant(h, user, { grant_id: 'g3', amount: '0.30', category: 'paid', priority: 3 });
    const d = await h.post(DEDUCT, { request_id: 'big', user_id: user, service_name: 'tokens', count: 70 });
    expect(d.body.data).to.include({ amount: '0.70', balance: '0.90' });
    const body = { refund_id: 'f1', user_id: user, request_id: 'big', count: 45 };
    const refunds = await Promise.all(Array.from({ length: 10 }, () => h.post('/internal/v1/billing/refunds', body)));
    expect(refunds.map((r) => r.status)).to.deep.equal(refunds.map(() => 200));
    expect(refunds.filter((r) => !r.body.data.duplicate)).to.have.length(1);
    expect(refunds[0].body.data).to.include({ amount: '0.45', paidCount: 45 });
    expect((await account(h, user)).balance).to.equal('1.35');
    const remaining = Object.fromEntries((await listGrants(h, user)).map((g) => [g.grantId, g.remaining]));
    // 0.10 back to the balance, 0.30 to g3, 0.05 to g2.
    expect(remaining).to.deep.equal({ g1: '0.00', g2: '0.05', g3: '0.30' });
    await h.drain();
    const back = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_refund');
    expect(back.map((e) => [e.grant_id, e.amount])).to.have.deep.members([
      ['g3', 300_000n],
      ['g2', 50_000n],
    ]);
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance).to.equal(1_000_000n);
    await assertGrantsAgree(h, [user]);
  });

  it('charges 20 concurrent identical deducts once, and creates a grant once for 10 concurrent identical posts', async () => {
    const user = h.user('twice');
    await seedBalance(h, user, 100_000n);
    const body = { grant_id: 'same', amount: '0.50', category: 'promotional' };
    const creates = await Promise.all(Array.from({ length: 10 }, () => h.post(grantsPath(user), body, admin)));
    expect(creates.map((c) => c.status)).to.deep.equal(creates.map(() => 200));
    expect(creates.filter((c) => c.body.data.duplicate === false)).to.have.length(1);
    const deduct = { request_id: 'once', user_id: user, service_name: 'tokens', count: 30 };
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.post(DEDUCT, deduct)));
    expect(answers.map((a) => a.status)).to.deep.equal(answers.map(() => 200));
    expect(answers.filter((a) => !a.body.data.duplicate)).to.have.length(1);
    expect(new Set(answers.map((a) => a.body.data.recordId)).size).to.equal(1);
    expect(answers.every((a) => a.body.data.amount === '0.30')).to.equal(true);
    expect((await account(h, user)).balance).to.equal('0.30');
    expect(grantOf(await listGrants(h, user), 'same').remaining).to.equal('0.20');
    // The same grant id again later, after spending: still a duplicate with the first answer.
    const late = await h.post(grantsPath(user), body, admin);
    expect(late.body.data).to.include({ duplicate: true, remaining: '0.50' });
    await h.drain();
    // Once each; in either order: a grant and its spending may be persisted by two jobs (booked by delta).
    expect((await grantEntries(h, user)).map((e) => e.entry_type)).to.have.members(['grant', 'grant_spend']);
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
    await assertGrantsAgree(h, [user]);
  });

  it('lets exactly 100 of 200 concurrent deducts through against grants and a balance for 100 calls', async () => {
    const user = h.user('crowd');
    await seedBalance(h, user, 200_000n); // 20 calls
    await createGrant(h, user, { grant_id: 'a', amount: '0.30', category: 'promotional', priority: 5 });
    await createGrant(h, user, { grant_id: 'b', amount: '0.25', category: 'paid' });
    await createGrant(h, user, { grant_id: 'c', amount: '0.25', category: 'promotional', priority: 500 });
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        h.post(DEDUCT, { request_id: `c${i}`, user_id: user, service_name: 'tokens' }),
      ),
    );
    expect(answers.filter((a) => a.status === 200)).to.have.length(100);
    expect(answers.filter((a) => a.status === 402 && a.body.code === 10001)).to.have.length(100);
    const acct = await account(h, user);
    expect(acct.balance).to.equal('0.00');
    await h.drain();
    const spends = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_spend');
    expect(spends).to.have.length(80);
    expect(spends.reduce((s, e) => s + e.amount, 0n)).to.equal(-800_000n);
    expect((await h.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(100);
    await assertGrantsAgree(h, [user]);
  });

  it('voids a grant once: its remainder leaves by grant_voided and is never spent again', async () => {
    const user = h.user('void');
    await seedBalance(h, user, 100_000n);
    await createGrant(h, user, { grant_id: 'v', amount: '1.00', category: 'promotional', priority: 1 });
    expect(
      (await h.post(DEDUCT, { request_id: 'd1', user_id: user, service_name: 'tokens', count: 25 })).status,
    ).to.equal(200);
    const voids = await Promise.all(
      Array.from({ length: 5 }, () => h.post(voidPath(user, 'v'), { note: 'abuse' }, admin)),
    );
    const applied = voids.filter((v) => v.status === 200 && v.body.data.voided === '0.75');
    expect(applied.length, JSON.stringify(voids.map((v) => v.body))).to.be.at.least(1);
    for (const v of voids) expect([200, 404, 409], JSON.stringify(v.body)).to.include(v.status);
    const acct = await account(h, user);
    expect(acct.balance).to.equal('0.10');
    const d2 = await h.post(DEDUCT, { request_id: 'd2', user_id: user, service_name: 'tokens', count: 11 });
    expect([d2.status, d2.body.code]).to.deep.equal([402, 10001]);
    const unknown = await h.post(voidPath(user, 'nope'), {}, admin);
    expect([unknown.status, unknown.body.code]).to.deep.equal([404, 40400]);
    await h.drain();
    expect(grantOf(await listGrants(h, user), 'v')).to.include({ status: 'voided', remaining: '0.00' });
    const voided = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_voided');
    expect(voided.map((e) => e.amount)).to.deep.equal([-750_000n]);
    await assertGrantsAgree(h, [user]);
  });

  it('answers a void racing the grant’s creation as before it (404) or after it (all voided), never both', async () => {
    // Found by the model test: a void that found no live grant, then saw the creation's marker set a
    // moment later, answered "voided 0.00" while the grant stayed whole and spendable.
    const users = Array.from({ length: 40 }, (_, i) => h.user(`void-race-${i}`));
    const answers = await Promise.all(
      users.map(async (user) => {
        const [created, voided] = await Promise.all([
          h.post(grantsPath(user), { grant_id: 'g', amount: '0.50', category: 'promotional', priority: 1 }, admin),
          h.post(voidPath(user, 'g'), {}, admin),
        ]);
        expect(created.status, JSON.stringify(created.body)).to.equal(200);
        return { user, voided };
      }),
    );
    await h.drain();
    await h.assertInvariant(users);
    for (const { user, voided } of answers) {
      const grant = grantOf(await listGrants(h, user), 'g');
      const seen = JSON.stringify({ void: voided.body, grant });
      if (voided.status === 404) {
        expect(grant, seen).to.include({ status: 'active', remaining: '0.50' });
        expect((await account(h, user)).balance, seen).to.equal('0.50');
      } else {
        expect(voided.body.data, seen).to.include({ voided: '0.50', pending: false });
        expect(grant, seen).to.include({ status: 'voided', remaining: '0.00' });
        expect((await account(h, user)).balance, seen).to.equal('0.00');
      }
    }
    // Both orders happened: the race was run, not avoided.
    const statuses = new Set(answers.map((a) => a.voided.status));
    expect([...statuses].sort(), 'void answers').to.include(404);
    await assertGrantsAgree(h, users);
  });

  it('holds from grants too: release gives the grant back, a smaller commit returns the rest', async () => {
    const user = h.user('hold');
    await seedBalance(h, user, 500_000n);
    await createGrant(h, user, { grant_id: 'h', amount: '0.40', category: 'promotional', priority: 1 });
    const hold = await h.post(RESERVE, { request_id: 'r1', user_id: user, service_name: 'tokens', count: 60 });
    expect(hold.status, JSON.stringify(hold.body)).to.equal(200);
    expect(hold.body.data).to.include({ heldAmount: '0.60', balance: '0.30' });
    expect((await account(h, user)).balance).to.equal('0.30');
    // Nothing left for a deduct of 31 calls while the hold stands.
    const d = await h.post(DEDUCT, { request_id: 'd', user_id: user, service_name: 'tokens', count: 31 });
    expect(d.body.code).to.equal(10001);
    const released = await h.post(releasePath(hold.body.data.reservationId), {});
    expect(released.body.data.releasedAmount).to.equal('0.60');
    expect((await account(h, user)).balance).to.equal('0.90');
    expect(grantOf(await listGrants(h, user), 'h').remaining).to.equal('0.40');

    const hold2 = (await h.post(RESERVE, { request_id: 'r2', user_id: user, service_name: 'tokens', count: 60 })).body
      .data;
    const commit = await h.post(commitPath(hold2.reservationId), { count: 50 });
    expect(commit.body.data).to.include({ amount: '0.50', releasedAmount: '0.10', balance: '0.40' });
    // The grant is spent first, the balance after it.
    expect(grantOf(await listGrants(h, user), 'h').remaining).to.equal('0.00');
    await h.drain();
    const spent = (await grantEntries(h, user)).reduce((s, e) => s + e.amount, 0n);
    expect(spent, 'grant entries net').to.equal(0n);
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance).to.equal(400_000n);
    await assertGrantsAgree(h, [user]);
  });

  it('refuses hostile grant input with 400 40000 and changes nothing', async () => {
    const user = h.user('hostile');
    await createGrant(h, user, { grant_id: 'keep', amount: '1.00', category: 'paid' });
    await h.drain();
    const before = {
      grants: await listGrants(h, user),
      acct: await account(h, user),
      rows: await grantEntries(h, user),
    };
    const valid = { grant_id: 'new', amount: '1.00', category: 'promotional' };
    const bad: Record<string, unknown>[] = [
      { ...valid, amount: '0' },
      { ...valid, amount: '-1.00' },
      { ...valid, amount: -1 },
      { ...valid, amount: '1.0000001' },
      { ...valid, amount: 0.0000001 },
      { ...valid, amount: '1e3' },
      { ...valid, amount: '9'.repeat(40) },
      { ...valid, amount: 1e308 },
      { ...valid, amount: 'NaN' },
      { ...valid, amount: ' 1.00' },
      { ...valid, amount: null },
      { ...valid, amount: [] },
      { grant_id: 'new', category: 'paid' },
      { ...valid, grant_id: '' },
      { ...valid, grant_id: 'x'.repeat(65) },
      { ...valid, grant_id: 'a b' },
      { ...valid, grant_id: 'a/b' },
      { ...valid, grant_id: '用户' },
      { ...valid, grant_id: 'a}:x' },
      { ...valid, grant_id: 7 },
      { amount: '1.00', category: 'paid' },
      { ...valid, category: 'gift' },
      { ...valid, category: 'PAID' },
      { ...valid, category: null },
      { amount: '1.00', grant_id: 'new' },
      { ...valid, priority: -1 },
      { ...valid, priority: 1001 },
      { ...valid, priority: 1.5 },
      { ...valid, priority: '10x' },
      { ...valid, expires_at: new Date(Date.now() - 60_000).toISOString() },
      { ...valid, expires_at: '2026-02-30T00:00:00Z' },
      { ...valid, expires_at: 'tomorrow' },
      { ...valid, expires_at: 1e308 },
      { ...valid, note: 'x'.repeat(10_000) },
      { ...valid, extra: 1 },
    ];
    const problems: string[] = [];
    for (const body of bad) {
      const r = await h.post(grantsPath(user), body, admin);
      if (r.status !== 400 || r.body.code !== 40000)
        problems.push(`${JSON.stringify(body).slice(0, 80)}: ${r.status} ${r.body.code}`);
    }
    for (const path of [grantsPath('bad user'), grantsPath('x'.repeat(65))]) {
      const r = await h.post(path, valid, admin);
      if (r.status !== 400 || r.body.code !== 40000) problems.push(`${path}: ${r.status} ${r.body.code}`);
    }
    const noAuth = await h.post(grantsPath(user), valid);
    if (noAuth.status !== 401) problems.push(`gateway token on an admin route: ${noAuth.status}`);
    const voidBadId = await h.post(voidPath(user, 'a b'), {}, admin);
    if (![400, 404].includes(voidBadId.status)) problems.push(`void bad id: ${voidBadId.status}`);
    expect(problems).to.deep.equal([]);
    await h.drain();
    expect({
      grants: await listGrants(h, user),
      acct: await account(h, user),
      rows: await grantEntries(h, user),
    }).to.deep.equal(before);
    await assertGrantsAgree(h, [user]);
  });
});

describe('credit grant expiry', function () {
  this.timeout(120_000);
  let h: Harness;
  let clock: FakeClock;
  before(async () => {
    clock = new FakeClock(new Date());
    h = await startHarness({ clock, overrides: { services: SERVICES } });
  });
  after(() => h.stop());

  it('is never spent after expires_at, even before the job runs, and its remainder leaves once', async () => {
    const user = h.user('late');
    await seedBalance(h, user, 1_000_000n);
    const expiresAt = new Date(clock.now().getTime() + 60_000);
    await createGrant(h, user, {
      grant_id: 'x',
      amount: '0.50',
      category: 'promotional',
      expires_at: expiresAt.toISOString(),
    });
    const d1 = await h.post(DEDUCT, { request_id: 'd1', user_id: user, service_name: 'tokens', count: 10 });
    expect(d1.body.data).to.include({ amount: '0.10', balance: '1.40' });
    clock.set(new Date(expiresAt.getTime() + 1));
    // The expiry job has not run: the grant is past its time all the same.
    expect((await account(h, user)).balance).to.equal('1.00');
    const check = await h.post(CHECK, { user_id: user, service_name: 'tokens', count: 101 });
    expect(check.body.data).to.include({ allowed: false, reason: 'insufficient_balance' });
    const d2 = await h.post(DEDUCT, { request_id: 'd2', user_id: user, service_name: 'tokens', count: 10 });
    expect(d2.body.data).to.include({ amount: '0.10', balance: '0.90' });
    await h.drain();
    expect((await grantEntries(h, user)).filter((e) => e.ref_id === d2.body.data.recordId)).to.deep.equal([]);
    // The job, run late, twice and concurrently, moves the remainder once.
    await Promise.all([1, 2, 3].map(() => runMaintenance(h, 'expire-grants')));
    await runMaintenance(h, 'expire-grants');
    await h.drain();
    const expired = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_expired');
    expect(expired.map((e) => [e.grant_id, e.amount])).to.deep.equal([['x', -400_000n]]);
    expect(grantOf(await listGrants(h, user), 'x')).to.include({ status: 'expired', remaining: '0.00' });
    expect((await account(h, user)).balance).to.equal('0.90');
    await assertGrantsAgree(h, [user]);
  });

  it('ends a grant that expires while its account is out of Redis, once', async () => {
    const user = h.user('evicted');
    await seedBalance(h, user, 1_000_000n);
    const expiresAt = new Date(clock.now().getTime() + 60_000);
    await createGrant(h, user, {
      grant_id: 'x',
      amount: '0.50',
      category: 'promotional',
      expires_at: expiresAt.toISOString(),
    });
    const d = await h.post(DEDUCT, { request_id: 'd', user_id: user, service_name: 'tokens', count: 10 });
    expect(d.body.data).to.include({ amount: '0.10', balance: '1.40' });
    await h.drain();
    clock.set(new Date(expiresAt.getTime() + 1_000));
    await h.probe.accounts.evictIdle(1_000);
    expect(await h.probe.redis.exists(h.probe.keys.account(user)), 'the account left Redis').to.equal(0);
    await Promise.all([1, 2].map(() => runMaintenance(h, 'expire-grants')));
    await h.drain();
    await runMaintenance(h, 'expire-grants');
    await h.drain();
    const expired = (await grantEntries(h, user)).filter((e) => e.entry_type === 'grant_expired');
    expect(expired.map((e) => [e.grant_id, e.amount])).to.deep.equal([['x', -400_000n]]);
    expect(grantOf(await listGrants(h, user), 'x')).to.include({ status: 'expired', remaining: '0.00' });
    expect((await account(h, user)).balance).to.equal('1.00');
    const after = await h.post(DEDUCT, { request_id: 'e', user_id: user, service_name: 'tokens', count: 101 });
    expect(after.body.code).to.equal(10001);
    await h.drain();
    await assertGrantsAgree(h, [user]);
  });

  it('never lets a hold committed after the grant’s expiry spend the grant', async () => {
    const user = h.user('hold-late');
    await seedBalance(h, user, 1_000_000n);
    const expiresAt = new Date(clock.now().getTime() + 30_000);
    await createGrant(h, user, {
      grant_id: 'soon',
      amount: '0.50',
      category: 'promotional',
      expires_at: expiresAt.toISOString(),
    });
    const hold = await h.post(RESERVE, {
      request_id: 'h',
      user_id: user,
      service_name: 'tokens',
      count: 20,
      ttl_seconds: 60,
    });
    expect(hold.status, JSON.stringify(hold.body)).to.equal(200);
    clock.set(new Date(expiresAt.getTime() + 10_000));
    const commit = await h.post(commitPath(hold.body.data.reservationId), { count: 20 });
    expect(commit.body.data, JSON.stringify(commit.body)).to.include({ amount: '0.20', balance: '0.80' });
    // The job finds due grants in MySQL: the grant is persisted first.
    await h.drain();
    await runMaintenance(h, 'expire-grants');
    await h.drain();
    const entries = await grantEntries(h, user);
    expect(
      entries.filter((e) => e.ref_id === commit.body.data.recordId),
      'grant spent after its expiry',
    ).to.deep.equal([]);
    expect(entries.filter((e) => e.entry_type === 'grant_expired').map((e) => e.amount)).to.deep.equal([-500_000n]);
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance).to.equal(800_000n);
    await assertGrantsAgree(h, [user]);
  });

  it('voids a grant a hold is holding part of: the hold still settles, and the whole grant leaves once', () =>
    voidHeld(h, true));

  it('is never overspent while it expires under 200 concurrent deducts, and its remainder leaves once', async () => {
    const user = h.user('race');
    await seedBalance(h, user, 5_000_000n);
    const expiresAt = new Date(clock.now().getTime() + 60_000);
    await createGrant(h, user, {
      grant_id: 'x',
      amount: '1.00',
      category: 'promotional',
      expires_at: expiresAt.toISOString(),
    });
    const call = (i: number) =>
      h.post(DEDUCT, { request_id: `r${i}`, user_id: user, service_name: 'tokens', count: 1 });
    // 100 calls in flight, then the grant's time passes, then 100 more with expiry runs among them.
    const early = Array.from({ length: 100 }, (_, i) => call(i));
    await early[30];
    clock.set(new Date(expiresAt.getTime()));
    const late = Array.from({ length: 100 }, (_, i) => call(100 + i));
    const sweeps = [1, 2, 3, 4].map(() => runMaintenance(h, 'expire-grants'));
    const answers = await Promise.all([...early, ...late]);
    await Promise.all(sweeps);
    await runMaintenance(h, 'expire-grants');
    expect(answers.map((a) => a.status)).to.deep.equal(answers.map(() => 200));
    await h.drain();
    const entries = (await grantEntries(h, user)).filter((e) => e.grant_id === 'x');
    const lateIds = new Set(answers.slice(100).map((a) => a.body.data.recordId as string));
    expect(
      entries.filter((e) => e.entry_type === 'grant_spend' && lateIds.has(e.ref_id)),
      'spent after expiry',
    ).to.deep.equal([]);
    const spent = entries.filter((e) => e.entry_type === 'grant_spend').reduce((s, e) => s - e.amount, 0n);
    const expired = entries.filter((e) => e.entry_type === 'grant_expired');
    expect(expired, 'one expiry entry').to.have.length(1);
    expect(spent - expired[0].amount, 'spent + expired = granted').to.equal(1_000_000n);
    expect(spent <= 1_000_000n, 'never more than granted').to.equal(true);
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance, 'the balance paid what the grant did not').to.equal(5_000_000n - (2_000_000n - spent));
    expect(micros((await account(h, user)).balance)).to.equal(balance);
    await assertGrantsAgree(h, [user]);
  });
});

describe('credit grants, limits and prices of an account that left Redis', function () {
  this.timeout(120_000);
  it('come back with the account on its next call, and the call is priced, limited and paid as before', async () => {
    const h = await startHarness({ overrides: { services: SERVICES } });
    try {
      const user = h.user('evicted');
      await seedBalance(h, user, 1_000_000n);
      await createGrant(h, user, { grant_id: 'first', amount: '0.10', category: 'promotional', priority: 1 });
      await createGrant(h, user, { grant_id: 'second', amount: '0.30', category: 'paid' });
      const price = await put(h, pricingPath(user, 'tokens'), { unit_price: '0.02' }, admin);
      const limit = await put(h, LIMITS, { user_id: user, daily: '0.50' });
      expect([price.status, limit.status]).to.deep.equal([200, 200]);
      const before = await h.post(DEDUCT, { request_id: 'a', user_id: user, service_name: 'tokens', count: 10 });
      expect(before.body.data).to.include({ amount: '0.20', balance: '1.20' });
      await h.drain();
      await new Promise((r) => setTimeout(r, 300));
      await h.probe.accounts.evictIdle(200);
      expect(await h.probe.redis.exists(h.probe.keys.account(user)), 'the account left Redis').to.equal(0);

      expect(await account(h, user)).to.include({ balance: '1.20' });
      // 0.20 of grant 'second' left, then the balance; 0.20 of the day's 0.50 used: 15 calls at 0.02 fit.
      const over = await h.post(DEDUCT, { request_id: 'b', user_id: user, service_name: 'tokens', count: 16 });
      expect([over.status, over.body.code], 'the limit came back').to.deep.equal([402, 10011]);
      const after = await h.post(DEDUCT, { request_id: 'c', user_id: user, service_name: 'tokens', count: 15 });
      expect(after.body.data, 'the price came back').to.include({ amount: '0.30', balance: '0.90' });
      await h.drain();
      const spends = (await grantEntries(h, user)).filter((e) => e.ref_id === after.body.data.recordId);
      expect(
        spends.map((e) => [e.grant_id, e.amount]),
        'the grants came back',
      ).to.deep.equal([['second', -200_000n]]);
      await assertGrantsAgree(h, [user]);
    } finally {
      await h.stop();
    }
  });
});

describe('credit grant voided before it is persisted', function () {
  this.timeout(120_000);
  it('still leaves whole once its holds are gone', async () => {
    // No worker at first: the grant's creation is still in the journal when it is voided.
    const h = await startHarness({ roles: ['api'], overrides: { services: SERVICES } });
    let workers: { close(): Promise<void> } | undefined;
    try {
      await voidHeld(h, false, async () => {
        workers = startWorkers(h.probe.workers, ['persistence']);
      });
    } finally {
      await workers?.close();
      await h.stop();
    }
  });
});

/**
 * Voids a grant two holds hold part of, then releases one and commits the other: the committed part
 * is spent, the rest leaves by grant_voided once the holds are gone. `startPersisting`: the harness
 * has no worker until then, so that the grant is voided before it is persisted.
 */
async function voidHeld(h: Harness, persistedFirst: boolean, startPersisting?: () => Promise<void>) {
  const user = h.user(`void-held-${persistedFirst}`);
  await seedBalance(h, user, 1_000_000n);
  await createGrant(h, user, { grant_id: 'v', amount: '1.00', category: 'promotional', priority: 1 });
  if (persistedFirst) await h.drain();
  const held = await h.post(RESERVE, { request_id: 'a', user_id: user, service_name: 'tokens', count: 30 });
  const committed = await h.post(RESERVE, { request_id: 'b', user_id: user, service_name: 'tokens', count: 20 });
  expect([held.status, committed.status]).to.deep.equal([200, 200]);
  const voided = await h.post(voidPath(user, 'v'), { note: 'revoked' }, admin);
  expect(voided.status, JSON.stringify(voided.body)).to.equal(200);
  // Nothing new spends it: the balance alone is left.
  expect((await account(h, user)).balance).to.equal('1.00');
  const d = await h.post(DEDUCT, { request_id: 'd', user_id: user, service_name: 'tokens', count: 101 });
  expect(d.body.code).to.equal(10001);
  await h.post(releasePath(held.body.data.reservationId), {});
  const commit = await h.post(commitPath(committed.body.data.reservationId), { count: 20 });
  expect(commit.status, JSON.stringify(commit.body)).to.equal(200);
  expect((await account(h, user)).balance, 'the released part does not come back to be spent').to.equal('1.00');
  await startPersisting?.();
  await h.drain();
  await Promise.all([1, 2].map(() => runMaintenance(h, 'expire-grants')));
  await h.drain();
  const entries = await grantEntries(h, user);
  const ended = entries.filter((e) => e.entry_type === 'grant_voided').reduce((sum, e) => sum - e.amount, 0n);
  const spent = entries.filter((e) => e.entry_type === 'grant_spend').reduce((sum, e) => sum - e.amount, 0n);
  expect({ spent, ended }).to.deep.equal({ spent: 200_000n, ended: 800_000n });
  expect(grantOf(await listGrants(h, user), 'v')).to.include({ status: 'voided', remaining: '0.00' });
  const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
  expect(balance).to.equal(1_000_000n);
  await assertGrantsAgree(h, [user]);
}
