import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis, startMariaDb, startRedisCluster, type LocalServer } from '../../scripts/local-servers.js';
import { createDatabase, migrateLatest } from '../../src/repositories/database.js';

export interface TestServers {
  redisUrl: string;
  databaseUrl: string;
  redis: { stop(): Promise<void> };
  mariadb: LocalServer;
  dir: string;
}

let servers: Promise<TestServers> | null = null;

/**
 * A throw-away redis-server and MariaDB for this test run, started on first use and migrated once.
 * Tests isolate themselves by key prefix, queue prefix and user ids, not by server. With
 * TEST_REDIS_CLUSTER=1 Redis is a 3-master Redis Cluster instead (npm run test:cluster).
 */
export function testServers(): Promise<TestServers> {
  servers ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'billing-test-'));
    const [redis, mariadb] = await Promise.all([
      process.env.TEST_REDIS_CLUSTER === '1'
        ? startRedisCluster(join(dir, 'redis-cluster'))
        : startRedis({ dir: join(dir, 'redis'), aof: true }),
      startMariaDb({ dir: join(dir, 'mariadb'), database: 'billing_test', fast: true }),
    ]);
    const db = createDatabase(mariadb.url);
    await migrateLatest(db);
    await db.destroy();
    return { redisUrl: redis.url, databaseUrl: mariadb.url, redis, mariadb, dir };
  })();
  return servers;
}

export async function stopTestServers(): Promise<void> {
  if (!servers) return;
  const s = await servers;
  await Promise.all([s.redis.stop(), s.mariadb.stop()]);
  rmSync(s.dir, { recursive: true, force: true });
  servers = null;
}

/** Mocha root hooks: stop the servers after the whole run. */
export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await stopTestServers();
  },
};
