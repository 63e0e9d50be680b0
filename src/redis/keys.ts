/**
 * Every key of one user carries the hash tag {<user_id>}, so that each script touches one Redis
 * Cluster slot. user_id cannot contain braces (SPEC section 2), so the tag is always the first pair.
 */
export class RedisKeys {
  constructor(private readonly prefix: string) {}

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
    return `${this.user(userId)}:req:${requestId}`;
  }

  /** Exists once the credit (recharge, adjustment) with this journal id has been applied. */
  applied(userId: string, changeId: string): string {
    return `${this.user(userId)}:applied:${changeId}`;
  }

  /** Hash of one reservation (hold): state, what is held, and the commit's answer. */
  reservation(userId: string, reservationId: string): string {
    return `${this.user(userId)}:rsv:${reservationId}`;
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
