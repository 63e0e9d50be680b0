/*
 * What a newcomer and an operator meet first: a body sent without its content-type, the on-demand
 * reconciliation run, metric labels, the simulator's control API, migration names.
 */
import { expect } from 'chai';
import { startHarness, GATEWAY_TOKEN, ADMIN_TOKEN, CALLBACK_SECRET, type Harness } from '../support/harness.js';
import { testServers } from '../support/servers.js';
import { PaymentSimulator } from '../../simulator/payment-simulator.js';
import { createDatabase, migrateLatest } from '../../src/repositories/database.js';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe('first hour: content-type, reconciliation runs, metric labels', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  it('tells a caller whose body is not sent as JSON to send content-type: application/json', async () => {
    const user = h.user('ctype');
    const body = JSON.stringify({ request_id: 'c1', user_id: user, service_name: 'passport' });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', undefined]) {
      const res = await fetch(`${h.url}/internal/v1/billing/deduct`, {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${GATEWAY_TOKEN}`, ...(type ? { 'content-type': type } : {}) },
      });
      const json = (await res.json()) as { code: number; message: string; details: { field: string }[] };
      expect(res.status, String(type)).to.equal(400);
      expect(json.code).to.equal(40000);
      expect(json.message).to.include('content-type: application/json');
      expect(json.details[0].field).to.equal('content-type');
    }
    const used = async () =>
      (await h.get('/api/v1/billing/account', { user_id: user })).body.data.quotas.find(
        (q: { serviceName: string }) => q.serviceName === 'passport',
      ).usedQuota;
    expect(await used()).to.equal(0);
    const ok = await fetch(`${h.url}/internal/v1/billing/deduct`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${GATEWAY_TOKEN}`, 'content-type': 'application/json; charset=utf-8' },
    });
    expect(ok.status).to.equal(200);
    expect(await used()).to.equal(1);
    await h.drain();
    await h.assertInvariant([user]);
  });

  it('POST reconciliation/runs answers the run, which GET runs/:id follows; an unknown run is 404', async () => {
    const res = await fetch(`${h.url}/admin/v1/reconciliation/runs`, { method: 'POST', headers: admin });
    expect(res.status).to.equal(202);
    const run = ((await res.json()) as { data: { id: number; status: string; trigger: string } }).data;
    expect(run).to.include({ trigger: 'manual', status: 'running' });
    expect(res.headers.get('location')).to.equal(`/admin/v1/reconciliation/runs/${run.id}`);
    let status = run.status;
    const deadline = Date.now() + 20_000;
    while (status === 'running' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      const got = await h.get(`/admin/v1/reconciliation/runs/${run.id}`, {}, admin);
      expect(got.status).to.equal(200);
      expect(got.body.data).to.include.keys('id', 'status', 'repairs', 'usersChecked');
      status = got.body.data.status;
    }
    expect(status).to.equal('ok');
    const missing = await h.get('/admin/v1/reconciliation/runs/999999999', {}, admin);
    expect(missing.status).to.equal(404);
    expect(missing.body.code).to.equal(40400);
  });

  it('labels every request with its route pattern: refused callbacks and Bull Board included', async () => {
    const cb = await fetch(`${h.url}/internal/v1/billing/callback`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json', 'x-payment-signature': 'bad' },
    });
    expect(cb.status).to.equal(401);
    await fetch(`${h.url}/admin/queues/`);
    await fetch(`${h.url}/admin/queues/api/queues`);
    await h.get('/admin/v1/reconciliation/runs/999999998', {}, admin);
    const text = await (await fetch(`${h.url}/metrics`, { headers: admin })).text();
    const routes = new Set(
      [...text.matchAll(/billing_http_request_duration_seconds_count\{[^}]*route="([^"]*)"/g)].map((m) => m[1]),
    );
    expect(routes).not.to.include('');
    expect(text).to.match(/_count\{method="POST",route="\/internal\/v1\/billing\/callback",status="401"\}/);
    expect(text).to.match(/_count\{method="GET",route="\/admin\/v1\/reconciliation\/runs\/:id",status="404"\}/);
    for (const r of routes)
      if (r.startsWith('/admin/queues')) expect(['/admin/queues', '/admin/queues/api']).to.include(r);
    expect(routes).to.include('/admin/queues');
    expect(routes).to.include('/admin/queues/api');
  });
});

describe('payment simulator control API', () => {
  it('listens on loopback only when the simulator itself listens on every interface', async () => {
    const sim = await new PaymentSimulator({ host: '0.0.0.0', callbackSecret: CALLBACK_SECRET }).start();
    try {
      expect(sim.controlUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+\/control$/);
      expect((await fetch(`${sim.controlUrl}/payments`)).status).to.equal(200);
      // The public listener serves pay pages, not the control API.
      const port = new URL(sim.httpUrl).port;
      expect((await fetch(`http://127.0.0.1:${port}/control/payments`)).status).to.equal(404);
      expect((await fetch(`http://127.0.0.1:${port}/pay/nothing`)).status).to.equal(404);
    } finally {
      await sim.stop();
    }
  });
});

describe('migration names', () => {
  it('are recorded without .ts/.js, and a database recorded either way keeps migrating', async () => {
    const db = createDatabase((await testServers()).databaseUrl);
    try {
      const names = (await db('knex_migrations').select('name')).map((r: { name: string }) => r.name);
      expect(names.length).to.be.greaterThan(2);
      for (const n of names) expect(n).to.match(/^\d{14}_[a-z_0-9]+$/);
      await db('knex_migrations').update({ name: db.raw("CONCAT(name, '.js')") });
      expect(await migrateLatest(db)).to.deep.equal([]);
      expect((await db('knex_migrations').select('name')).map((r: { name: string }) => r.name)).to.deep.equal(names);
    } finally {
      await db.destroy();
    }
  });
});
