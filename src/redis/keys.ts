import { slotTagOf, slotTags } from './slots.js';

/**
 * A caller-controlled id as one key segment: every character outside [A-Za-z0-9_.-] becomes %XX (%uXXXX
 * past ASCII). The
 * encoding is injective (ids that differ by a trailing space, by case or by a separator stay two
 * keys), and the segment can hold no ':', braces or glob characters, so no id can end a key early,
 * reach another user's keys or make a key match a maintenance SCAN pattern (SPEC 10.1, 10.3).
 */
export function keySegment(id: string): string {
  // Per UTF-16 code unit, so that even ids no validator let through cannot collide.
  return id.replace(/[^A-Za-z0-9_.-]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x80 ? `%${code.toString(16).padStart(2, '0')}` : `%u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Every key of one user carries the hash tag {<user_id>}, so that each script touches one Redis
 * Cluster slot. user_id cannot contain braces (SPEC section 2), so the tag is always the first pair;
 * every other caller-controlled part is a `keySegment`.
 */
export class RedisKeys {
  /**
   * `perSlot`: on a Redis Cluster each maintenance index is one key per hash slot (tagged to share the
   * slot of the users it lists, so a script updates it with their keys); on one server, one key each.
   */
  constructor(
    private readonly prefix: string,
    private readonly perSlot = false,
  ) {}

  private user(userId: string): string {
    return `${this.prefix}:{${userId}}`;
  }

  /**
   * Hash {bal, od, held, v}: balance, overdraft limit and held (reserved) amount in micro-units, and a
   * version every counter-changing script bumps (reconciliation compares only between equal versions).
   */
  account(userId: string): string {
    return `${this.user(userId)}:acct`;
  }

  /** Hash {<service>: free calls used} for one month (YYYYMM, business time zone). */
  quota(userId: string, period: string): string {
    return `${this.user(userId)}:q:${period}`;
  }

  /** SCAN pattern matching every user's monthly quota hashes. */
  quotaPattern(): string {
    return `${this.prefix}:{*}:q:*`;
  }

  /** Hash holding the first answer to a request_id, for idempotent replays. */
  request(userId: string, requestId: string): string {
    return `${this.user(userId)}:req:${keySegment(requestId)}`;
  }

  /**
   * Hash of the deduct requests first seen in idempotency window `window`, one of several shards (see
   * deduct-8.lua and src/redis/idempotency.ts): {<12-byte request digest>: 32 packed bytes}.
   */
  requests(userId: string, window: number, shard: number): string {
    return `${this.user(userId)}:idem:${window}:${shard}`;
  }

  /**
   * Hash of the calls refunded so far per deduct record first seen in window `window` (see refund-9.lua):
   * {<12-byte request digest>: packed free, paid, amount}. Expires with that window's request hashes.
   */
  refunded(userId: string, window: number): string {
    return `${this.user(userId)}:refunded:${window}`;
  }

  /** Hash of the refund ids first seen in idempotency window `window`: {<12-byte digest>: packed answer}. */
  refunds(userId: string, window: number): string {
    return `${this.user(userId)}:refunds:${window}`;
  }

  /** Exists once the credit (recharge, adjustment) with this journal id has been applied. */
  applied(userId: string, changeId: string): string {
    return `${this.user(userId)}:applied:${keySegment(changeId)}`;
  }

  /** Hash of one reservation (hold): state, what is held, and the commit's answer. */
  reservation(userId: string, reservationId: string): string {
    return `${this.user(userId)}:rsv:${keySegment(reservationId)}`;
  }

  /** Hash {<reservation id>: expiry in unix ms} of the user's open holds. */
  holds(userId: string): string {
    return `${this.user(userId)}:holds`;
  }

  holdsPattern(): string {
    return `${this.prefix}:{*}:holds`;
  }

  /** SCAN pattern matching every user's account hash. */
  accountPattern(): string {
    return `${this.prefix}:{*}:acct`;
  }

  /** Hash {<change id>: change JSON}: changes made in Redis and not yet persisted to MySQL. */
  pending(userId: string): string {
    return `${this.user(userId)}:pending`;
  }

  /**
   * Hash {<change id>: {change, error, at} JSON}: changes MySQL refused even alone, parked by the
   * persistence job (dead letters). Their money stays in Redis; reconciliation treats them as in
   * flight, and an operator retries them through the admin API.
   */
  deadLetters(userId: string): string {
    return `${this.user(userId)}:dead`;
  }

  /** Sorted set {<user id>: parked at (ms)} of users with dead letters: the operators' index. */
  deadLetterIndex(): string {
    return `${this.prefix}:dead-letter-users`;
  }

  /** The tag of the maintenance index keys that list this user (see includes/changed.lua). */
  private indexTag(userId: string): string {
    return this.perSlot ? slotTagOf(userId) : '#index';
  }

  /** Every index tag: maintenance walks these keys instead of SCANning the keyspace. */
  indexTags(): readonly string[] {
    return this.perSlot ? slotTags() : ['#index'];
  }

  /** Sorted set {<user id>: time of the oldest unpersisted journal entry}: what the sweep reads. */
  journalIndex(userId: string): string {
    return this.journalIndexOf(this.indexTag(userId));
  }

  journalIndexOf(tag: string): string {
    return `${this.prefix}:{${tag}}:journal-index`;
  }

  /** Sorted set {<user id>: earliest expiry of an open hold}: what reservation expiry reads. */
  holdsIndex(userId: string): string {
    return this.holdsIndexOf(this.indexTag(userId));
  }

  holdsIndexOf(tag: string): string {
    return `${this.prefix}:{${tag}}:holds-index`;
  }

  /** Sorted set {<user id>: time of the last change}: what idle-account eviction reads. */
  activityIndex(userId: string): string {
    return this.activityIndexOf(this.indexTag(userId));
  }

  activityIndexOf(tag: string): string {
    return `${this.prefix}:{${tag}}:activity-index`;
  }

  /** SCAN pattern matching every user's pending journal. */
  pendingPattern(): string {
    return `${this.prefix}:{*}:pending`;
  }

  /** The user id of any key of this layout: what stands inside the hash tag. */
  userOf(key: string): string | null {
    const open = key.indexOf('{');
    const close = key.indexOf('}', open);
    return key.startsWith(`${this.prefix}:{`) && close > open + 1 ? key.slice(open + 1, close) : null;
  }
}
