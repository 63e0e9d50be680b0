import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { startHarness, seedBalance, GATEWAY_TOKEN, type Harness } from '../support/harness.js';
import { spawnRole, exited } from '../support/processes.js';
import { freePort } from '../../scripts/local-servers.js';

/*
 * SPEC 16: the api and worker roles are stateless replicas. Two API processes and two workers share
 * one Redis (a 3-master Cluster under npm run test:cluster) and MariaDB under mixed load; one of each
 * is killed with SIGKILL mid-load; every request is retried on the survivor with its request id until
 * answered; after the queues drain each request is charged exactly once and SPEC 7 holds.
 */
describe('replicas: two API processes and two workers, one of each killed', function () {
  this.timeout(180_000);
  let h: Harness;
  const children: ChildProcess[] = [];
  before(async () => {
    h = await startHarness({ roles: [] });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await h.stop();
  });

  async function api(): Promise<{ url: string; child: ChildProcess }> {
    const port = await freePort();
    const child = spawnRole('api', { ...h.env, PORT: String(port), GRPC_PORT: '0', MIGRATE_ON_START: 'false' });
    children.push(child);
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const up = await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) return { url, child };
      if (i > 200) throw new Error('API process did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('charges every request once and keeps SPEC 7 when an API process and a worker die mid-load', async () => {
    const [a, b] = await Promise.all([api(), api()]);
    const workers = [spawnRole('worker', h.env), spawnRole('worker', h.env)];
    children.push(...workers);
    const users = Array.from({ length: 6 }, (_, i) => h.user(`replica-${i}`));
    for (const u of users) await seedBalance(h, u, 5_000_000n);

    const alive = new Set([a.url, b.url]);
    const headers = { authorization: `Bearer ${GATEWAY_TOKEN}`, 'content-type': 'application/json' };
    /** Sends to the given API, then to any live one, until answered: a retry keeps the request id. */
    const send = async (first: string, path: string, body: object) => {
      for (let url = first, attempt = 0; ; url = [...alive][attempt % alive.size], attempt++) {
        try {
          const res = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
          return { status: res.status, body: await res.json() };
        } catch {
          if (attempt > 50) throw new Error(`no API answered ${path}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };

    const requests = Array.from({ length: 600 }, (_, i) => ({ i, user: users[i % users.length] }));
    const answers = await Promise.all(
      requests.map(async ({ i, user }) => {
        await new Promise((r) => setTimeout(r, i * 3));
        if (i === 200) {
          a.child.kill('SIGKILL');
          alive.delete(a.url);
          workers[0].kill('SIGKILL');
        }
        const target = i % 2 === 0 && alive.has(a.url) ? a.url : b.url;
        if (i % 10 === 5) {
          const held = await send(target, '/internal/v1/billing/reservations', {
            request_id: `h${i}`,
            user_id: user,
            service_name: 'passport',
            count: 3,
            ttl_seconds: 600,
          });
          if (held.status !== 200) return held;
          return send(b.url, `/internal/v1/billing/reservations/${held.body.data.reservationId}/commit`, { count: 2 });
        }
        return send(target, '/internal/v1/billing/deduct', {
          request_id: `d${i}`,
          user_id: user,
          service_name: 'passport',
        });
      }),
    );
    expect(
      answers.filter((r) => r.status !== 200),
      'every request answered once retried',
    ).to.deep.equal([]);
    expect(await exited(a.child)).to.equal('SIGKILL');

    // What the killed API had buffered is in the journals: the sweep (the scheduler's job) finds it.
    await h.probe.persistence.sweep(0);
    await h.drain(120_000);
    await h.assertInvariant(users);
    for (const user of users) {
      const records = await h.probe.db('consumption_records').where({ user_id: user }).pluck('request_id');
      const expected = requests.filter((r) => r.user === user).map((r) => (r.i % 10 === 5 ? `h${r.i}` : `d${r.i}`));
      expect(records.sort(), `records of ${user}: each request exactly once`).to.deep.equal(expected.sort());
    }
  });
});
