import { expect } from 'chai';
import { startHarness, type Harness } from '../support/harness.js';
import type { CreditChange, DeductionChange, LedgerChange, RefundChange } from '../../src/lib/ledger-change.js';

/**
 * One persist transaction books a batch's balance changes with running balances: the account rows
 * are upserted with the batch's delta first, and each ledger entry's balance_after counts from the
 * balance before the batch. Mixed kinds, new and existing accounts, entries already stored.
 */
describe('a persisted batch: running balances of mixed changes (MySQL only)', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ roles: ['api'] });
  });
  after(() => h.stop());

  const at = '2026-12-01T08:00:00.000Z';
  let seq = 0;
  const credit = (userId: string, amount: string): CreditChange => ({
    kind: 'recharge',
    id: `ord_${++seq}`,
    userId,
    amount,
    note: 'test',
    at,
  });
  const deduction = (userId: string, free: string, paid: string, amount: string): DeductionChange => ({
    kind: 'deduction',
    id: `rec_${++seq}`,
    userId,
    requestId: `req-${seq}`,
    service: 'passport',
    count: String(Number(free) + Number(paid)),
    free,
    paid,
    amount,
    unitPrice: '1000',
    period: '202612',
    day: '2026-12-01',
    at,
  });
  const refund = (d: DeductionChange, amount: string): RefundChange => ({
    kind: 'refund',
    id: `rfd_${++seq}`,
    refundId: `refund-${seq}`,
    userId: d.userId,
    recordId: d.id,
    requestId: d.requestId,
    service: d.service,
    period: d.period,
    day: d.day,
    count: d.paid,
    free: '0',
    paid: d.paid,
    amount,
    freeReturned: '0',
    at,
  });

  /** The user's ledger in id order: each balance_after must be the sum so far, the last the balance. */
  async function expectRunning(userId: string, balance: bigint) {
    const rows: { amount: string; balance_after: string }[] = await h.probe
      .db('ledger_entries')
      .where({ user_id: userId })
      .orderBy('id')
      .select('amount', 'balance_after');
    let sum = 0n;
    for (const [i, r] of rows.entries()) {
      sum += BigInt(r.amount);
      expect(BigInt(r.balance_after), `${userId} entry ${i}`).to.equal(sum);
    }
    const account = await h.probe.db('accounts').where({ user_id: userId }).first('balance');
    expect(BigInt(account.balance), `${userId} balance`).to.equal(balance);
    expect(sum, `${userId} ledger sum`).to.equal(balance);
  }

  it('counts each entry from the balance before the batch, whatever else the batch holds', async () => {
    const ledger = h.probe.repositories.ledger;
    const existing = h.user('existing');
    const fresh = h.user('fresh');
    const freeOnly = h.user('free-only');
    await ledger.applyChanges([credit(existing, '5000000')]);
    await expectRunning(existing, 5_000_000n);

    const paid1 = deduction(existing, '0', '2', '2000');
    const paid2 = deduction(fresh, '1', '1', '1000');
    const batch: LedgerChange[] = [
      paid1,
      deduction(existing, '3', '0', '0'), // free: no ledger entry, no balance change
      credit(fresh, '300000'),
      paid2,
      refund(paid1, '1000'),
      credit(existing, '7'),
      deduction(freeOnly, '2', '0', '0'),
      deduction(existing, '0', '1', '1000'),
    ];
    expect(await ledger.applyChanges(batch)).to.deep.equal({ applied: 8, alreadyPersisted: 0 });
    await expectRunning(existing, 5_000_000n - 2000n + 1000n + 7n - 1000n);
    await expectRunning(fresh, 300_000n - 1000n);
    await expectRunning(freeOnly, 0n);

    // The same batch again with new changes among the stored ones: only the new count, from the balance now.
    const later = [deduction(fresh, '0', '3', '3000'), credit(freeOnly, '50')];
    expect(await ledger.applyChanges([...batch, ...later])).to.deep.equal({ applied: 2, alreadyPersisted: 8 });
    await expectRunning(existing, 4_998_007n);
    await expectRunning(fresh, 296_000n);
    await expectRunning(freeOnly, 50n);
    // Concurrently, overlapping batches of one user: each entry once, running balances still exact.
    const racing = Array.from({ length: 6 }, () => deduction(fresh, '0', '1', '1000'));
    const results = await Promise.allSettled([
      ledger.applyChanges(racing.slice(0, 4)),
      ledger.applyChanges(racing.slice(2)),
      ledger.applyChanges(racing.slice(1, 5)),
    ]);
    // A loser of a race on the same change rolls back whole (a unique key): what the persisting job retries.
    for (const r of results) if (r.status === 'rejected') await ledger.applyChanges(racing);
    await ledger.applyChanges(racing);
    await expectRunning(fresh, 290_000n);
  });
});
