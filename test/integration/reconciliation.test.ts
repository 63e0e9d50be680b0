import { expect } from 'chai';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { startWorkers } from '../../src/workers/workers.js';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const DEDUCT = '/internal/v1/billing/deduct';

describe('reconciliation', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({
      simulator: true,
      overrides: {
        services: [{ name: 'passport', free_quota: 5, unit_price: '0.01' }],
        persistence: { sweep_after: 0 },
        payment_service: { pending_check_after: 0 },
      },
    });
  });
  after(() => h.stop());

  const run = () => h.probe.reconciliation.run('manual');

  it('sets drifted Redis balance and free quota back to MySQL, and records each repair', async () => {
    const probe = h.probe;
    const user = h.user('drift');
    await seedBalance(h, user, 1_000_000n);
    await h.post(DEDUCT, { request_id: 'd1', user_id: user, service_name: 'passport', count: 7 });
    await h.drain();
    // Drift made on purpose: Redis says 3.00 more, and 2 fewer free calls used, than MySQL.
    await probe.redis.hincrby(probe.keys.account(user), 'bal', 3_000_000);
    await probe.redis.hset(probe.keys.quota(user, probe.calendar.period(probe.clock.now())), 'passport', '3');
    const summary = await run();
    expect(summary).to.include({ status: 'ok', repairs: 2, mismatches: 2 });
    const repairs = await h.get(`/admin/v1/reconciliation/runs/${summary.id}`, {}, admin);
    expect(repairs.body.data.repairs.map((r: any) => [r.userId, r.subject, r.before, r.after])).to.deep.equal([
      [user, 'bal', '3980000', '980000'],
      [user, 'quota:passport', '3', '5'],
    ]);
    await h.assertInvariant([user]);
    expect((await run()).repairs).to.equal(0); // idempotent: nothing left to repair
  });

  it('repairs a drift exactly once when two runs find it at the same time', async () => {
    const probe = h.probe;
    const user = h.user('drift-twice');
    await seedBalance(h, user, 2_000_000n);
    await h.drain();
    await probe.redis.hincrby(probe.keys.account(user), 'bal', 700_000);
    await probe
      .db('accounts')
      .where({ user_id: user })
      .update({ balance: probe.db.raw('balance + 300') });
    const runs = await Promise.all([run(), run(), run()]);
    const repairs = (await Promise.all(runs.map((r) => h.get(`/admin/v1/reconciliation/runs/${r.id}`, {}, admin))))
      .flatMap((r) => r.body.data.repairs)
      .filter((r: any) => r.userId === user);
    // One MySQL repair (to the ledger) and one Redis repair (to MySQL), whichever run made them.
    expect(repairs.map((r: any) => r.subject).sort()).to.deep.equal(['bal', 'mysql_balance']);
    await h.assertInvariant([user]);
    expect((await probe.repositories.ledger.balanceAndLedgerSum(user)).balance).to.equal(2_000_000n);
  });

  it('sets a MySQL balance that disagrees with its ledger to the ledger sum', async () => {
    const probe = h.probe;
    const user = h.user('ledger');
    await seedBalance(h, user, 2_000_000n);
    await h.drain();
    await probe
      .db('accounts')
      .where({ user_id: user })
      .update({ balance: probe.db.raw('balance + 500') });
    const summary = await run();
    expect(summary.repairs).to.equal(1); // MySQL only: Redis was right all along and stays untouched
    const repairs = (await h.get(`/admin/v1/reconciliation/runs/${summary.id}`, {}, admin)).body.data.repairs;
    expect(repairs).to.deep.equal([
      {
        userId: user,
        kind: 'ledger_vs_balance',
        subject: 'mysql_balance',
        before: '2000500',
        after: '2000000',
        repaired: true,
        note: 'MySQL balance set to the ledger sum',
      },
    ]);
    const { balance, ledgerSum } = await probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance).to.equal(ledgerSum);
    expect(balance).to.equal(2_000_000n);
    await h.assertInvariant([user]);
  });

  it('verifies only the entries added since the last run, and a full audit sums the whole ledger', async () => {
    const probe = h.probe;
    const user = h.user('since-audit');
    await seedBalance(h, user, 5_000_000n);
    await h.post(DEDUCT, { request_id: 'a1', user_id: user, service_name: 'passport', count: 7 });
    await h.drain();
    await run();
    const verified = await probe.db('accounts').where({ user_id: user }).first('audited_entry_id', 'audited_balance');
    const latest = await probe.db('ledger_entries').where({ user_id: user }).max({ id: 'id' }).first();
    expect(String(verified.audited_entry_id)).to.equal(String(latest!.id));
    expect(String(verified.audited_balance)).to.equal('4980000');

    // History rewritten behind the verified entry: a run over what changed does not re-sum it ...
    const first = await probe.db('ledger_entries').where({ user_id: user }).orderBy('id').first('id');
    await probe
      .db('ledger_entries')
      .where({ id: first.id })
      .update({ amount: probe.db.raw('amount + 7') });
    await h.post(DEDUCT, { request_id: 'a2', user_id: user, service_name: 'passport', count: 1 });
    await h.drain();
    await probe.repositories.reconciliation.setState('audit_cursor', '~'); // the rolling audit slice is elsewhere
    const incremental = await run();
    const mine = (id: number) => probe.db('reconciliation_repairs').where({ run_id: id, user_id: user });
    expect(await mine(incremental.id)).to.have.length(0);
    // ... a new entry that breaks the running balance is found at once ...
    await probe.db('ledger_entries').insert({
      user_id: user,
      entry_type: 'adjustment',
      ref_id: 'forged',
      amount: '100',
      balance_after: '4970100',
      note: 'forged',
      created_at: new Date(),
    });
    await probe
      .db('accounts')
      .where({ user_id: user })
      .update({ changed_at: probe.db.raw('CURRENT_TIMESTAMP(3)') });
    const caught = await run();
    expect((await mine(caught.id)).map((r: any) => r.kind)).to.include('ledger_vs_balance');
    // ... and the full audit, on demand, sums everything and sets MySQL to the ledger.
    const full = await probe.reconciliation.run('manual', undefined, { full: true });
    expect(full.users_checked).to.be.greaterThan(0);
    const { balance, ledgerSum } = await probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(balance).to.equal(ledgerSum);
    await probe.db('ledger_entries').where({ user_id: user }).del();
    await probe.db('accounts').where({ user_id: user }).del();
  });

  it('re-enqueues a recorded change whose job was lost', async () => {
    const apiOnly = await startHarness({ roles: ['api'], overrides: { persistence: { sweep_after: 0 } } });
    try {
      const probe = apiOnly.probe;
      const user = apiOnly.user('orphan');
      await apiOnly.post(DEDUCT, { request_id: 'o1', user_id: user, service_name: 'passport' });
      await probe.persistence.drainBuffer();
      await probe.queues.queueOf('persist-changes').obliterate({ force: true });
      const summary = await probe.reconciliation.run('manual');
      expect(summary.reenqueued).to.equal(1);
      // Not yet in MySQL, so not among the accounts changed there: nothing of it is compared or repaired.
      const repairs = await probe.db('reconciliation_repairs').where({ run_id: summary.id, user_id: user });
      expect(repairs).to.have.length(0);
      const workers = startWorkers(probe.workers, ['persistence']);
      try {
        await apiOnly.drain();
      } finally {
        await workers.close();
      }
      expect((await apiOnly.get('/api/v1/billing/records', { user_id: user })).body.data.total).to.equal(1);
      await apiOnly.assertInvariant([user]);
    } finally {
      await apiOnly.stop();
    }
  });

  it('completes an order whose callback was lost, closes one the payment service closed, fails a failed one', async () => {
    const user = h.user('lost-callback');
    const recharge = async (amount: string) =>
      (await h.post('/api/v1/billing/recharge', { user_id: user, amount, payment_method: 'alipay' })).body.data;
    const paid = await recharge('7.00');
    const closed = await recharge('9.00');
    const failed = await recharge('3.00');
    expect(await h.sim!.pay(paid.paymentId, 'lost')).to.deep.equal([]);
    h.sim!.payments.get(closed.paymentId)!.status = 'CLOSED';
    expect(await h.sim!.fail(failed.paymentId, 'lost')).to.deep.equal([]);
    const summary = await run();
    expect(summary).to.include({ orders_completed: 1, orders_closed: 2 });
    const repairs = await h.get(`/admin/v1/reconciliation/runs/${summary.id}`, {}, admin);
    expect(
      (repairs.body.data.repairs as { subject: string; after: string }[])
        .filter((r) => r.subject === failed.orderId || r.subject === closed.orderId)
        .map((r) => r.after)
        .sort(),
    ).to.deep.equal(['closed', 'failed']);
    expect((await h.get(`/api/v1/billing/recharge/${failed.orderId}`, { user_id: user })).body.data.status).to.equal(
      'failed',
    );
    const events = await h.get('/admin/v1/events', { user_id: user, type: 'recharge.failed' }, admin);
    expect(events.body.data.events.map((e: { data: { orderId: string } }) => e.data.orderId)).to.deep.equal([
      failed.orderId,
    ]);
    await h.drain();
    const acct = await h.get('/api/v1/billing/account', { user_id: user });
    expect(acct.body.data.balance).to.equal('7.00');
    expect((await h.get(`/api/v1/billing/recharge/${paid.orderId}`, { user_id: user })).body.data.status).to.equal(
      'paid',
    );
    expect((await h.get(`/api/v1/billing/recharge/${closed.orderId}`, { user_id: user })).body.data.status).to.equal(
      'closed',
    );
    // The callback arriving late after all credits nothing more.
    await h.sim!.pay(paid.paymentId, 'normal');
    await h.drain();
    expect((await h.get('/api/v1/billing/account', { user_id: user })).body.data.balance).to.equal('7.00');
    await h.assertInvariant([user]);
  });

  it('repairs nothing while deductions are flowing, and the invariant holds afterwards', async () => {
    const users = Array.from({ length: 10 }, (_, i) => h.user(`live${i}`));
    await Promise.all(users.map((u) => seedBalance(h, u, 1_000_000n)));
    await h.drain();
    const load = Promise.all(
      users.flatMap((u) =>
        Array.from({ length: 50 }, (_, i) =>
          h.post(DEDUCT, { request_id: `l${i}`, user_id: u, service_name: 'passport' }),
        ),
      ),
    );
    const runs = await Promise.all([run(), run(), run()]);
    await load;
    for (const r of runs) expect(r.repairs).to.equal(0);
    await h.drain();
    expect((await run()).repairs).to.equal(0);
    await h.assertInvariant(users);
  });

  it('lists runs at GET /admin/v1/reconciliation/runs, and queues one on demand', async () => {
    const list = await h.get('/admin/v1/reconciliation/runs', { limit: 3 }, admin);
    expect(list.status).to.equal(200);
    expect(list.body.data.runs).to.have.length(3);
    expect(list.body.data.runs[0]).to.include.keys(
      'id',
      'status',
      'durationMs',
      'usersChecked',
      'mismatches',
      'repairs',
      'ordersCompleted',
    );
    const queued = await h.post('/admin/v1/reconciliation/runs', {}, admin);
    expect(queued.status).to.equal(202);
    const before = list.body.data.runs[0].id;
    const deadline = Date.now() + 20_000;
    let latest = before;
    while (latest === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      latest = (await h.get('/admin/v1/reconciliation/runs', { limit: 1 }, admin)).body.data.runs[0].id;
    }
    expect(latest).to.be.greaterThan(before);
    expect((await h.get('/admin/v1/reconciliation/runs')).status).to.equal(401);
  });
});

describe('admin adjustments', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  it('applies an adjustment once however often and concurrently it is sent, through the ledger', async () => {
    const user = h.user('adj');
    const path = `/admin/v1/accounts/${user}/adjustments`;
    const body = { amount: '15.50', reason: 'goodwill credit', idempotency_key: 'ticket-42' };
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.post(path, body, admin)));
    expect(answers.every((a) => a.status === 200)).to.equal(true);
    expect(answers.filter((a) => a.body.data.applied)).to.have.length(1);
    expect((await h.post(path, { ...body, amount: '16.00' }, admin)).body.code).to.equal(10007);
    const debit = await h.post(path, { amount: '-20.00', reason: 'chargeback', idempotency_key: 'cb-1' }, admin);
    expect(debit.body.code).to.equal(10001);
    const ok = await h.post(path, { amount: '-5.50', reason: 'chargeback', idempotency_key: 'cb-2' }, admin);
    expect(ok.body.data).to.include({ applied: true, balance: '10.00' });
    await h.drain();
    const ledger = await h.get(`/admin/v1/accounts/${user}/ledger`, { page_size: 10 }, admin);
    expect(ledger.body.data.entries.map((e: any) => [e.type, e.amount])).to.deep.equal([
      ['adjustment', '-5.50'],
      ['adjustment', '15.50'],
    ]);
    const detail = await h.get(`/admin/v1/accounts/${user}`, {}, admin);
    expect(detail.body.data).to.include({
      balance: '10.00',
      mysqlBalance: '10.00',
      ledgerSum: '10.00',
      unpersistedChanges: 0,
    });
    await h.assertInvariant([user]);
  });

  it('refuses the gateway token and bad input', async () => {
    const user = h.user('adj2');
    const path = `/admin/v1/accounts/${user}/adjustments`;
    expect((await h.post(path, { amount: '1', reason: 'x', idempotency_key: 'k' })).status).to.equal(401);
    const bad = await h.post(path, { amount: '0', reason: 'no', idempotency_key: 'a b' }, admin);
    expect(bad.status).to.equal(400);
    expect(bad.body.details!.map((d) => d.field)).to.include.members(['reason', 'idempotency_key']);
  });
});
