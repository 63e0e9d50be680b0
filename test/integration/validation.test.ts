import { expect } from 'chai';
import { startHarness, seedBalance, type Harness } from '../support/harness.js';

/** Bad input of every endpoint: 400 / 40000 with a detail per bad field, and nothing changes. */
describe('input validation and errors', function () {
  let h: Harness;
  let user: string;
  before(async function () {
    this.timeout(120_000);
    h = await startHarness();
    user = h.user('v');
    await seedBalance(h, user, 1_000_000n);
    await h.drain();
  });
  after(() => h.stop());

  const snapshot = async () => {
    const probe = h.probe;
    return {
      account: (await h.get('/api/v1/billing/account', { user_id: user })).body.data,
      pending: await probe.persistence.pendingCount(),
      mysql: await probe.repositories.ledger.balanceAndLedgerSum(user),
    };
  };

  const badBodies: [string, string, unknown, string[]][] = [
    ['check', '/internal/v1/billing/check', {}, ['user_id', 'service_name']],
    ['check', '/internal/v1/billing/check', { user_id: 'bad user!', service_name: 'passport' }, ['user_id']],
    ['check', '/internal/v1/billing/check', { user_id: 'x'.repeat(65), service_name: 'passport' }, ['user_id']],
    ['check', '/internal/v1/billing/check', { user_id: 'u', service_name: 'passport', count: 0 }, ['count']],
    ['check', '/internal/v1/billing/check', { user_id: 'u', service_name: 'passport', count: 1.5 }, ['count']],
    ['check', '/internal/v1/billing/check', { user_id: 'u', service_name: 'passport', count: '2' }, ['count']],
    ['check', '/internal/v1/billing/check', { user_id: 42, service_name: ['passport'] }, ['user_id', 'service_name']],
    ['deduct', '/internal/v1/billing/deduct', { user_id: 'u', service_name: 'passport' }, ['request_id']],
    [
      'deduct',
      '/internal/v1/billing/deduct',
      { request_id: 'é', user_id: 'u', service_name: 'passport' },
      ['request_id'],
    ],
    [
      'deduct',
      '/internal/v1/billing/deduct',
      { request_id: 'r'.repeat(129), user_id: 'u', service_name: 'passport' },
      ['request_id'],
    ],
    [
      'deduct',
      '/internal/v1/billing/deduct',
      { request_id: 'r', user_id: 'u', service_name: 'passport', count: -3, extra: 1 },
      ['count', 'extra'],
    ],
    [
      'deduct',
      '/internal/v1/billing/deduct',
      { request_id: 'r', user_id: 'u', userId: 'v', service_name: 'passport' },
      ['user_id'],
    ],
    ['deduct', '/internal/v1/billing/deduct', [1, 2], ['body']],
    ['deduct', '/internal/v1/billing/deduct', 'null', ['body']],
  ];

  for (const [name, path, body, fields] of badBodies) {
    it(`${name}: ${JSON.stringify(body).slice(0, 70)} → 400 naming ${fields.join(', ')}`, async () => {
      const before = await snapshot();
      const r = await h.post(path, body);
      expect(r.status).to.equal(400);
      expect(r.body).to.include({ success: false, code: 40000 });
      expect(r.body.details!.map((d) => d.field)).to.include.members(fields);
      expect(await snapshot()).to.deep.equal(before);
    });
  }

  it('accepts camelCase field names as well as snake_case', async () => {
    const r = await h.post('/internal/v1/billing/check', { userId: user, serviceName: 'passport', count: 2 });
    expect(r.status).to.equal(200);
    expect(r.body.data.allowed).to.equal(true);
  });

  it('answers an unknown service with 400 / 10006 and changes nothing', async () => {
    const before = await snapshot();
    for (const [path, extra] of [
      ['/internal/v1/billing/check', {}],
      ['/internal/v1/billing/deduct', { request_id: 'u1' }],
    ] as const) {
      const r = await h.post(path, { ...extra, user_id: user, service_name: 'teleport' });
      expect(r.status).to.equal(400);
      expect(r.body.code).to.equal(10006);
    }
    const stats = await h.get('/api/v1/billing/stats/today', { user_id: user, service_name: 'teleport' });
    expect(stats.body.code).to.equal(10006);
    expect(await snapshot()).to.deep.equal(before);
  });

  it('answers malformed JSON and an oversized body with a JSON error', async () => {
    const malformed = await h.post('/internal/v1/billing/deduct', '{"request_id": ');
    expect(malformed.status).to.equal(400);
    expect(malformed.body.code).to.equal(40000);
    const huge = await h.post('/internal/v1/billing/deduct', {
      request_id: 'x',
      user_id: user,
      service_name: 'passport',
      pad: 'x'.repeat(100_000),
    });
    expect(huge.status).to.equal(413);
    expect(huge.body.success).to.equal(false);
  });

  it('refuses a missing or wrong gateway token with 401 / 40100', async () => {
    for (const headers of [{ authorization: '' }, { authorization: 'Bearer nope' }, { authorization: 'Basic abc' }]) {
      const r = await h.post(
        '/internal/v1/billing/deduct',
        { request_id: 'a1', user_id: user, service_name: 'passport' },
        headers,
      );
      expect(r.status).to.equal(401);
      expect(r.body.code).to.equal(40100);
      const g = await h.get('/api/v1/billing/account', { user_id: user }, headers);
      expect(g.status).to.equal(401);
    }
  });

  it('answers an unknown route with a JSON 404 / 40400', async () => {
    const r = await h.get('/internal/v1/billing/nowhere');
    expect(r.status).to.equal(404);
    expect(r.body).to.include({ success: false, code: 40400 });
  });

  const badQueries: [string, Record<string, string | number>, string[]][] = [
    ['/api/v1/billing/account', {}, ['user_id']],
    ['/api/v1/billing/account', { user_id: 'has space' }, ['user_id']],
    ['/api/v1/billing/records', { user_id: 'u', page: 0, page_size: 101 }, ['page', 'page_size']],
    ['/api/v1/billing/records', { user_id: 'u', type: 'gift' }, ['type']],
    ['/api/v1/billing/records', { user_id: 'u', from: 'yesterday' }, ['from']],
    ['/api/v1/billing/records', { user_id: 'u', cursor: 'bm90IGEgY3Vyc29y' }, ['cursor']],
    ['/api/v1/billing/stats/today', { user_id: '' }, ['user_id']],
    ['/api/v1/billing/stats/month', { user_id: 'u', bogus: 1 }, ['bogus']],
    ['/api/v1/billing/stats/summary', {}, ['user_id']],
    ['/api/v1/billing/stats/daily', { user_id: 'u', from: '2026-13-01' }, ['from']],
    ['/api/v1/billing/stats/daily', { user_id: 'u', from: '2026-11-10', to: '2026-11-01' }, ['from']],
    ['/api/v1/billing/stats/daily', { user_id: 'u', from: '2020-01-01', to: '2026-01-01' }, ['to']],
  ];
  for (const [path, query, fields] of badQueries) {
    it(`GET ${path.replace('/api/v1/billing', '')} ${JSON.stringify(query)} → 400 naming ${fields.join(', ')}`, async () => {
      const r = await h.get(path, query);
      expect(r.status).to.equal(400);
      expect(r.body.code).to.equal(40000);
      expect(r.body.details!.map((d) => d.field)).to.include.members(fields);
    });
  }
});
