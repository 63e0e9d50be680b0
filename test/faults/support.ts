import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startRedis, startMariaDb, type LocalServer } from '../../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../../src/repositories/database.js';
import type { Harness } from '../support/harness.js';

/** Servers of the fault suite's own, which its cases stop and restart. */
export class OwnServers {
  redis!: LocalServer;
  mariadb!: LocalServer;
  readonly dir = mkdtempSync(join(tmpdir(), 'billing-faults-'));

  async start(): Promise<this> {
    [this.redis, this.mariadb] = await Promise.all([
      startRedis({ dir: join(this.dir, 'redis'), aof: true }),
      startMariaDb({ dir: join(this.dir, 'mariadb'), database: 'billing_faults', fast: true }),
    ]);
    const db = createDatabase(this.mariadb.url);
    await migrateLatest(db);
    await db.destroy();
    return this;
  }

  get urls() {
    return { redisUrl: this.redis.url, databaseUrl: this.mariadb.url };
  }

  /** Stops Redis (SIGTERM: it writes its AOF) and starts it again on the same port and data. */
  async restartRedis(downMs = 0): Promise<void> {
    await this.redis.stop();
    await new Promise((r) => setTimeout(r, downMs));
    this.redis = await startRedis({ dir: join(this.dir, 'redis'), port: this.redis.port, aof: true });
  }

  async stopMysql(): Promise<void> {
    await this.mariadb.stop();
  }

  async startMysql(): Promise<void> {
    this.mariadb = await startMariaDb({
      dir: join(this.dir, 'mariadb'),
      port: this.mariadb.port,
      database: 'billing_faults',
      fast: true,
    });
  }

  async stop(): Promise<void> {
    await Promise.allSettled([this.redis?.stop(), this.mariadb?.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Call {
  request_id: string;
  user_id: string;
  service_name: string;
  count?: number;
}

export interface Outcomes {
  /** answered 200: accepted */
  accepted: Call[];
  /** answered 402 / 409: refused, must have changed nothing */
  refused: Call[];
  /** answered 503 (or the connection failed): outcome unknown until retried */
  unknown: Call[];
  /** anything else: a bug */
  other: { call: Call; status: number; body: unknown }[];
}

/** Sends the calls, `concurrency` at a time, and sorts the answers. */
export async function runLoad(h: Harness, calls: Call[], concurrency = 32, pauseMs = 0): Promise<Outcomes> {
  const out: Outcomes = { accepted: [], refused: [], unknown: [], other: [] };
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls.length) {
        const call = calls[next++];
        try {
          const r = await h.post('/internal/v1/billing/deduct', call);
          if (r.status === 200) out.accepted.push(call);
          else if (r.status === 402 || r.status === 409) out.refused.push(call);
          else if (r.status === 503) out.unknown.push(call);
          else out.other.push({ call, status: r.status, body: r.body });
        } catch {
          out.unknown.push(call);
        }
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  return out;
}

/**
 * A gateway that got no answer retries with the same request_id: the service answers the first
 * outcome (duplicate) or applies it now. Afterwards every call is accepted or refused.
 */
export async function settle(h: Harness, o: Outcomes): Promise<void> {
  for (let attempt = 0; attempt < 20 && o.unknown.length > 0; attempt++) {
    const retry = o.unknown;
    o.unknown = [];
    const again = await runLoad(h, retry, 16);
    o.accepted.push(...again.accepted);
    o.refused.push(...again.refused);
    o.unknown.push(...again.unknown);
    o.other.push(...again.other);
    if (o.unknown.length > 0) await new Promise((r) => setTimeout(r, 500));
  }
  expect(o.unknown, 'calls still without an answer').to.have.length(0);
  expect(o.other, 'unexpected answers').to.deep.equal([]);
}

/** SPEC 7.1: every accepted call has exactly one record; no refused call has one. */
export async function assertExactlyOnce(h: Harness, o: Outcomes): Promise<void> {
  const users = [...new Set([...o.accepted, ...o.refused].map((c) => c.user_id))];
  const rows: { user_id: string; request_id: string }[] = await h.probe
    .db('consumption_records')
    .whereIn('user_id', users)
    .select('user_id', 'request_id');
  const stored = rows.map((r) => `${r.user_id}/${r.request_id}`).sort();
  const accepted = o.accepted.map((c) => `${c.user_id}/${c.request_id}`).sort();
  expect(stored.length, 'records vs accepted calls').to.equal(accepted.length);
  expect(stored).to.deep.equal(accepted);
  await h.assertInvariant(users);
}

/** `perUser` calls for each of `users` users (ids `<userPrefix>u<n>`), interleaved across users. */
export function calls(
  h: Harness,
  users: number,
  perUser: number,
  requestPrefix: string,
  userPrefix = requestPrefix,
  service = 'passport',
): Call[] {
  const out: Call[] = [];
  for (let i = 0; i < perUser; i++)
    for (let u = 0; u < users; u++)
      out.push({ request_id: `${requestPrefix}${i}`, user_id: h.user(`${userPrefix}u${u}`), service_name: service });
  return out;
}
