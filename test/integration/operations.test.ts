import { expect } from 'chai';
import { chromium, type Browser } from 'playwright-core';
import { startHarness, seedBalance, ADMIN_TOKEN, type Harness } from '../support/harness.js';

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

describe('operations: metrics and Bull Board', function () {
  this.timeout(120_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ env: { BULL_BOARD_PASSWORD: 'board-secret' } });
  });
  after(() => h.stop());

  it('serves Prometheus metrics to the admin token: latency per route, outcomes, queue depth, job durations, persistence lag', async () => {
    const user = h.user('metrics');
    await seedBalance(h, user, 1_000_000n);
    await h.post('/internal/v1/billing/deduct', { request_id: 'm1', user_id: user, service_name: 'passport' });
    await h.post('/internal/v1/billing/check', { user_id: user, service_name: 'passport' });
    await h.drain();
    expect((await fetch(`${h.url}/metrics`)).status).to.equal(401);
    const res = await fetch(`${h.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).to.equal(200);
    const text = await res.text();
    expect(text).to.match(
      /billing_http_request_duration_seconds_count\{method="POST",route="\/internal\/v1\/billing\/deduct",status="200"\} 1/,
    );
    expect(text).to.match(/billing_gateway_outcomes_total\{op="deduct",outcome="ok"\} 1/);
    expect(text).to.match(/billing_gateway_outcomes_total\{op="check",outcome="free"\} 1/);
    expect(text).to.match(/billing_queue_jobs\{queue="persistence",state="waiting"\} 0/);
    expect(text).to.match(/billing_job_duration_seconds_count\{job="persist-changes",result="ok"\} [1-9]/);
    expect(text).to.match(/billing_persistence_lag_seconds_count [1-9]/);
    expect(text).to.contain('billing_reconciliation_mismatches_total');
  });

  describe('Bull Board in a real browser', () => {
    let browser: Browser;
    before(async () => {
      browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
        args: CHROMIUM_FLAGS,
      });
    });
    after(() => browser?.close());

    it('refuses a browser without, or with wrong, operator credentials', async () => {
      const bare = await browser.newPage();
      const failure = await bare.goto(`${h.url}/admin/queues`).then(
        () => null,
        (err: Error) => err.message,
      );
      expect(failure).to.match(/ERR_INVALID_AUTH_CREDENTIALS/);
      await bare.close();
      const wrong = await browser.newContext({ httpCredentials: { username: 'admin', password: 'wrong' } });
      const page = await wrong.newPage();
      const res = await page.goto(`${h.url}/admin/queues`);
      expect(res!.status()).to.equal(401);
      expect(await page.content()).not.to.contain('persistence');
      await wrong.close();
    });

    it('shows every queue of the service to the operator', async () => {
      const context = await browser.newContext({ httpCredentials: { username: 'admin', password: 'board-secret' } });
      const page = await context.newPage();
      const res = await page.goto(`${h.url}/admin/queues`);
      expect(res!.status()).to.equal(200);
      for (const queue of ['persistence', 'payments', 'maintenance', 'webhooks']) {
        await page.getByText(queue, { exact: true }).first().waitFor({ timeout: 15_000 });
      }
      expect(await page.title()).to.contain('Billing queues');
      await page.screenshot({ path: `${process.env.TMPDIR ?? '/tmp'}/bull-board.png` });
      await context.close();
    });
  });
});
