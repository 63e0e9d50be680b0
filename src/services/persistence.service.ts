import type { Logger } from '../lib/logger.js';
import type { Clock } from '../lib/clock.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import { dueMembers } from '../redis/indexes.js';
import type { JobQueues } from '../jobs/queues.js';
import type { LedgerRepository, ApplyResult } from '../repositories/ledger.repository.js';
import { isLedgerChange, journalId, type LedgerChange } from '../lib/ledger-change.js';
import type { Scripts } from '../redis/scripts.js';
import type { FaultPoints } from '../lib/faults.js';

export interface PersistenceOptions {
  batchSize: number;
  flushMs: number;
}

export interface DeadLetter {
  userId: string;
  changeId: string;
  error: string;
  parkedAt: string;
  change: LedgerChange;
}

export interface PersistOutcome extends ApplyResult {
  /** changes MySQL refused even alone, parked as dead letters */
  parked: number;
  /** ms from the oldest change's acceptance to its commit in MySQL */
  lagMs: number;
}

/** What PersistenceService is built from (named, so that adding one is no positional shuffle). */
export interface PersistenceServiceDeps {
  scripts: Scripts;
  redis: RedisClient;
  keys: RedisKeys;
  ledger: LedgerRepository;
  queues: JobQueues;
  opts: PersistenceOptions;
  clock: Clock;
  logger: Logger;
  faults: FaultPoints;
  /** counts each dead letter (a metric) */
  onDeadLetter?: () => void;
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

  private readonly scripts: Scripts;
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly ledger: LedgerRepository;
  private readonly queues: JobQueues;
  private readonly opts: PersistenceOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly faults: FaultPoints;
  /** counts each dead letter (a metric) */
  private readonly onDeadLetter: () => void;

  constructor(deps: PersistenceServiceDeps) {
    this.scripts = deps.scripts;
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.ledger = deps.ledger;
    this.queues = deps.queues;
    this.opts = deps.opts;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.faults = deps.faults;
    this.onDeadLetter = deps.onDeadLetter ?? (() => undefined);
  }

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
      .catch((err: Error) =>
        this.logger.warn(
          { err, changes: changes.length },
          'enqueue of persist-changes failed; the sweep will re-enqueue',
        ),
      )
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  /** Flushes and waits for every add in flight (graceful shutdown, tests). */
  async drainBuffer(): Promise<void> {
    this.flush();
    await Promise.all([...this.inflight]);
  }

  /**
   * Writes a batch in one transaction. If MySQL refuses it for its data (not for being down), each
   * change is tried alone, and one that fails alone is parked as a dead letter: one bad change never
   * blocks the rest of its batch, nor the batches after it (SPEC 10.4).
   */
  async persist(changes: LedgerChange[]): Promise<PersistOutcome> {
    if (!Array.isArray(changes)) throw new MalformedChangeError('persist-changes carries no list of changes');
    const good = changes.filter(isLedgerChange);
    let parked = 0;
    for (const bad of changes.filter((c) => !isLedgerChange(c))) {
      parked += await this.park(bad, new MalformedChangeError('malformed change'));
    }
    const result = await this.writeThenClear(
      good,
      async () => {
        if (good.length === 0) return { applied: 0, alreadyPersisted: 0 };
        try {
          return await this.ledger.transaction((trx) => this.ledger.applyChanges(good, trx));
        } catch (err) {
          if (!isDataError(err)) throw err;
          this.logger.warn(
            { err: (err as Error).message, changes: good.length },
            'MySQL refused a batch; writing its changes one by one',
          );
          const alone = await this.persistOneByOne(good);
          parked += good.length - alone.applied - alone.alreadyPersisted;
          return alone;
        }
      },
      'after-batch-commit',
    );
    const oldest = Math.min(
      ...changes.map((c) => Date.parse((c as Partial<LedgerChange> | null)?.at ?? '') || Date.now()),
    );
    return { ...result, parked, lagMs: Math.max(0, this.clock.now().getTime() - oldest) };
  }

  private async persistOneByOne(changes: LedgerChange[]): Promise<ApplyResult> {
    const total: ApplyResult = { applied: 0, alreadyPersisted: 0 };
    for (const change of changes) {
      // Twice: a change that a concurrent job was committing collides once on a unique key, then is found stored.
      for (let attempt = 1; ; attempt++) {
        try {
          const r = await this.ledger.transaction((trx) => this.ledger.applyChanges([change], trx));
          total.applied += r.applied;
          total.alreadyPersisted += r.alreadyPersisted;
          break;
        } catch (err) {
          if (!isDataError(err)) throw err;
          if (attempt < 2) continue;
          await this.park(change, err as Error);
          break;
        }
      }
    }
    return total;
  }

  /**
   * The one way changes leave the journal: `write` books them in MySQL (one transaction, or one per
   * change when a batch was refused, with whatever else the caller writes in it), and only after that
   * are they removed from the journals. A crash between the two leaves them journaled; booking is
   * idempotent by id, so a rerun is harmless. (Parked changes have left the journal already.)
   */
  async writeThenClear<T>(
    changes: Pick<LedgerChange, 'kind' | 'id' | 'userId'>[],
    write: () => Promise<T>,
    faultPoint: string,
  ): Promise<T> {
    const result = await write();
    this.faults.point(faultPoint);
    await this.acknowledge(changes);
    return result;
  }

  /** Moves one change from its user's journal to the dead letters (logged, counted). Returns 1 if parked. */
  private async park(change: unknown, err: Error): Promise<number> {
    const c = change as Partial<LedgerChange> | null;
    const userId = typeof c?.userId === 'string' ? c.userId : null;
    const field =
      userId && typeof c?.id === 'string' && typeof c?.kind === 'string' ? journalId(c as LedgerChange) : null;
    this.onDeadLetter();
    this.logger.error({ userId, change: field, err: err.message }, 'change parked as a dead letter');
    if (!userId || !field) return 0; // not from a journal: nothing in Redis to account for
    const at = this.clock.now();
    const moved = await this.scripts.parkChange({ userId, field, error: err.message, at });
    if (moved) await this.redis.zadd(this.keys.deadLetterIndex(), at.getTime(), userId);
    return moved ? 1 : 0;
  }

  /** Dead letters, oldest users first: what an operator sees. */
  async deadLetters(limit: number): Promise<DeadLetter[]> {
    const users = await this.redis.zrange(this.keys.deadLetterIndex(), '0', String(limit - 1));
    const out: DeadLetter[] = [];
    for (const userId of users) {
      for (const [changeId, json] of Object.entries(await this.redis.hgetall(this.keys.deadLetters(userId)))) {
        const parked = JSON.parse(json) as { error: string; at: string; change: LedgerChange };
        out.push({ userId, changeId, error: parked.error, parkedAt: parked.at, change: parked.change });
      }
    }
    return out.slice(0, limit);
  }

  /** Puts a dead letter back into its journal and queues it (an operator's retry). False if none. */
  async retryDeadLetter(userId: string, changeId: string): Promise<boolean> {
    const { change, left } = await this.scripts.unparkChange(userId, changeId, this.clock.now());
    if (left === 0) await this.redis.zrem(this.keys.deadLetterIndex(), userId);
    if (!change) return false;
    await this.queues.add('persist-changes', { changes: [JSON.parse(change) as LedgerChange] });
    return true;
  }

  /** Removes persisted changes from the users' journals (and users with nothing left from the index). */
  async acknowledge(changes: Pick<LedgerChange, 'kind' | 'id' | 'userId'>[]): Promise<void> {
    const byUser = new Map<string, string[]>();
    for (const c of changes) {
      const ids = byUser.get(c.userId);
      if (ids) ids.push(journalId(c));
      else byUser.set(c.userId, [journalId(c)]);
    }
    await this.scripts.ackChangesOfUsers(byUser);
  }

  /**
   * Re-enqueues journal entries older than `olderThanMs`. Returns how many. Reads the journal index
   * (users whose oldest entry is that old), kept by the scripts that journal: its cost is the index
   * keys and the stale entries, not the keyspace.
   */
  async sweep(olderThanMs: number): Promise<number> {
    const cutoff = this.clock.now().getTime() - olderThanMs;
    let count = 0;
    const indexKeys = this.keys.indexTags().map((t) => this.keys.journalIndexOf(t));
    for await (const { members: users } of dueMembers(this.redis, indexKeys, cutoff)) {
      const journals = await Promise.all(users.map((u) => this.redis.hgetall(this.keys.pending(u))));
      const stale: LedgerChange[] = [];
      journals.forEach((journal, i) => {
        for (const json of Object.values(journal)) {
          try {
            const change = JSON.parse(json) as LedgerChange;
            if (!(Date.parse(change.at) > cutoff)) stale.push(change);
          } catch {
            this.logger.error({ userId: users[i] }, 'unreadable journal entry');
          }
        }
      });
      for (let i = 0; i < stale.length; i += this.opts.batchSize) {
        await this.queues.add('persist-changes', { changes: stale.slice(i, i + this.opts.batchSize) });
      }
      count += stale.length;
    }
    if (count > 0) this.logger.warn({ count }, 'sweep re-enqueued unpersisted changes');
    return count;
  }

  /** Number of changes recorded in Redis and not yet persisted (journals of the users in the index). */
  async pendingCount(): Promise<number> {
    let n = 0;
    const indexKeys = this.keys.indexTags().map((t) => this.keys.journalIndexOf(t));
    for await (const { members: users } of dueMembers(
      this.redis,
      indexKeys,
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    )) {
      const lengths = await Promise.all(users.map((u) => this.redis.hlen(this.keys.pending(u))));
      n += lengths.reduce((a, b) => a + b, 0);
    }
    return n;
  }
}

/** A change that is not a change this service writes (a job added by hand, a corrupted journal). */
export class MalformedChangeError extends Error {}

/**
 * MySQL refused the data itself (SQLSTATE class 22: data exception, 23: integrity constraint), as
 * opposed to being unreachable, overloaded or deadlocked, which a retry of the same batch fixes.
 */
export function isDataError(err: unknown): boolean {
  if (err instanceof MalformedChangeError) return true;
  const state = (err as { sqlState?: unknown } | null)?.sqlState;
  return typeof state === 'string' && /^2[23]/.test(state);
}
