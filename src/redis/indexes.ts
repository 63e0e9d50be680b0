import type { RedisClient } from './connection.js';

/** Index keys asked at once: on a Cluster, auto-pipelining groups them per node. */
const CHUNK = 512;

/**
 * Walks maintenance index keys (sorted sets of user ids, one per hash slot on a Cluster, see
 * includes/changed.lua) and yields, per key, the members scored at most `maxScore` (the first `limit` of
 * each key; a caller that removes members as it goes may ask for the next page, see `nextDue`). Costs the number of index keys plus what is due, never the number of users.
 */
export async function* dueMembers(
  redis: RedisClient,
  indexKeys: readonly string[],
  maxScore: number,
  limit = 10_000,
): AsyncGenerator<{ key: string; members: string[] }> {
  for (let i = 0; i < indexKeys.length; i += CHUNK) {
    const chunk = indexKeys.slice(i, i + CHUNK);
    const pages = await Promise.all(chunk.map((key) => redis.zrangebyscore(key, '-inf', maxScore, 'LIMIT', 0, limit)));
    for (let j = 0; j < chunk.length; j++) if (pages[j].length > 0) yield { key: chunk[j], members: pages[j] };
  }
}

/** The members of `key` scored at most `maxScore`, from position `offset` on (up to `limit`). */
export function nextDue(redis: RedisClient, key: string, maxScore: number, offset: number, limit: number) {
  return redis.zrangebyscore(key, '-inf', maxScore, 'LIMIT', offset, limit);
}

/** How many users the index keys list in all (ZCARD of each). */
export async function indexSize(redis: RedisClient, indexKeys: readonly string[]): Promise<number> {
  let n = 0;
  for (let i = 0; i < indexKeys.length; i += CHUNK) {
    const sizes = await Promise.all(indexKeys.slice(i, i + CHUNK).map((key) => redis.zcard(key)));
    n += sizes.reduce((a, b) => a + b, 0);
  }
  return n;
}
