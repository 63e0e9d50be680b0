import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Locator } from 'playwright-core';
import { startHarness, seedBalance, ADMIN_TOKEN, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import type { Clock } from '../../src/lib/clock.js';

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SHOTS = tmpdir();

/** Real time moved by an offset the test sets: the service's days and expiries follow it. */
class OffsetClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
}

/** Waits until the element's text is (or contains) the expected text; fails with the last text seen. */
async function textBecomes(
  locator: Locator,
  expected: string,
  how: 'is' | 'contains' = 'is',
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string | null = null;
  while (Date.now() < deadline) {
    last = await locator.textContent();
    if (last !== null && (how === 'is' ? last === expected : last.includes(expected))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `text ${how === 'is' ? 'is not' : 'does not contain'} ${JSON.stringify(expected)}: ${JSON.stringify(last)}`,
  );
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

describe('customer portal', function () {
  this.timeout(180_000);
  const clock = new OffsetClock();
  let h: Harness;
  let alice: string;
  let bob: string;
  let link: { url: string; expiresAt: string };
  let token: string;
  const portalGet = (path: string, session: string | undefined, headers: Record<string, string> = {}) =>
    fetch(`${h.url}/portal/v1${path}`, {
      headers: { ...(session === undefined ? {} : { 'x-portal-session': session }), ...headers },
    });
  const newLink = async (userId: string) => {
    const r = await h.post('/api/v1/billing/portal-sessions', { user_id: userId });
    expect(r.status).to.equal(200);
    return r.body.data as { url: string; expiresAt: string };
  };

  before(async () => {
    h = await startHarness({
      simulator: true,
      clock,
      overrides: {
        services: [
          { name: 'passport', free_quota: 10, unit_price: '0.01' },
          { name: 'asset', free_quota: 2, unit_price: '0.05' },
        ],
      },
    });
    alice = h.user('alice');
    bob = h.user('bob');
    await seedBalance(h, alice, 5_000_000n);
    await seedBalance(h, bob, 9_000_000n);
    // Alice: 25 calls over three days (15 passport, 10 asset); Bob: calls whose ids must never show.
    let n = 0;
    for (const [daysAgo, service, count] of [
      [2, 'passport', 6],
      [1, 'asset', 10],
      [0, 'passport', 9],
    ] as const) {
      clock.offsetMs = -daysAgo * DAY;
      for (let i = 0; i < count; i++) {
        const r = await h.post('/internal/v1/billing/deduct', {
          request_id: `alice-${n++}`,
          user_id: alice,
          service_name: service,
        });
        expect(r.status).to.equal(200);
      }
    }
    clock.offsetMs = 0;
    for (let i = 0; i < 3; i++)
      await h.post('/internal/v1/billing/deduct', {
        request_id: `bob-secret-${i}`,
        user_id: bob,
        service_name: 'asset',
      });
    await h.drain();
    link = await newLink(alice);
    token = new URL(link.url).hash.replace('#session=', '');
  });
  after(() => h.stop());

  describe('sessions and their refusals', () => {
    it('gives the gateway a signed link valid one hour, and nobody else', async () => {
      expect(link.url.startsWith(`${h.url}/portal#session=`)).to.equal(true);
      const validFor = Date.parse(link.expiresAt) - Date.now();
      expect(validFor).to.be.within(HOUR - 60_000, HOUR);
      const anon = await fetch(`${h.url}/api/v1/billing/portal-sessions`, {
        method: 'POST',
        body: JSON.stringify({ user_id: alice }),
        headers: { 'content-type': 'application/json' },
      });
      expect(anon.status).to.equal(401);
      expect((await h.post('/api/v1/billing/portal-sessions', { user_id: 'bad user' })).status).to.equal(400);
      expect((await h.post('/api/v1/billing/portal-sessions', {})).status).to.equal(400);
    });

    it("answers the session's user only, and never takes a user from the caller", async () => {
      const account = await (await portalGet('/account', token)).json();
      expect(account.data.userId).to.equal(alice);
      const recs = await (await portalGet('/records?page_size=100', token)).json();
      expect(recs.data.total).to.equal(25);
      expect(recs.data.records.every((r: any) => r.requestId.startsWith('alice-'))).to.equal(true);
      const other = await portalGet(`/records?user_id=${bob}`, token);
      expect(other.status).to.equal(400);
      expect(JSON.stringify(await other.json())).not.to.contain('bob-secret');
      // Bob's order is no order of Alice's.
      const bobOrder = await h.post('/api/v1/billing/recharge', {
        user_id: bob,
        amount: '1.00',
        payment_method: 'alipay',
      });
      const seen = await portalGet(`/recharge/${bobOrder.body.data.orderId}`, token);
      expect(seen.status).to.equal(404);
      expect((await seen.json()).code).to.equal(10003);
    });

    it("refuses a missing, forged, re-signed, other user's or expired session (401 JSON), and the gateway token", async () => {
      const [payload, signature] = token.split('.');
      const forgedPayload = Buffer.from(JSON.stringify({ u: bob, e: Date.now() + HOUR })).toString('base64url');
      const otherSecret = createHmac('sha256', 'not-the-portal-secret')
        .update(`portal-session.v1.${forgedPayload}`)
        .digest('base64url');
      const flipped = signature.slice(0, -1) + (signature.endsWith('A') ? 'B' : 'A');
      const cases: [string, string | undefined, Record<string, string>?][] = [
        ['none', undefined],
        ['empty', ''],
        ['garbage', 'garbage'],
        ['flipped signature', `${payload}.${flipped}`],
        ["bob with alice's signature", `${forgedPayload}.${signature}`],
        ['signed with another secret', `${forgedPayload}.${otherSecret}`],
        ['gateway token instead', undefined, { authorization: `Bearer ${GATEWAY_TOKEN}` }],
      ];
      for (const [name, session, headers] of cases) {
        const res = await portalGet('/account', session, headers);
        expect(res.status, name).to.equal(401);
        const body = await res.json();
        expect(body, name).to.include({ success: false, code: 40100 });
        expect(JSON.stringify(body), name).not.to.contain(alice);
      }
      clock.offsetMs = HOUR + 1000;
      try {
        const expired = await portalGet('/account', token);
        expect(expired.status).to.equal(401);
        expect((await expired.json()).message).to.match(/expired/);
      } finally {
        clock.offsetMs = 0;
      }
      expect((await portalGet('/account', token)).status).to.equal(200);
    });
  });

  describe('recharges from the portal (money)', () => {
    const rechargeVia = (session: string, body: unknown) =>
      fetch(`${h.url}/portal/v1/recharge`, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', 'x-portal-session': session },
      });
    const orderCount = async (userId: string) =>
      Number((await h.running.ctx.db('recharge_orders').where('user_id', userId).count({ n: '*' }).first())!.n);

    it('credits two concurrent recharges once each, and a repeated callback changes nothing', async () => {
      const carol = h.user('carol');
      const session = new URL((await newLink(carol)).url).hash.replace('#session=', '');
      const orders = await Promise.all([
        rechargeVia(session, { amount: '3.00', payment_method: 'alipay' }),
        rechargeVia(session, { amount: '4.50', payment_method: 'wechat' }),
      ]);
      const created = await Promise.all(orders.map(async (r) => (await r.json()).data));
      expect(created.map((o) => o.status)).to.deep.equal(['pending', 'pending']);
      expect(new Set(created.map((o) => o.orderId)).size).to.equal(2);
      await Promise.all(created.map((o) => h.sim!.pay(o.paymentId)));
      await Promise.all(created.map((o) => h.sim!.pay(o.paymentId, 'duplicate')));
      await h.drain();
      const account = await (await portalGet('/account', session)).json();
      expect(account.data.balance).to.equal('7.50');
      await h.assertInvariant([carol]);
    });

    it('refuses hostile amounts and methods, creating no order', async () => {
      const dave = h.user('dave');
      const session = new URL((await newLink(dave)).url).hash.replace('#session=', '');
      const hostile: unknown[] = [
        { amount: '-5.00', payment_method: 'alipay' },
        { amount: '0', payment_method: 'alipay' },
        { amount: '0.001', payment_method: 'alipay' },
        { amount: '1e3', payment_method: 'alipay' },
        { amount: ' 1.00', payment_method: 'alipay' },
        { amount: '99999999999', payment_method: 'alipay' },
        { amount: 'NaN', payment_method: 'alipay' },
        { amount: '1.00', payment_method: 'paypal' },
        { amount: '1.00' },
        { amount: '1.00', payment_method: 'alipay', user_id: alice },
        { amount: '1.00', payment_method: 'alipay', currency: 'USD' },
        [],
        'x',
      ];
      for (const body of hostile) {
        const r = await rechargeVia(session, body);
        expect(r.status, JSON.stringify(body)).to.equal(400);
        expect((await r.json()).code, JSON.stringify(body)).to.equal(40000);
      }
      expect(await orderCount(dave)).to.equal(0);
      expect(await orderCount(alice)).to.equal(0);
      await h.drain();
      await h.assertInvariant([dave, alice]);
    });
  });

  describe('the page in Chromium', () => {
    let browser: Browser;
    before(async () => {
      browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
        args: CHROMIUM_FLAGS,
      });
    });
    after(() => browser?.close());

    it('shows balance, quotas with their month, a usage chart and paged, filtered records on a phone', async () => {
      const context = await browser.newContext({
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 2,
        isMobile: true,
        hasTouch: true,
      });
      const page = await context.newPage();
      const foreign: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(h.url)) foreign.push(r.url());
      });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Console errors include what the Content-Security-Policy blocked.
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      await page.goto(link.url);
      const account = (await h.get('/api/v1/billing/account', { user_id: alice })).body.data;
      await textBecomes(page.locator('#balance'), account.balance);
      expect(page.url()).not.to.contain('session=');
      const month = account.quotas[0].period;
      expect(await page.locator('#quota-month').textContent()).to.equal(`(${month})`);
      const quotaRows = await page.locator('#quota-table tbody tr').allTextContents();
      expect(quotaRows.some((r) => r.includes('passport') && r.includes('10'))).to.equal(true);
      // The chart: one series per service, the calls of every day.
      await page.waitForFunction(() => (window as any).Chart?.getChart('usage-chart')?.data.datasets.length === 2);
      const series = await page.evaluate(() =>
        (window as any).Chart.getChart('usage-chart').data.datasets.map((d: any) => [
          d.label,
          d.data.reduce((a: number, b: number) => a + b, 0),
        ]),
      );
      expect(series).to.deep.equal([
        ['passport', 15],
        ['asset', 10],
      ]);
      await textBecomes(page.locator('#usage-summary'), '25 calls', 'contains');
      // Records: 20 of 25, then the rest, with the keyboard.
      await textBecomes(page.locator('#page-info'), 'Page 1 of 2 (25 records)');
      expect(await page.locator('#records-table tbody tr').count()).to.equal(20);
      await page.getByRole('button', { name: 'Next page' }).focus();
      await page.keyboard.press('Enter');
      await textBecomes(page.locator('#page-info'), 'Page 2 of 2 (25 records)');
      expect(await page.locator('#records-table tbody tr').count()).to.equal(5);
      await page.getByRole('button', { name: 'Previous page' }).press('Enter');
      await textBecomes(page.locator('#page-info'), 'Page 1 of 2 (25 records)');
      await page.getByLabel('Service', { exact: true }).selectOption('asset');
      await page.getByRole('button', { name: 'Apply filters' }).click();
      await textBecomes(page.locator('#page-info'), 'Page 1 of 1 (10 records)');
      expect(await page.content()).not.to.contain('bob-secret');
      // Every form control has a label.
      const unlabelled = await page.evaluate(() =>
        [...document.querySelectorAll('input, select')]
          .filter((e) => (e as HTMLInputElement).labels?.length === 0)
          .map((e) => e.id),
      );
      expect(unlabelled).to.deep.equal([]);
      // Nothing but this service: the chart library included.
      expect(foreign).to.deep.equal([]);
      expect(errors).to.deep.equal([]);
      await page.screenshot({ path: join(SHOTS, 'billing-portal-phone.png'), fullPage: true });
      await context.close();
    });

    it("recharges through the payment simulator's pay page and shows the new balance", async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.goto((await newLink(alice)).url);
      const before = (await h.get('/api/v1/billing/account', { user_id: alice })).body.data.balance as string;
      await textBecomes(page.locator('#balance'), before);
      const amount = page.getByLabel('Amount');
      await amount.fill('12.34');
      await page.getByLabel('Payment method').selectOption('wechat');
      const [pay] = await Promise.all([context.waitForEvent('page'), amount.press('Enter')]);
      await pay.waitForURL(/\/pay\/pay_/);
      await pay.screenshot({ path: join(SHOTS, 'billing-portal-pay-page.png') });
      await pay.locator('#pay').click();
      const expected = (Number(before) + 12.34).toFixed(2);
      await textBecomes(page.locator('#recharge-status'), `balance is now ${expected}`, 'contains', 30_000);
      await textBecomes(page.locator('#balance'), expected);
      await page.screenshot({ path: join(SHOTS, 'billing-portal-recharged.png'), fullPage: true });
      await h.drain();
      await h.assertInvariant([alice, bob]);
      await context.close();
    });

    it('shows the credit grants in spending order with what is left, within the balance', async () => {
      const erin = h.user('erin');
      await seedBalance(h, erin, 1_000_000n);
      const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
      const expires = new Date(Date.now() + 86_400_000).toISOString();
      const given = [
        { grant_id: 'welcome', amount: '2.00', category: 'promotional', priority: 10, expires_at: expires },
        { grant_id: 'prepaid-plan', amount: '3.00', category: 'paid' },
      ];
      for (const g of given) expect((await h.post(`/admin/v1/accounts/${erin}/grants`, g, admin)).status).to.equal(200);
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.goto((await newLink(erin)).url);
      await textBecomes(page.locator('#balance'), '6.00');
      const rows = await page.locator('#grants-table tbody tr').allTextContents();
      expect(rows).to.have.length(2);
      expect(rows[0]).to.contain('welcome').and.contain('Promotional').and.contain('2.00');
      expect(rows[1]).to.contain('prepaid-plan').and.contain('Paid').and.contain('3.00').and.contain('Never');
      expect(await page.locator('#grants-empty').isHidden()).to.equal(true);
      await context.close();
      await h.drain();
      await h.assertInvariant([erin]);
    });

    it('shows and saves alert thresholds; a bad entry is explained and changes nothing', async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.goto((await newLink(bob)).url);
      const threshold = page.getByLabel('Low balance threshold');
      await page.waitForFunction(() => (document.getElementById('alert-balance') as HTMLInputElement).value !== '');
      expect(await threshold.inputValue()).to.equal('10.00');
      await threshold.fill('ten');
      await page.getByRole('button', { name: 'Save alerts' }).click();
      await textBecomes(page.locator('#alerts-status'), 'Enter the threshold as an amount', 'contains');
      expect(await threshold.getAttribute('aria-invalid')).to.not.equal(null);
      expect((await h.get('/api/v1/billing/alerts', { user_id: bob })).body.data.defaults.balanceLow).to.equal(true);
      await threshold.fill('25.5');
      await page.getByLabel('Free quota alert at (% used)').fill('90');
      await page.getByRole('button', { name: 'Save alerts' }).click();
      await textBecomes(page.locator('#alerts-status'), 'Saved: alert below 25.50, and at 90 %', 'contains');
      const saved = (await h.get('/api/v1/billing/alerts', { user_id: bob })).body.data;
      expect(saved).to.include({ balanceLow: '25.50', quotaLowPercent: 90 });
      expect((await h.get('/api/v1/billing/alerts', { user_id: alice })).body.data.defaults.balanceLow).to.equal(true);
      await context.close();
    });

    it('shows an expired or forged link as such, and no data', async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.goto(`${h.url}/portal#session=${token.slice(0, -2)}xx`);
      await textBecomes(page.locator('#fatal'), 'expired or is not valid', 'contains');
      expect(await page.locator('#balance').textContent()).to.equal('…');
      await page.screenshot({ path: join(SHOTS, 'billing-portal-refused.png') });
      await context.close();
    });
  });
});
