/*
 * Before a process starts its roles it asks Redis and MySQL once, with a short deadline. Without
 * this, an unreachable server shows up as endless reconnect attempts and stack traces that never
 * name which dependency is missing; with it, start-up fails within seconds with one paragraph
 * saying what, where (password masked) and what to check.
 */
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';

const DEADLINE_MS = 3000;

export class DependencyError extends Error {
  override name = 'DependencyError';
}

/** The URL with its password replaced by `***`, fit for logs and error messages. */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const text = `${e.code ?? ''} ${e.message ?? ''}`;
  if (/ECONNREFUSED/.test(text)) return 'connection refused (nothing listens there)';
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return 'host name not found';
  if (/ETIMEDOUT|timed out|timeout/i.test(text)) return `no answer within ${DEADLINE_MS / 1000} s`;
  if (/ER_ACCESS_DENIED|WRONGPASS|NOAUTH|invalid password/i.test(text)) return 'access denied (user or password wrong)';
  if (/ER_BAD_DB_ERROR/.test(text)) return 'the database does not exist';
  return (e.message ?? String(err)).split('\n')[0].replace(/\.$/, '');
}

async function pingRedisNode(url: string): Promise<void> {
  const r = new Redis(url, {
    lazyConnect: true,
    connectTimeout: DEADLINE_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  // The socket's own error (ECONNREFUSED, ...) says more than the "Connection is closed" connect() throws.
  let socketError: unknown;
  r.on('error', (err) => (socketError ??= err));
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    throw socketError ?? err;
  } finally {
    r.disconnect();
  }
}

export async function checkRedis(url: string): Promise<void> {
  // A cluster answers when any seed node does; the client discovers the rest.
  const nodes = url.startsWith('redis+cluster://')
    ? url
        .slice('redis+cluster://'.length)
        .split(',')
        .map((hp) => `redis://${hp}`)
    : [url];
  let last: unknown;
  for (const node of nodes) {
    try {
      return await pingRedisNode(node);
    } catch (err) {
      last = err;
    }
  }
  throw new DependencyError(
    `Cannot reach Redis at ${maskUrl(url)} (REDIS_URL): ${reason(last)}. Check that redis-server is running and ` +
      'reachable from this machine, and that REDIS_URL names its host, port and password; leave REDIS_URL unset ' +
      'to let `npm start` run a local one.',
  );
}

export async function checkMysql(url: string): Promise<void> {
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection({ uri: url, connectTimeout: DEADLINE_MS });
    await conn.query('SELECT 1');
  } catch (err) {
    throw new DependencyError(
      `Cannot reach MySQL at ${maskUrl(url)} (DATABASE_URL): ${reason(err)}. Check that the MySQL/MariaDB server ` +
        'is running and reachable from this machine, and that the user, password and database in DATABASE_URL ' +
        'exist; leave DATABASE_URL unset to let `npm start` run a local one.',
    );
  } finally {
    await conn?.end().catch(() => undefined);
  }
}

/** Both at once: start-up fails within the deadline, naming every dependency that did not answer. */
export async function checkDependencies(urls: { redis: string | null; database: string | null }): Promise<void> {
  const checks = [urls.redis ? checkRedis(urls.redis) : null, urls.database ? checkMysql(urls.database) : null];
  const results = await Promise.allSettled(checks.filter((c) => c !== null));
  const failed = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => (r.reason as Error).message);
  if (failed.length) throw new DependencyError(failed.join('\n'));
}
