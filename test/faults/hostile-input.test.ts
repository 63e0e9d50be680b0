import { expect } from 'chai';
import { startHarness, seedBalance, ADMIN_TOKEN, CALLBACK_SECRET, type Harness } from '../support/harness.js';
import { signPayload } from '../../src/lib/payment-signature.js';

/**
 * A generated set of malformed, oversized, wrong-typed and hostile inputs for every endpoint. Each case
 * takes a valid request and spoils one field (or the whole body): the answer must be a 4xx with a
 * code, never a 5xx, and nothing may change.
 */
const HOSTILE_STRINGS = [
  '',
  ' ',
  'x'.repeat(10_000),
  "' OR 1=1 --",
  '"; DROP TABLE accounts; --',
  '<script>alert(1)</script>',
  '../../etc/passwd',
  '\u0000',
  '用户',
  '😀',
  '${jndi:ldap://x}',
  '%00',
  '\r\nX-Injected: 1',
  '{}',
  '[]',
  'NaN',
  'Infinity',
  '-1',
  '1e309',
  '0x10',
];
const HOSTILE_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -1e308,
  [],
  [1, 2],
  {},
  { $gt: '' },
  { __proto__: { admin: true } },
  ...HOSTILE_STRINGS,
];

interface Case {
  name: string;
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  body?: unknown;
  rawBody?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
}

/** Values that are invalid for the field, whatever else they are. */
function badValuesFor(field: string, endpoint = ''): unknown[] {
  return HOSTILE_VALUES.filter((v) => {
    // Committing 0 calls is a valid commit; an adjustment may be negative.
    if (endpoint === 'commit' && field === 'count')
      return !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 10_000);
    if (endpoint === 'adjust' && field === 'amount')
      return (
        !(typeof v === 'number' && v !== 0 && Math.abs(v) < 1e9) &&
        !(typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) && Number(v) !== 0)
      );
    // A printable-ASCII string is a valid request_id / idempotency key; keep only what is not.
    if (['request_id', 'idempotency_key', 'refund_id'].includes(field))
      return (
        typeof v !== 'string' ||
        v === '' ||
        v.length > 128 ||
        /[^\x20-\x7E]/.test(v) ||
        (field === 'idempotency_key' && / /.test(v))
      );
    if (field === 'user_id') return typeof v !== 'string' || !/^[A-Za-z0-9_.:@-]{1,64}$/.test(v);
    if (field === 'reason') return typeof v !== 'string' || v.length < 3 || v.length > 200;
    if (field === 'count') return !(typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 10_000);
    if (field === 'amount')
      return !(typeof v === 'number' && v > 0) && !(typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) && v !== '0');
    if (field === 'ttl_seconds') return !(typeof v === 'number' && Number.isInteger(v) && v >= 1);
    // Credit grants, spending limits, per-user prices (SPEC 14).
    if (field === 'grant_id') return typeof v !== 'string' || !/^[A-Za-z0-9_.:@-]{1,64}$/.test(v);
    // null may mean "never" (the field is optional); every other value here is no future instant.
    if (field === 'expires_at') return v !== null;
    if (field === 'priority') return !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1000);
    if (field === 'free_quota') return v !== null && !(typeof v === 'number' && Number.isInteger(v) && v >= 0);
    // A limit or a price may be null (none / the catalogue's), and 0 may be one.
    if (['daily', 'monthly', 'unit_price'].includes(field))
      return v !== null && !(typeof v === 'number' && v >= 0) && !(typeof v === 'string' && /^\d+(\.\d+)?$/.test(v));
    return true;
  });
}

function generate(user: string, reservationId: string): Case[] {
  const cases: Case[] = [];
  const bodies: [string, string, Record<string, unknown>, Record<string, string>?][] = [
    ['check', '/internal/v1/billing/check', { user_id: user, service_name: 'passport', count: 1 }],
    ['deduct', '/internal/v1/billing/deduct', { request_id: 'h1', user_id: user, service_name: 'passport', count: 1 }],
    [
      'reserve',
      '/internal/v1/billing/reservations',
      { request_id: 'h2', user_id: user, service_name: 'passport', count: 1, ttl_seconds: 60 },
    ],
    ['commit', `/internal/v1/billing/reservations/${reservationId}/commit`, { count: 1 }],
    ['refund', '/internal/v1/billing/refunds', { refund_id: 'h4', user_id: user, request_id: 'keep', count: 1 }],
    [
      'recharge',
      '/api/v1/billing/recharge',
      { user_id: user, amount: '1.00', payment_method: 'wechat', currency: 'CNY' },
    ],
    [
      'adjust',
      `/admin/v1/accounts/${user}/adjustments`,
      { amount: '1.00', reason: 'hostile test', idempotency_key: 'h3' },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    ],
    [
      'grant',
      `/admin/v1/accounts/${user}/grants`,
      {
        grant_id: 'hg',
        amount: '1.00',
        category: 'promotional',
        priority: 5,
        expires_at: new Date(Date.now() + 86_400_000).toISOString(),
      },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    ],
    ['limits', '/api/v1/billing/limits', { user_id: user, daily: '1.00', monthly: '10.00' }],
    [
      'pricing',
      `/admin/v1/accounts/${user}/pricing/passport`,
      { free_quota: 5, unit_price: '0.02' },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    ],
  ];
  /** fields a valid request may leave out */
  const optional = [
    'ttl_seconds',
    'currency',
    'priority',
    'expires_at',
    'daily',
    'monthly',
    'free_quota',
    'unit_price',
  ];
  for (const [name, path, valid, headers] of bodies) {
    const method = name === 'limits' || name === 'pricing' ? 'PUT' : 'POST';
    for (const field of Object.keys(valid)) {
      for (const v of badValuesFor(field, name))
        cases.push({
          name: `${name}.${field}=${JSON.stringify(v)?.slice(0, 30)}`,
          method,
          path,
          body: { ...valid, [field]: v },
          headers,
        });
      const { [field]: _dropped, ...without } = valid;
      // count, ttl_seconds and currency have defaults, some fields are optional; a missing one is valid.
      if (!['count', ...optional].includes(field) || name === 'commit' || (name === 'reserve' && field === 'count')) {
        cases.push({ name: `${name}.${field} missing`, method, path, body: without, headers });
      }
    }
    for (const raw of [
      '',
      'null',
      '[]',
      '"text"',
      '{',
      '{"a":',
      'not json',
      '{"user_id":"a","user_id":"b"}'.repeat(1000),
      JSON.stringify({ ...valid, extra: 1 }),
      JSON.stringify({ ...valid, __proto__: { x: 1 } }).replace('{', '{"__proto__":{"x":1},'),
    ]) {
      // Every field of a price is optional: no body at all changes nothing, and is no error.
      if (name === 'pricing' && raw === '') continue;
      cases.push({ name: `${name} raw ${raw.slice(0, 20)}`, method, path, rawBody: raw, headers });
    }
    cases.push({
      name: `${name} oversized`,
      method,
      path,
      body: { ...valid, pad: 'x'.repeat(64_000) },
      headers,
    });
    cases.push({ name: `${name} nested`, method, path, rawBody: '['.repeat(5000) + ']'.repeat(5000), headers });
  }
  const queries: [string, Record<string, string>][] = [
    ['/api/v1/billing/account', { user_id: user }],
    ['/api/v1/billing/records', { user_id: user, page: '1', page_size: '20' }],
    ['/api/v1/billing/stats/today', { user_id: user, service_name: 'passport' }],
    ['/api/v1/billing/stats/month', { user_id: user }],
    ['/api/v1/billing/stats/summary', { user_id: user }],
    ['/api/v1/billing/stats/daily', { user_id: user, from: '2026-11-01', to: '2026-11-02' }],
    ['/api/v1/billing/limits', { user_id: user }],
  ];
  for (const [path, valid] of queries) {
    for (const field of Object.keys(valid)) {
      for (const v of (badValuesFor(field).filter((x) => typeof x === 'string' && x.length > 0) as string[]).filter(
        (x) => !(field === 'page' && /^\d+$/.test(x)),
      )) {
        cases.push({
          name: `GET ${path}.${field}=${v.slice(0, 20)}`,
          method: 'GET',
          path,
          query: { ...valid, [field]: v },
        });
      }
    }
    cases.push({ name: `GET ${path} unknown param`, method: 'GET', path, query: { ...valid, evil: '1' } });
  }
  for (const raw of [
    '{}',
    'null',
    JSON.stringify({ order_id: "' OR 1=1", payment_id: 'p', amount: '1', currency: 'CNY', status: 'success' }),
    JSON.stringify({ order_id: 'ord_x', payment_id: 'p', amount: [], currency: 'CNY', status: 'paid' }),
  ]) {
    const t = Math.floor(Date.now() / 1000);
    cases.push({
      name: `callback signed ${raw.slice(0, 20)}`,
      method: 'POST',
      path: '/internal/v1/billing/callback',
      rawBody: raw,
      headers: { 'x-payment-signature': signPayload(CALLBACK_SECRET, raw, t), authorization: '' },
    });
    for (const sig of ['', 't=1,v1=00', `t=${t},v1=${'0'.repeat(64)}`, 'garbage', `t=${t}`, `v1=${'a'.repeat(64)}`]) {
      cases.push({
        name: `callback sig ${sig.slice(0, 15)}`,
        method: 'POST',
        path: '/internal/v1/billing/callback',
        rawBody: raw,
        headers: { 'x-payment-signature': sig, authorization: '' },
      });
    }
  }
  for (const path of [
    '/internal/v1/billing/reservations/rsv_%00/commit',
    '/internal/v1/billing/reservations/..%2F..%2Fetc/release',
    `/api/v1/billing/recharge/${'x'.repeat(300)}`,
    '/admin/v1/accounts/%F0%9F%98%80/ledger',
    '/admin/v1/accounts/%F0%9F%98%80/grants',
    `/admin/v1/accounts/${user}/grants/%00/void`,
    `/admin/v1/accounts/${user}/grants/${'x'.repeat(65)}/void`,
    `/admin/v1/accounts/${user}/grants/no-such-grant/void`,
    '/admin/v1/accounts/a%20b/pricing',
  ]) {
    cases.push({
      name: `path ${path.slice(0, 40)}`,
      method: /recharge\/|ledger|grants$|pricing$/.test(path) ? 'GET' : 'POST',
      path,
      body: { count: 1 },
      query: { user_id: user },
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
  }
  for (const service of ['nope', 'PASSPORT', '%00', 'x'.repeat(100), '..%2Fpassport']) {
    cases.push({
      name: `pricing of service ${service.slice(0, 20)}`,
      method: 'PUT',
      path: `/admin/v1/accounts/${user}/pricing/${service}`,
      body: { unit_price: '0.01' },
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
  }
  return cases;
}

describe('fault injection: hostile input', function () {
  this.timeout(180_000);
  let h: Harness;
  before(async () => {
    h = await startHarness({ simulator: true });
  });
  after(() => h.stop());

  it('answers at least 500 generated hostile requests with a 4xx and a code, never a 5xx, and changes nothing', async () => {
    const probe = h.probe;
    const user = h.user('target');
    await seedBalance(h, user, 1_000_000n);
    const rsv = (
      await h.post('/internal/v1/billing/reservations', {
        request_id: 'keep',
        user_id: user,
        service_name: 'passport',
        count: 1,
      })
    ).body.data.reservationId;
    await h.drain();
    const snapshot = async () => ({
      account: (await h.get('/api/v1/billing/account', { user_id: user })).body.data,
      records: Number((await probe.db('consumption_records').count({ n: '*' }).first())!.n),
      ledger: Number((await probe.db('ledger_entries').count({ n: '*' }).first())!.n),
      refunds: Number((await probe.db('refunds').count({ n: '*' }).first())!.n),
      orders: Number((await probe.db('recharge_orders').count({ n: '*' }).first())!.n),
      grants: await probe.db('credit_grants').where({ user_id: user }).select('grant_id', 'remaining', 'status'),
      grantEntries: Number((await probe.db('grant_entries').count({ n: '*' }).first())!.n),
      limits: (await h.get('/api/v1/billing/limits', { user_id: user })).body.data,
      pricing: (await h.get(`/admin/v1/accounts/${user}/pricing`, {}, { authorization: `Bearer ${ADMIN_TOKEN}` })).body
        .data,
      journal: await probe.persistence.pendingCount(),
    });
    const before = await snapshot();
    const cases = generate(user, encodeURIComponent(rsv));
    expect(cases.length).to.be.at.least(500);
    const failures: string[] = [];
    for (let i = 0; i < cases.length; i += 25) {
      await Promise.all(
        cases.slice(i, i + 25).map(async (c) => {
          const qs = c.query ? `?${new URLSearchParams(c.query)}` : '';
          const res = await fetch(h.url + c.path + qs, {
            method: c.method,
            headers: { authorization: 'Bearer test-gateway-token', 'content-type': 'application/json', ...c.headers },
            body: c.method === 'GET' ? undefined : (c.rawBody ?? JSON.stringify(c.body)),
          });
          const text = await res.text();
          let code: unknown;
          try {
            code = JSON.parse(text).code;
          } catch {
            code = undefined;
          }
          if (res.status < 400 || res.status >= 500 || typeof code !== 'number')
            failures.push(`${c.name}: ${res.status} ${text.slice(0, 120)}`);
        }),
      );
    }
    expect(failures, failures.slice(0, 10).join('\n')).to.deep.equal([]);
    await h.drain();
    expect(await snapshot()).to.deep.equal(before);
    console.log(`      ${cases.length} hostile requests: all 4xx with a code`);
  });
});
