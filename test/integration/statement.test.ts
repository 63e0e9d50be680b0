import { expect } from 'chai';
import { DateTime } from 'luxon';
import { startHarness, seedBalance, ADMIN_TOKEN, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';

const DEDUCT = '/internal/v1/billing/deduct';
const ZONE = 'Asia/Shanghai';

/** RFC 4180 lines to cells (quoted cells, doubled quotes). */
function parseCsv(text: string): string[][] {
  return text
    .split('\r\n')
    .slice(0, -1)
    .map((line) => {
      const cells: string[] = [];
      const re = /("((?:[^"]|"")*)"|[^,]*)(,|$)/g;
      let m: RegExpExecArray | null;
      while ((m = re.exec(line)) && m[0] !== '') {
        cells.push(m[2] !== undefined ? m[2].replace(/""/g, '"') : m[1]);
        if (m[3] === '') break;
      }
      return cells;
    });
}

describe('monthly statements', function () {
  this.timeout(120_000);
  let h: Harness;
  // Three whole months a year from now (free-quota hashes expire at real instants after their month,
  // so the test's months must not lie in the real past), then the month after them as "now".
  const first = DateTime.now().setZone(ZONE).startOf('month').plus({ years: 1 });
  const at = (months: number, plus: Record<string, number> = {}) => first.plus({ months, ...plus }).toJSDate();
  const [M1, M2, M3, M4, M5] = [0, 1, 2, 3, 4].map((i) => first.plus({ months: i }).toFormat('yyyy-LL'));
  const clock = new FakeClock(at(0, { days: 9, hours: 10 }));
  let user: string;
  let n = 0;
  const deduct = async (service: string, count = 1) => {
    const r = await h.post(DEDUCT, { request_id: `st-${n++}`, user_id: user, service_name: service, count });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body.data;
  };
  const recharge = (id: string, micros: bigint) =>
    h.running.ctx.credits.credit({
      kind: 'recharge',
      id: `${h.tag}-${id}`,
      userId: user,
      amount: micros,
      note: 'test recharge',
    });
  const statement = (month: string, query: Record<string, string> = {}) =>
    h.get(`/api/v1/billing/statements/${month}`, { user_id: user, ...query });

  /** The ledger's own answer, by SQL, for the business month [start, end). */
  async function ledgerTruth(month: string) {
    const start = DateTime.fromISO(`${month}-01`, { zone: ZONE });
    const [from, to] = [start.toJSDate(), start.plus({ months: 1 }).toJSDate()];
    const db = h.running.ctx.db;
    const before = await db('ledger_entries')
      .where('user_id', user)
      .andWhere('created_at', '<', from)
      .sum({ s: 'amount' })
      .first();
    const through = await db('ledger_entries')
      .where('user_id', user)
      .andWhere('created_at', '<', to)
      .sum({ s: 'amount' })
      .first();
    const byType: { entry_type: string; s: string; c: number }[] = await db('ledger_entries')
      .where('user_id', user)
      .andWhere('created_at', '>=', from)
      .andWhere('created_at', '<', to)
      .groupBy('entry_type')
      .select('entry_type', db.raw('SUM(amount) AS s'), db.raw('COUNT(*) AS c'));
    return {
      opening: BigInt(before?.s ?? 0),
      closing: BigInt(through?.s ?? 0),
      byType: new Map(byType.map((r) => [r.entry_type, { sum: BigInt(r.s), count: Number(r.c) }])),
    };
  }
  const micros = (amount: string) => {
    const [units, frac = ''] = amount.replace('-', '').split('.');
    const v = BigInt(units) * 1_000_000n + BigInt(frac.padEnd(6, '0'));
    return amount.startsWith('-') ? -v : v;
  };

  before(async () => {
    h = await startHarness({
      clock,
      overrides: {
        services: [
          { name: 'passport', free_quota: 2, unit_price: '0.001' },
          { name: 'asset', free_quota: 0, unit_price: '0.25' },
        ],
      },
    });
    user = h.user('statement');
    // Month 1 (Shanghai): +100 adjustment, 2 free + 1 paid passport, asset x2, a 50.00 recharge,
    // and one asset call in the last tenth of a second of the month.
    await seedBalance(h, user, 100_000_000n);
    for (let i = 0; i < 3; i++) await deduct('passport');
    await deduct('asset', 2);
    await recharge('aug', 50_000_000n);
    clock.set(at(1, { milliseconds: -100 }));
    await deduct('asset');
    // Month 2, from its first instant: an operator's -5.00, passport free again then 1 paid, a 20.00 recharge.
    clock.set(at(1));
    await deduct('asset');
    const adj = await h.post(
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: '-5.00', reason: 'goodwill reversal', idempotency_key: `${h.tag}-sep` },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    );
    expect(adj.status).to.equal(200);
    clock.set(at(1, { days: 14, hours: 12 }));
    for (let i = 0; i < 3; i++) await deduct('passport');
    await recharge('sep', 20_000_000n);
    // Month 3: asset x4, +1.50.
    clock.set(at(2, { days: 19, hours: 12 }));
    await deduct('asset', 4);
    await h.running.ctx.credits.credit({
      kind: 'adjustment',
      id: `${h.tag}-oct`,
      userId: user,
      amount: 1_500_000n,
      note: 'october credit',
    });
    clock.set(at(3, { days: 4, hours: 12 }));
    await h.drain();
    await h.assertInvariant([user]);
  });
  after(() => h.stop());

  it('gives each of three months its figures, chained: a closing is the next opening', async () => {
    const [aug, sep, oct, nov] = await Promise.all([M1, M2, M3, M4].map((m) => statement(m)));
    for (const r of [aug, sep, oct, nov]) expect(r.status).to.equal(200);
    const a = aug.body.data;
    expect(a).to.deep.include({
      userId: user,
      month: M1,
      timeZone: ZONE,
      currency: 'CNY',
      closed: true,
      periodStart: at(0).toISOString(),
      periodEnd: at(1).toISOString(),
      openingBalance: '0.00',
      closingBalance: '149.249',
    });
    expect(a.recharges).to.deep.equal({ entries: 1, amount: '50.00' });
    expect(a.adjustments).to.deep.equal({ entries: 1, amount: '100.00' });
    expect(a.charges).to.deep.equal({
      entries: 3,
      amount: '-0.751',
      services: [
        { serviceName: 'asset', entries: 2, amount: '-0.75' },
        { serviceName: 'passport', entries: 1, amount: '-0.001' },
      ],
    });
    for (const k of ['refunds', 'grants', 'grantSpending', 'grantRefunds', 'grantExpiries'])
      expect(a[k]).to.deep.equal({ entries: 0, amount: '0.00' });
    expect(a.otherEntries).to.deep.equal([]);

    const s = sep.body.data;
    expect(s).to.deep.include({ openingBalance: '149.249', closingBalance: '163.998', closed: true });
    expect(s.charges.services).to.deep.equal([
      { serviceName: 'asset', entries: 1, amount: '-0.25' },
      { serviceName: 'passport', entries: 1, amount: '-0.001' },
    ]);
    expect(s.adjustments).to.deep.equal({ entries: 1, amount: '-5.00' });
    expect(s.recharges).to.deep.equal({ entries: 1, amount: '20.00' });

    const o = oct.body.data;
    expect(o).to.deep.include({ openingBalance: '163.998', closingBalance: '164.498' });
    expect(o.charges).to.deep.equal({
      entries: 1,
      amount: '-1.00',
      services: [{ serviceName: 'asset', entries: 1, amount: '-1.00' }],
    });

    // The current month: nothing yet, closing = the balance now, marked not closed.
    const account = await h.get('/api/v1/billing/account', { user_id: user });
    expect(nov.body.data).to.deep.include({
      openingBalance: '164.498',
      closingBalance: account.body.data.balance,
      closed: false,
    });

    for (const [m, next] of [
      [a, s],
      [s, o],
      [o, nov.body.data],
    ])
      expect(m.closingBalance).to.equal(next.openingBalance);
  });

  it('agrees with SUM over the ledger entries, figure by figure', async () => {
    for (const month of [M1, M2, M3, M4]) {
      const st = (await statement(month)).body.data;
      const truth = await ledgerTruth(month);
      expect(micros(st.openingBalance), `${month} opening`).to.equal(truth.opening);
      expect(micros(st.closingBalance), `${month} closing`).to.equal(truth.closing);
      const figures: [string, { entries: number; amount: string }][] = [
        ['deduction', st.charges],
        ['recharge', st.recharges],
        ['adjustment', st.adjustments],
        ['refund', st.refunds],
      ];
      let sum = micros(st.openingBalance);
      for (const [type, f] of figures) {
        expect(micros(f.amount), `${month} ${type}`).to.equal(truth.byType.get(type)?.sum ?? 0n);
        expect(f.entries, `${month} ${type} entries`).to.equal(truth.byType.get(type)?.count ?? 0);
        sum += micros(f.amount);
      }
      expect(sum, `${month}: opening + figures = closing`).to.equal(micros(st.closingBalance));
      const perService = st.charges.services.reduce((acc: bigint, x: { amount: string }) => acc + micros(x.amount), 0n);
      expect(perService, `${month} services add up to the charges`).to.equal(micros(st.charges.amount));
    }
  });

  it('reads the same once its oldest month has moved to the archive tables', async () => {
    const months = [M1, M2, M3, M4];
    const before = await Promise.all(months.map(async (m) => (await statement(m)).body.data));
    // What the archive job does (SPEC 16): month 1's entries and records move, the account keeps their sum.
    const db = h.running.ctx.db;
    await db.transaction(async (trx) => {
      const cut = at(1);
      const moved = await trx('ledger_entries')
        .where('user_id', user)
        .andWhere('created_at', '<', cut)
        .sum({ s: 'amount' })
        .max({ last: 'id' })
        .first();
      await trx.raw(
        'INSERT INTO ledger_entries_archive SELECT l.*, NOW(3) FROM ledger_entries l WHERE user_id = ? AND created_at < ?',
        [user, cut],
      );
      await trx('ledger_entries').where('user_id', user).andWhere('created_at', '<', cut).delete();
      await trx.raw(
        'INSERT INTO consumption_records_archive SELECT r.*, NOW(3) FROM consumption_records r WHERE user_id = ? AND created_at < ?',
        [user, cut],
      );
      await trx('consumption_records').where('user_id', user).andWhere('created_at', '<', cut).delete();
      await trx('accounts')
        .where('user_id', user)
        .update({
          archived_balance: trx.raw('archived_balance + ?', [String(moved!.s)]),
          archived_entry_id: trx.raw('GREATEST(archived_entry_id, ?)', [String(moved!.last)]),
        });
    });
    expect(Number((await db('ledger_entries_archive').where('user_id', user).count({ n: '*' }).first())!.n)).to.equal(
      5,
    );
    const after = await Promise.all(months.map(async (m) => (await statement(m)).body.data));
    expect(after).to.deep.equal(before);
    await h.assertInvariant([user]);
  });

  it('lists entry types it has no line for under their own names, in JSON and spreadsheet-safe CSV', async () => {
    const other = h.user('types');
    const booked = new Date('2026-09-10T00:00:00Z');
    // Grants have their own ledger, with their own lines and balance.
    await h.running.ctx.db('grant_entries').insert(
      [
        ['grant', 3_000_000, 3_000_000],
        ['grant_spend', -500_000, 2_500_000],
        ['grant_expired', -1_000_000, 1_500_000],
      ].map(([entry_type, amount, remaining_after], i) => ({
        user_id: other,
        grant_id: 'g',
        entry_type,
        ref_id: `g${i}`,
        amount,
        remaining_after,
        created_at: booked,
      })),
    );
    await h.running.ctx.db('ledger_entries').insert(
      [
        ['refund', 2_000_000],
        ['promo_bonus', 500_000],
        ['=HYPERLINK("x")', 1],
      ].map(([entry_type, amount], i) => ({
        user_id: other,
        entry_type,
        ref_id: `t${i}`,
        amount,
        note: null,
        created_at: booked,
      })),
    );
    const r = await h.get('/api/v1/billing/statements/2026-09', { user_id: other });
    expect(r.body.data).to.deep.include({
      openingBalance: '0.00',
      closingBalance: '2.500001',
      refunds: { entries: 1, amount: '2.00' },
      openingGrantBalance: '0.00',
      grants: { entries: 1, amount: '3.00' },
      grantSpending: { entries: 1, amount: '-0.50' },
      grantRefunds: { entries: 0, amount: '0.00' },
      grantExpiries: { entries: 1, amount: '-1.00' },
      closingGrantBalance: '1.50',
    });
    expect(r.body.data.otherEntries).to.have.deep.members([
      { entryType: 'promo_bonus', entries: 1, amount: '0.50' },
      { entryType: '=HYPERLINK("x")', entries: 1, amount: '0.000001' },
    ]);
    const csv = await fetch(`${h.url}/api/v1/billing/statements/2026-09?user_id=${other}&format=csv`, {
      headers: { authorization: `Bearer ${GATEWAY_TOKEN}` },
    });
    expect(csv.status).to.equal(200);
    expect(csv.headers.get('content-disposition')).to.equal(`attachment; filename="statement-${other}-2026-09.csv"`);
    const rows = parseCsv(await csv.text());
    expect(rows[0]).to.deep.equal(['line', 'service_name', 'entries', 'amount']);
    expect(rows).to.deep.include.members([
      ['opening_balance', '', '', '0.00'],
      ['refunds', '', '1', '2.00'],
      ['grant_expiries', '', '1', '-1.00'],
      ['promo_bonus', '', '1', '0.50'],
      [`'=HYPERLINK("x")`, '', '1', '0.000001'],
      ['closing_balance', '', '', '2.500001'],
      ['grants', '', '1', '3.00'],
      ['closing_grant_balance', '', '', '1.50'],
    ]);
  });

  it('gives the CSV of a month with the same figures as its JSON', async () => {
    const json = (await statement(M1)).body.data;
    const res = await fetch(`${h.url}/api/v1/billing/statements/${M1}?user_id=${user}&format=csv`, {
      headers: { authorization: `Bearer ${GATEWAY_TOKEN}` },
    });
    const rows = parseCsv(await res.text());
    expect(rows).to.deep.equal([
      ['line', 'service_name', 'entries', 'amount'],
      ['opening_balance', '', '', json.openingBalance],
      ['recharges', '', '1', '50.00'],
      ['charges', 'asset', '2', '-0.75'],
      ['charges', 'passport', '1', '-0.001'],
      ['charges_total', '', '3', '-0.751'],
      ['refunds', '', '0', '0.00'],
      ['adjustments', '', '1', '100.00'],
      ['closing_balance', '', '', '149.249'],
      ['opening_grant_balance', '', '', '0.00'],
      ['grants', '', '0', '0.00'],
      ['grant_spending', '', '0', '0.00'],
      ['grant_refunds', '', '0', '0.00'],
      ['grant_expiries', '', '0', '0.00'],
      ['closing_grant_balance', '', '', '0.00'],
    ]);
  });

  it('refuses a future month, a month before 1970, a malformed month or format, without the token', async () => {
    for (const month of [M5, '9999-12', '1969-12', '2026-13', '2026-00', '2026-1', '26-01', 'latest']) {
      const r = await statement(month);
      expect(r.status, month).to.equal(400);
      expect(r.body.code, month).to.equal(40000);
      expect(r.body.details?.[0].field, month).to.equal('month');
    }
    const fmt = await statement(M1, { format: 'xml' });
    expect(fmt.status).to.equal(400);
    const noUser = await h.get(`/api/v1/billing/statements/${M1}`);
    expect(noUser.status).to.equal(400);
    const anon = await fetch(`${h.url}/api/v1/billing/statements/${M1}?user_id=${user}`);
    expect(anon.status).to.equal(401);
  });
});
