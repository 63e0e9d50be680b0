import type { Knex } from 'knex';
import type { Logger } from '../lib/logger.js';
import type { Clock } from '../lib/clock.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import { scanKeys } from '../redis/scan.js';
import type { JobQueues } from '../jobs/queues.js';
import type { LedgerRepository, ApplyResult } from '../repositories/ledger.repository.js';
import { isLedgerChange, journalId, type LedgerChange } from '../lib/ledger-change.js';
import type { FaultPoints } from '../lib/faults.js';

export interface PersistenceOptions {
  batchSize: number;
  flushMs: number;
}

export interface PersistOutcome extends ApplyResult {
  /** ms from the oldest change's acceptance to its commit in MySQL */
  lagMs: number;
}

/**
 * Moves changes recorded in Redis into MySQL.
 *
 * API side: `enqueue` collects accepted changes for a few ms and adds one `persist-changes` job per
 * batch, off the response path. Losing that buffer (a crash) loses nothing: the change is already in
 * the user's Redis journal, and `sweep` re-enqueues what stays there too long.
 *
 * Worker side: `persist` writes a batch in one MySQL transaction (idempotent by change id), then
 * removes the changes from the journals.
 */
export class PersistenceService {
  private buffer: LedgerChange[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly inflight = new Set<Promise<unknown>>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly ledger: LedgerRepository,
    private readonly queues: JobQueues,
    private readonly opts: PersistenceOptions,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly faults: FaultPoints,
  ) {}

  enqueue(change: LedgerChange): void {
    this.buffer.push(change);
    if (this.buffer.length >= this.opts.batchSize) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), this.opts.flushMs);
  }

  /** Adds the buffered changes as one job. A failure is logged: the sweep will find the changes. */
  flush(): Promise<unknown> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const changes = this.buffer;
    this.buffer = [];
    if (changes.length === 0) return Promise.resolve();
    const p = this.queues
      .add('persist-changes', { changes })
      .catch((err: Error) => this.logger.warn({ err, changes: changes.length }, 'enqueue of persist-changes failed; the sweep will re-enqueue'))
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  /** Flushes and waits for every add in flight (graceful shutdown, tests). */
  async drainBuffer(): Promise<void> {
    this.flush();
    await Promise.all([...this.inflight]);
  }

  async persist(changes: LedgerChange[]): Promise<PersistOutcome> {
    const bad = changes.find((c) => !isLedgerChange(c));
    if (bad) throw new MalformedChangeError(`malformed change: ${JSON.stringify(bad).slice(0, 200)}`);
    const write = (trx: Knex.Transaction) => this.ledger.applyChanges(changes, trx);
    const result = await this.writeThenClear(changes, write, 'after-batch-commit');
    const oldest = Math.min(...changes.map((c) => Date.parse(c.at)));
    return { ...result, lagMs: Math.max(0, this.clock.now().getTime() - oldest) };
  }

  /**
   * The one way changes leave the journal: `write` books them in one MySQL transaction (with whatever
   * else the caller writes in it), and only after its commit are they removed from the journals. A
   * crash between the two leaves them journaled; booking is idempotent by id, so a rerun is harmless.
   */
  async writeThenClear<T>(
    changes: Pick<LedgerChange, 'kind' | 'id' | 'userId'>[],
    write: (trx: Knex.Transaction) => Promise<T>,
    faultPoint: string,
  ): Promise<T> {
    const result = await this.ledger.transaction(write);
    this.faults.point(faultPoint);
    await this.acknowledge(changes);
    return result;
  }

  /** Removes persisted changes from the users' journals. */
  async acknowledge(changes: Pick<LedgerChange, 'kind' | 'id' | 'userId'>[]): Promise<void> {
    const byUser = new Map<string, string[]>();
    for (const c of changes) byUser.set(c.userId, [...(byUser.get(c.userId) ?? []), journalId(c)]);
    await Promise.all([...byUser].map(([userId, ids]) => this.redis.hdel(this.keys.pending(userId), ...ids)));
  }

  /** Every journal entry, in batches of user keys. */
  async *journalEntries(): AsyncGenerator<LedgerChange[]> {
    for await (const keys of scanKeys(this.redis, this.keys.pendingPattern())) {
      const batch: LedgerChange[] = [];
      for (const key of keys) {
        for (const json of Object.values(await this.redis.hgetall(key))) {
          try {
            batch.push(JSON.parse(json) as LedgerChange);
          } catch {
            this.logger.error({ key }, 'unreadable journal entry');
          }
        }
      }
      if (batch.length > 0) yield batch;
    }
  }

  /** Re-enqueues journal entries older than `olderThanMs`. Returns how many. */
  async sweep(olderThanMs: number): Promise<number> {
    const cutoff = this.clock.now().getTime() - olderThanMs;
    let count = 0;
    for await (const batch of this.journalEntries()) {
      const stale = batch.filter((c) => Date.parse(c.at) <= cutoff);
      for (let i = 0; i < stale.length; i += this.opts.batchSize) {
        await this.queues.add('persist-changes', { changes: stale.slice(i, i + this.opts.batchSize) });
      }
      count += stale.length;
    }
    if (count > 0) this.logger.warn({ count }, 'sweep re-enqueued unpersisted changes');
    return count;
  }

  /** Number of changes recorded in Redis and not yet persisted. */
  async pendingCount(): Promise<number> {
    let n = 0;
    for await (const keys of scanKeys(this.redis, this.keys.pendingPattern())) {
      const lengths = await Promise.all(keys.map((k) => this.redis.hlen(k)));
      n += lengths.reduce((a, b) => a + b, 0);
    }
    return n;
  }
}

/** A change no retry can write; the worker fails the job for good. */
export class MalformedChangeError extends Error {}
