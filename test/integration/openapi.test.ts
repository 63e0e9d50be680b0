import { expect } from 'chai';
import { chromium } from 'playwright-core';
import { startHarness, seedBalance, ADMIN_TOKEN, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import { OpenApiRecorder, OpenApiChecker, type RecordedAnswer } from '../support/openapi-recorder.js';

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

describe('OpenAPI document and /docs', function () {
  this.timeout(120_000);
  let h: Harness;
  let checker: OpenApiChecker;
  const recorder = new OpenApiRecorder();
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

  before(async () => {
    h = await startHarness({ simulator: true });
    recorder.install();
    const served = await fetch(`${h.url}/openapi.json`);
    checker = new OpenApiChecker(await served.json());
  });
  after(async () => {
    recorder.uninstall();
    await h.stop();
  });

  it('is an OpenAPI 3.1 document whose requests come from the validating schemas', async () => {
    const doc = checker.document;
    expect(doc.openapi).to.equal('3.1.0');
    const deduct = doc.paths['/internal/v1/billing/deduct'].post;
    const body = deduct.requestBody.content['application/json'].schema;
    expect(body.required).to.have.members(['request_id', 'user_id', 'service_name']);
    expect(body.properties.count).to.include({ type: 'integer', minimum: 1, maximum: h.config.maxCallsPerRequest });
    expect(Object.keys(deduct.responses)).to.include.members(['200', '400', '401', '402', '409', '500', '503']);
    const records = doc.paths['/api/v1/billing/records'].get.parameters.map((p: any) => p.name);
    expect(records).to.include.members([
      'user_id',
      'page',
      'page_size',
      'cursor',
      'from',
      'to',
      'type',
      'service_name',
    ]);
  });

  it('describes every answer the service gives to representative calls of every endpoint', async () => {
    const user = h.user('oa');
    const q = (o: Record<string, string>) => `?${new URLSearchParams(o)}`;
    await seedBalance(h, user, 2_000_000n);
    // Gateway: success, repeat, refusals, bad input.
    await h.post('/internal/v1/billing/check', { user_id: user, service_name: 'passport' });
    await h.post('/internal/v1/billing/check', { user_id: user, service_name: 'nope' });
    await h.post('/internal/v1/billing/deduct', { request_id: 'oa-1', user_id: user, service_name: 'passport' });
    await h.post('/internal/v1/billing/deduct', { request_id: 'oa-1', user_id: user, service_name: 'passport' });
    await h.post('/internal/v1/billing/deduct', {
      request_id: 'oa-1',
      user_id: user,
      service_name: 'passport',
      count: 2,
    });
    await h.post('/internal/v1/billing/deduct', {
      request_id: 'oa-2',
      user_id: user,
      service_name: 'passport',
      count: 'x',
    });
    await h.post('/internal/v1/billing/deduct', {
      request_id: 'oa-3',
      user_id: h.user('poor'),
      service_name: 'payment',
      count: 10_000,
    });
    await h.post(
      '/internal/v1/billing/deduct',
      { request_id: 'oa-4', user_id: user, service_name: 'passport' },
      { authorization: 'Bearer wrong' },
    );
    await h.post('/internal/v1/billing/check/batch', {
      items: [
        { user_id: user, service_name: 'passport' },
        { user_id: user, service_name: 'nope' },
      ],
    });
    await h.post('/internal/v1/billing/deduct/batch', {
      items: [
        { request_id: 'oa-b1', user_id: user, service_name: 'passport' },
        { request_id: 'oa-b2', user_id: user, service_name: 'nope' },
      ],
    });
    await h.post('/internal/v1/billing/deduct/batch', { items: [] });
    const held = await h.post('/internal/v1/billing/reservations', {
      request_id: 'oa-r1',
      user_id: user,
      service_name: 'passport',
      count: 3,
    });
    await h.post(`/internal/v1/billing/reservations/${held.body.data.reservationId}/commit`, { count: 2 });
    const held2 = await h.post('/internal/v1/billing/reservations', {
      request_id: 'oa-r2',
      user_id: user,
      service_name: 'passport',
      count: 1,
    });
    await h.post(`/internal/v1/billing/reservations/${held2.body.data.reservationId}/release`, {});
    await h.post('/internal/v1/billing/reservations/rsv_nope/release', {});
    const refund = { refund_id: 'oa-f1', user_id: user, request_id: 'oa-1' };
    await h.post('/internal/v1/billing/refunds', refund);
    await h.post('/internal/v1/billing/refunds', refund);
    await h.post('/internal/v1/billing/refunds', { ...refund, refund_id: 'oa-f2' });
    await h.post('/internal/v1/billing/refunds', { ...refund, refund_id: 'oa-f3', request_id: 'oa-none' });
    await h.post('/internal/v1/billing/refunds', { ...refund, count: 0 });
    // User endpoints.
    await h.get('/api/v1/billing/account', { user_id: user });
    await h.get('/api/v1/billing/account', {});
    await h.get('/api/v1/billing/services');
    await h.drain();
    await h.get('/api/v1/billing/records', { user_id: user, page_size: 5 });
    await h.get('/api/v1/billing/records', { user_id: user, page: 0 });
    await h.get('/api/v1/billing/stats/today', { user_id: user });
    await h.get('/api/v1/billing/stats/month', { user_id: user, service_name: 'passport' });
    await h.get('/api/v1/billing/stats/summary', { user_id: user });
    await h.get('/api/v1/billing/stats/daily', { user_id: user });
    await fetch(`${h.url}/api/v1/billing/records/export${q({ user_id: user })}`, {
      headers: { authorization: `Bearer ${GATEWAY_TOKEN}` },
    }).then((r) => r.text());
    await h.get('/api/v1/billing/records/export', { user_id: user, from: '2026-02-30' });
    const month = new Date().toISOString().slice(0, 7);
    await h.get(`/api/v1/billing/statements/${month}`, { user_id: user });
    await fetch(`${h.url}/api/v1/billing/statements/${month}${q({ user_id: user, format: 'csv' })}`, {
      headers: { authorization: `Bearer ${GATEWAY_TOKEN}` },
    }).then((r) => r.text());
    await h.get('/api/v1/billing/statements/1969-01', { user_id: user });
    // Recharge through the simulator, its callback (recorded: the simulator posts with fetch), a lookup.
    const order = await h.post('/api/v1/billing/recharge', { user_id: user, amount: '5.00', payment_method: 'alipay' });
    await h.sim!.pay(order.body.data.paymentId);
    await h.drain();
    await h.get(`/api/v1/billing/recharge/${order.body.data.orderId}`, { user_id: user });
    await h.get('/api/v1/billing/recharge/ord_missing', { user_id: user });
    await h.post('/api/v1/billing/recharge', { user_id: user, amount: '0.001', payment_method: 'alipay' });
    await fetch(`${h.url}/internal/v1/billing/callback`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    // The customer portal: a link, the page, the page's own calls (with and without a session).
    const link = await h.post('/api/v1/billing/portal-sessions', { user_id: user });
    await h.post('/api/v1/billing/portal-sessions', { user_id: '' });
    const session = { 'x-portal-session': new URL(link.body.data.url).hash.replace('#session=', '') };
    await fetch(`${h.url}/portal`).then((r) => r.text());
    await h.get('/portal/v1/account', {}, session);
    await h.get('/portal/v1/account', {}, { 'x-portal-session': 'forged.x' });
    await h.get('/portal/v1/records', { page_size: 5 }, session);
    await h.get('/portal/v1/records', { user_id: user }, session);
    await h.get('/portal/v1/usage', {}, session);
    await h.get('/portal/v1/alerts', {}, session);
    await h.put('/portal/v1/alerts', { balance_low: '5.00' }, session);
    await h.put('/portal/v1/alerts', { user_id: user, balance_low: '5.00' }, session);
    const portalOrder = await h.post('/portal/v1/recharge', { amount: '2.00', payment_method: 'wechat' }, session);
    await h.get(`/portal/v1/recharge/${portalOrder.body.data.orderId}`, {}, session);
    await h.get('/portal/v1/recharge/ord_missing', {}, session);
    // Operators.
    await h.post(
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: '1.00', reason: 'openapi test', idempotency_key: `${h.tag}-oa` },
      admin,
    );
    await h.post(
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: 'x', reason: 'openapi test', idempotency_key: `${h.tag}-oa2` },
      admin,
    );
    const grant = { grant_id: 'oa-g', amount: '0.50', category: 'promotional', priority: 10 };
    await h.post(`/admin/v1/accounts/${user}/grants`, grant, admin);
    await h.post(`/admin/v1/accounts/${user}/grants`, { ...grant, amount: '0.60' }, admin);
    await h.get(`/admin/v1/accounts/${user}/grants`, {}, admin);
    await h.post(`/admin/v1/accounts/${user}/grants/oa-g/void`, {}, admin);
    await h.post(`/admin/v1/accounts/${user}/grants/none/void`, {}, admin);
    const put = (path: string, body: unknown, headers: Record<string, string>) =>
      fetch(h.url + path, {
        method: 'PUT',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    await put(`/admin/v1/accounts/${user}/pricing/passport`, { unit_price: '0.01' }, admin);
    await put(`/admin/v1/accounts/${user}/pricing/nope`, { unit_price: '0.01' }, admin);
    await h.get(`/admin/v1/accounts/${user}/pricing`, {}, admin);
    const gateway = { authorization: `Bearer ${GATEWAY_TOKEN}` };
    await put('/api/v1/billing/limits', { user_id: user, daily: '100' }, gateway);
    await put('/api/v1/billing/limits', { user_id: user, daily: '-1' }, gateway);
    await h.get('/api/v1/billing/limits', { user_id: user });
    await h.get(`/admin/v1/accounts/${user}/ledger`, { page_size: 5 }, admin);
    await h.get(`/admin/v1/accounts/${user}`, {}, admin);
    await h.post('/admin/v1/reconciliation/runs', {}, admin);
    await h.get('/admin/v1/reconciliation/runs', { limit: 5 }, admin);
    await h.get('/admin/v1/reconciliation/runs/999999', {}, admin);
    await h.get('/admin/v1/dead-letters', {}, admin);
    await h.post(
      '/admin/v1/dead-letters/retry',
      { user_id: user, change_id: 'nope', operator: 'tester', reason: 'openapi test' },
      admin,
    );
    await h.post('/admin/v1/jobs/persist-changes/nope/retry', { operator: 'tester', reason: 'openapi test' }, admin);
    await h.get('/admin/v1/dead-letters', {});
    // Events and webhooks (SPEC 13).
    await h.get('/api/v1/billing/alerts', { user_id: user });
    await h.put('/api/v1/billing/alerts', { user_id: user, balance_low: '20.00', quota_low_percent: 90 });
    await h.put('/api/v1/billing/alerts', { user_id: user, quota_low_percent: 0 });
    const hook = await h.post('/admin/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['*'] }, admin);
    await h.post('/admin/v1/webhooks', { url: 'ftp://127.0.0.1/hook', events: ['*'] }, admin);
    await h.get('/admin/v1/webhooks', {}, admin);
    await h.get(`/admin/v1/webhooks/${hook.body.data.id}`, {}, admin);
    await h.post(`/admin/v1/webhooks/${hook.body.data.id}/rotate-secret`, {}, admin);
    await h.post(`/api/v1/billing/recharge`, { user_id: user, amount: '1.00', payment_method: 'alipay' });
    await h.drain();
    const events = await h.get('/admin/v1/events', { user_id: user, page_size: 5 }, admin);
    await h.get('/admin/v1/events', { type: 'nope' }, admin);
    const eventId = events.body.data.events[0]?.id ?? 'evt_none';
    await h.get(`/admin/v1/events/${eventId}`, {}, admin);
    await h.get('/admin/v1/events/evt_missing', {}, admin);
    await h.post(`/admin/v1/webhooks/${hook.body.data.id}/resend`, { event_id: eventId }, admin);
    await h.get(`/admin/v1/webhooks/${hook.body.data.id}/deliveries`, { page_size: 5 }, admin);
    await h.del(`/admin/v1/webhooks/${hook.body.data.id}`, admin);
    await h.del('/admin/v1/webhooks/we_missing', admin);
    await fetch(`${h.url}/admin/queues`, { headers: admin }).then((r) => r.text());
    await fetch(`${h.url}/metrics`, { headers: admin }).then((r) => r.text());
    await h.get('/health');
    await h.get('/healthz');
    await h.get('/readyz');
    await fetch(`${h.url}/docs`).then((r) => r.text());
    await h.get('/no/such/route');

    const ours = recorder.answers.filter((a) => a.url.startsWith(h.url));
    const problems = checker.checkAll(ours);
    expect(problems, problems.join('\n')).to.deep.equal([]);
    // Every documented operation was called at least once here.
    const called = new Set(
      ours
        .map((a) => checker.operationOf(a))
        .filter(Boolean)
        .map((o) => `${o!.method} ${o!.path}`),
    );
    const documented = Object.entries(checker.document.paths as Record<string, object>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    const notCalled = documented.filter((d) => !called.has(d));
    expect(notCalled, 'documented but not exercised').to.deep.equal([]);
    // Statuses seen: successes and each family of errors.
    expect(new Set(ours.map((a) => a.status))).to.include.members([200, 202, 400, 401, 402, 404, 409]);
  });

  it('reports an answer that does not match the document', () => {
    const url = `${h.url}/internal/v1/billing/deduct`;
    const base: RecordedAnswer = { method: 'POST', url, status: 200, contentType: 'application/json' };
    const good = {
      success: true,
      data: {
        success: true,
        recordId: 'r',
        requestId: 'q',
        freeCount: 1,
        paidCount: 0,
        amount: '0.00',
        balance: '1.00',
        duplicate: false,
      },
    };
    expect(checker.check({ ...base, json: good })).to.deep.equal([]);
    expect(checker.check({ ...base, json: { ...good, data: { ...good.data, amount: 0.5 } } })).to.have.length(1);
    expect(checker.check({ ...base, json: { ...good, data: { ...good.data, extra: 1 } } })).to.have.length(1);
    expect(checker.check({ ...base, status: 418, json: good })).to.have.length(1);
    expect(checker.check({ ...base, status: 402, json: { success: false, code: 10007, message: 'x' } })).to.have.length(
      1,
    );
  });

  it('renders /docs in a browser from local assets only', async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: CHROMIUM_FLAGS,
    });
    try {
      const page = await browser.newPage();
      const foreign: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(h.url) && !r.url().startsWith('data:')) foreign.push(r.url());
      });
      await page.goto(`${h.url}/docs`);
      await page.locator('.opblock').first().waitFor({ timeout: 30_000 });
      expect(await page.locator('.opblock').count()).to.be.greaterThan(30);
      expect(await page.getByText('/internal/v1/billing/deduct').count()).to.be.greaterThan(0);
      expect(foreign).to.deep.equal([]);
    } finally {
      await browser.close();
    }
  });
});
