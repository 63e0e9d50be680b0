import { expect } from 'chai';
import type { Job } from 'bullmq';
import { ADMIN_TOKEN, type Harness } from './harness.js';
import { jobHandlers, runJob } from '../../src/workers/handlers.js';

/**
 * Helpers of the grants, limits and per-user pricing tests (issue #14): the admin calls, the grant
 * ledger as MySQL holds it, and a maintenance job run in the test's own process.
 */
export const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
export const DEDUCT = '/internal/v1/billing/deduct';
export const CHECK = '/internal/v1/billing/check';
export const RESERVE = '/internal/v1/billing/reservations';
export const commitPath = (id: string) => `${RESERVE}/${encodeURIComponent(id)}/commit`;
export const releasePath = (id: string) => `${RESERVE}/${encodeURIComponent(id)}/release`;
export const grantsPath = (user: string) => `/admin/v1/accounts/${encodeURIComponent(user)}/grants`;
export const voidPath = (user: string, grantId: string) => `${grantsPath(user)}/${encodeURIComponent(grantId)}/void`;
export const pricingPath = (user: string, service?: string) =>
  `/admin/v1/accounts/${encodeURIComponent(user)}/pricing${service === undefined ? '' : `/${encodeURIComponent(service)}`}`;
export const LIMITS = '/api/v1/billing/limits';

/** Sends a PUT (the harness has GET and POST only). */
export async function put(h: Harness, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(h.url + path, {
    method: 'PUT',
    headers: {
      authorization: headers.authorization ?? 'Bearer test-gateway-token',
      'content-type': 'application/json',
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${res.status}: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body: parsed };
}

export async function account(h: Harness, user: string) {
  return (await h.get('/api/v1/billing/account', { user_id: user })).body.data;
}

export async function listGrants(h: Harness, user: string): Promise<any[]> {
  const res = await h.get(grantsPath(user), {}, admin);
  expect(res.status, JSON.stringify(res.body)).to.equal(200);
  return res.body.data.grants;
}

export async function createGrant(h: Harness, user: string, body: Record<string, unknown>) {
  const res = await h.post(grantsPath(user), body, admin);
  expect(res.status, `grant ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`).to.equal(200);
  return res.body.data;
}

export interface GrantEntry {
  grant_id: string;
  entry_type: string;
  ref_id: string;
  amount: bigint;
}

/** A user's grant movements as MySQL holds them, oldest first. */
export async function grantEntries(h: Harness, user: string): Promise<GrantEntry[]> {
  const rows: { grant_id: string; entry_type: string; ref_id: string; amount: string | number }[] = await h.probe
    .db('grant_entries')
    .where({ user_id: user })
    .orderBy('id')
    .select('grant_id', 'entry_type', 'ref_id', 'amount');
  return rows.map((r) => ({ ...r, amount: BigInt(r.amount) }));
}

/** Micro-units of a decimal string answer ("0.015" -> 15000n). */
export function micros(amount: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,6}))?$/.exec(amount);
  if (!m) throw new Error(`not an amount: ${amount}`);
  const v = BigInt(m[2]) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

/**
 * SPEC 7 for grants, through what a test can see without the service's key layout: after a drain,
 * for each grant of each user, the remaining the API answers (MySQL + live Redis) = credit_grants
 * .remaining = SUM(grant_entries.amount); and the account's total available = MySQL balance + the
 * active grants' remaining - held.
 */
export async function assertGrantsAgree(h: Harness, users: string[]): Promise<void> {
  for (const user of users) {
    const listed = await listGrants(h, user);
    const rows: { grant_id: string; remaining: string | number }[] = await h.probe
      .db('credit_grants')
      .where({ user_id: user })
      .select('grant_id', 'remaining');
    expect(rows.map((r) => r.grant_id).sort(), `grants of ${user}`).to.deep.equal(listed.map((g) => g.grantId).sort());
    const sums: { grant_id: string; total: string | number }[] = await h.probe
      .db('grant_entries')
      .where({ user_id: user })
      .groupBy('grant_id')
      .select('grant_id')
      .sum({ total: 'amount' });
    const sumOf = new Map(sums.map((s) => [s.grant_id, BigInt(s.total)]));
    let active = 0n;
    for (const row of rows) {
      const api = listed.find((g) => g.grantId === row.grant_id);
      expect(micros(api.remaining), `API remaining vs credit_grants.remaining of ${user}/${row.grant_id}`).to.equal(
        BigInt(row.remaining),
      );
      expect(sumOf.get(row.grant_id) ?? 0n, `grant_entries sum vs remaining of ${user}/${row.grant_id}`).to.equal(
        BigInt(row.remaining),
      );
      if (api.status === 'active') active += BigInt(row.remaining);
      else expect(BigInt(row.remaining), `remaining of ${api.status} grant ${row.grant_id}`).to.equal(0n);
    }
    const acct = await account(h, user);
    const { balance } = await h.probe.repositories.ledger.balanceAndLedgerSum(user);
    expect(micros(acct.balance), `total available of ${user}`).to.equal(
      balance + active - micros(acct.heldAmount ?? '0'),
    );
  }
  await h.assertInvariant(users);
}

/** Runs one maintenance job (e.g. expire-grants) in this process through the workers' own dispatch. */
export async function runMaintenance(h: Harness, name: string, data: Record<string, unknown> = {}) {
  const job = { name, data, id: `test-${name}`, attemptsMade: 0, updateProgress: async () => undefined };
  return runJob(jobHandlers(h.probe.workers), job as unknown as Job as never);
}
