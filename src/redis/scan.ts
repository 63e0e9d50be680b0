import { Cluster } from 'ioredis';
import type { RedisClient } from './connection.js';

/** Keys matching `pattern`, in SCAN batches, on every master of a cluster. */
export async function* scanKeys(redis: RedisClient, pattern: string): AsyncGenerator<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  for (const node of nodes) {
    for await (const keys of node.scanStream({ match: pattern, count: 1000 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) yield keys;
    }
  }
}
