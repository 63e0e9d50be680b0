import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import type { RedisClient } from './connection.js';
import type { RedisKeys } from './keys.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, MAX_MICROS } from '../lib/money.js';
import {
  journalId,
  type CreditChange,
  type DeductionChange,
  type GrantChange,
  type GrantEndChange,
  type EventsChange,
  type RefundChange,
  type LedgerChange,
} from '../lib/ledger-change.js';
import type { ChangeEvent } from '../lib/events.js';
import type { Metrics } from '../lib/metrics.js';
import {
  deductPrint,
  fieldOf,
  payloadPrint,
  recordIdOf,
  refundDigest,
  refundKeyOf,
  requestDigest,
  requestPlace,
  SHARDS,
} from './idempotency.js';

/*
 * The one boundary between TypeScript and the Lua scripts in ./commands, after BullMQ's `Scripts`
 * class: each method owns its script's key order and argument order, takes named fields, returns
 * named reply fields, and turns a refusal into the AppError callers see. Services never build a
 * script call or read a reply by position.
 *
 * Every src/redis/commands/<name>-<numKeys>.lua is read once and becomes the client's method
 * <name>Script: EVALSHA, and EVAL (which loads it) when the server does not have it yet (first use, a
 * restart, a failover); <name>-n.lua takes a number of keys that varies, which its caller passes first. A line
 * `--- @include "includes/<file>"` is replaced by that file (once per script, nested includes too), as
 * in BullMQ's commands: shared Lua (pricing a call, printing an integer) is written once.
 */
const commandsDir = new URL('./commands/', import.meta.url);

function withIncludes(lua: string, included = new Set<string>()): string {
  return lua.replace(/^--- @include "([a-z/-]+)"$/gm, (_, name: string) => {
    if (included.has(name)) return '';
    included.add(name);
    return withIncludes(readFileSync(new URL(`${name}.lua`, commandsDir), 'utf8'), included);
  });
}

/**
 * Not ioredis's defineCommand: every auto-pipeline ioredis builds (one per tick of the event loop)
 * copies each defined command onto itself, about 8 µs per pipeline for the 18 scripts here, paid by
 * every call when calls are few and by a handful of them at saturation. EVALSHA and EVAL are ioredis's
 * own commands, auto-pipelined and routed by their keys like any other.
 */
export function defineScripts(redis: RedisClient): void {
  for (const file of readdirSync(commandsDir)) {
    const m = /^([a-z-]+)-(\d+|n)\.lua$/.exec(file);
    if (!m) continue;
    const name = m[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) + 'Script';
    const lua = withIncludes(readFileSync(new URL(file, commandsDir), 'utf8'));
    const call = scriptCaller(redis, lua, m[2] === 'n' ? null : Number(m[2]));
    Object.defineProperty(redis, name, { value: call, enumerable: false });
  }
}

/**
 * One script as a function of its keys and arguments (`numKeys` null: the caller passes the count
 * first): EVALSHA, and EVAL (which loads it) when the server does not have it.
 */
export function scriptCaller(
  redis: RedisClient,
  lua: string,
  numKeys: number | null,
): (...args: Arg[]) => Promise<unknown> {
  const sha = createHash('sha1').update(lua).digest('hex');
  const count = (numKeys === null ? [] : [numKeys]) as [number];
  return async (...args) => {
    try {
      return await redis.evalsha(sha, ...count, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(lua, ...count, ...args);
    }
  };
}

type Arg = string | number | Buffer;

// Positional on purpose: only the Scripts class below calls these. On the client only (defineScripts),
// not on its pipelines.
declare module 'ioredis' {
  interface RedisCommander<Context> {
    checkScript(account: string, quota: string, ...args: Arg[]): Result<string[], Context>;
    deductScript(
      account: string,
      quota: string,
      requests: string,
      previousRequests: string,
      pending: string,
      journalIndex: string,
      activity: string,
      reservationRequest: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    initAccountScript(account: string, quota: string, ...args: Arg[]): Result<number, Context>;
    setAlertsScript(account: string, balanceLow: string, quotaLowPercent: number): Result<number, Context>;
    reserveScript(
      account: string,
      quota: string,
      request: string,
      reservation: string,
      holds: string,
      holdsIndex: string,
      activity: string,
      deductRequests: string,
      previousDeductRequests: string,
      pending: string,
      journalIndex: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    commitReservationScript(
      account: string,
      quota: string,
      reservation: string,
      holds: string,
      pending: string,
      journalIndex: string,
      holdsIndex: string,
      activity: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    releaseReservationScript(
      account: string,
      quota: string,
      reservation: string,
      holds: string,
      holdsIndex: string,
      activity: string,
      pending: string,
      journalIndex: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    accountSnapshotScript(account: string, pending: string, holds: string, dead: string): Result<string[], Context>;
    repairAccountScript(
      account: string,
      quota: string,
      pending: string,
      holds: string,
      dead: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    parkChangeScript(pending: string, dead: string, journalIndex: string, ...args: Arg[]): Result<number, Context>;
    unparkChangeScript(
      pending: string,
      dead: string,
      journalIndex: string,
      ...args: Arg[]
    ): Result<[string | null, number], Context>;
    ackUserChangesScript(numKeys: number, ...keysThenArgs: (string | number)[]): Result<number, Context>;
    evictAccountScript(
      account: string,
      quota: string,
      previousQuota: string,
      pending: string,
      dead: string,
      holds: string,
      activity: string,
      user: string,
      idleBefore: number,
    ): Result<string, Context>;
    createGrantScript(
      account: string,
      marker: string,
      pending: string,
      journalIndex: string,
      activity: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    refundScript(
      account: string,
      quota: string,
      recordRequests: string,
      refunded: string,
      refunds: string,
      previousRefunds: string,
      pending: string,
      journalIndex: string,
      activity: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    endGrantsScript(
      account: string,
      pending: string,
      journalIndex: string,
      activity: string,
      grantMarker: string,
      ...args: Arg[]
    ): Result<string[], Context>;
    setAccountFieldsScript(account: string, activity: string, ...args: Arg[]): Result<number, Context>;
    creditScript(
      account: string,
      marker: string,
      pending: string,
      journalIndex: string,
      activity: string,
      ...args: Arg[]
    ): Result<string[], Context>;
  }
}

/** A billable service as the scripts price it (a catalogue entry is one). */
export interface PricedService {
  name: string;
  freeQuota: number;
  /** unit price in micro-units as a decimal string; '' for a free-only service */
  priceArg: string;
}

/** A deduct as Redis remembers it (deduct-8.lua): what a refund works from. */
export interface RememberedDeduct {
  recordId: string;
  /** the idempotency window the deduct was first seen in */
  window: number;
  /** when it was first seen (whole seconds) */
  firstSeen: Date;
  /** its payload fingerprint (see deductPrint) */
  fingerprint: number;
  free: number;
  paid: number;
  amount: bigint;
}

export interface RefundArgs {
  userId: string;
  /** the current month: the quota hash the free part goes back to */
  period: string;
  refundId: string;
  requestId: string;
  /** the record, as rememberedDeduct found it; null when none was found (a replay is still answered) */
  record: RememberedDeduct | null;
  /** calls to refund; null for the whole call */
  count: number | null;
  /** the service whose free quota gets the free part back, null when the record's month is over */
  returnFreeTo: string | null;
  /** the change to journal; the script adds the counts and the amount */
  change: Omit<RefundChange, 'id' | 'count' | 'free' | 'paid' | 'amount' | 'freeReturned'>;
  refundWindowMs: number;
  idempotencyTtlMs: number;
  now: Date;
}

export interface RefundReply {
  duplicate: boolean;
  recordId: string;
  count: number;
  free: number;
  paid: number;
  amount: bigint;
  available: bigint;
  /** the change journaled now, to be persisted; absent for a duplicate */
  journaled?: RefundChange;
}

/** Loads a user's account from MySQL into Redis (the scripts answer 'init' until it is there). */
export interface AccountLoader {
  load(userId: string, now: Date): Promise<void>;
}

/** free calls used this month per service: [service name, used] */
export type QuotaUse = [service: string, used: string][];

export interface CheckArgs {
  userId: string;
  period: string;
  /** the business day of the month (DD): whose spending the daily limit counts */
  day: string;
  service: PricedService;
  count: number;
  now: Date;
}

export interface CheckReply {
  allowed: boolean;
  reason: 'free' | 'balance' | 'insufficient_balance' | 'insufficient_quota' | 'limit_reached';
  freeLeft: number;
  available: bigint;
}

export interface DeductArgs extends Omit<CheckArgs, 'day'> {
  requestId: string;
  /** the business day (YYYY-MM-DD): the journaled change's day, and whose spending the daily limit counts */
  date: string;
  idempotencyTtlMs: number;
  /** unix ms at which the month's quota hash expires */
  quotaExpiresAt: number;
}

export interface ChargeReply {
  /** a replay of an earlier request_id: its first answer, nothing charged now */
  duplicate: boolean;
  free: number;
  paid: number;
  amount: bigint;
  available: bigint;
}

export interface DeductReply extends ChargeReply {
  recordId: string;
  /** the change journaled now, to be persisted; absent for a duplicate */
  journaled?: DeductionChange;
}

export interface ReserveArgs extends CheckArgs {
  requestId: string;
  reservationId: string;
  ttlMs: number;
  idempotencyTtlMs: number;
  quotaExpiresAt: number;
  /** how long the reservation hash is kept: its TTL plus the time a finished one is remembered */
  keepMs: number;
}

export interface ReserveReply extends ChargeReply {
  reservationId: string;
  /** unix ms */
  expiresAt: number;
}

export interface CommitArgs {
  userId: string;
  period: string;
  reservationId: string;
  count: number;
  recordId: string;
  /** the deduction's fields known before the script runs; it adds the rest from the hold */
  change: Pick<DeductionChange, 'kind' | 'id' | 'userId' | 'day' | 'at'>;
  now: Date;
}

export interface CommitReply {
  duplicate: boolean;
  /** null when nothing was charged (count 0) */
  recordId: string | null;
  free: number;
  paid: number;
  amount: bigint;
  released: bigint;
  available: bigint;
  journaled?: LedgerChange;
}

export interface ReleaseArgs {
  userId: string;
  period: string;
  reservationId: string;
  /** 'released': the release endpoint; 'expired': the expiry job (a no-op before the hold's time) */
  as: 'released' | 'expired';
  now: Date;
}

export interface ReleaseReply {
  /** 'ok', or why nothing moved: 'not_due', 'missing' or the state the hold was already in */
  outcome: string;
  released: bigint;
  available: bigint;
}

export interface CreditArgs {
  change: CreditChange;
  amount: bigint;
  markerTtlMs: number;
  maxBalance: bigint;
  /** refuse a debit that would take the available balance below zero */
  refuseOverdraw: boolean;
  now: Date;
}

export interface CreditReply {
  /** false when this credit had been applied before (nothing changed now) */
  applied: boolean;
  balance: bigint;
  /** the events the credit's change carries (includes/alerts.lua) */
  events?: ChangeEvent[];
}

export interface InitAccountArgs {
  userId: string;
  period: string;
  balance: string;
  overdraftLimit: string;
  quotaExpiresAt: number;
  /** TTL of the loaded account, ms: it becomes lasting with its first change */
  ttlMs: number;
  /** free calls used per service, and the quota alarms ('!al:<service>') */
  used: QuotaUse;
  /**
   * account-hash fields beside the balance: grants, price overrides, limits (see includes/quote.lua),
   * alert thresholds and the alarms derived from the loaded state (includes/alerts.lua)
   */
  accountFields: [field: string, value: string][];
  /** spent this month ('$m') and today ('$d:<DD>'), for the spending limits */
  spent: [field: string, amount: string][];
}

export interface CreateGrantArgs {
  change: GrantChange;
  markerTtlMs: number;
  /** of the payload: the same grant id with another payload is refused */
  fingerprint: number;
  maxGrants: number;
  now: Date;
}

export interface CreateGrantReply {
  duplicate: boolean;
  available: bigint;
  journaled?: GrantChange;
}

export interface EndGrantsArgs {
  userId: string;
  mode: 'expire' | 'void';
  grantId?: string;
  now: Date;
}

export interface EndGrantsReply {
  /** 'ended': the grant to void was given and has ended; 'missing': not live and not marked (see the script) */
  status: 'ok' | 'missing' | 'ended' | 'held';
  /** 'void': the grant's unheld remainder when it was voided, read in the same step */
  voided: bigint;
  /** what to persist: one change per grant ended now, or the event-only entry of a held grant's void */
  ended: (GrantEndChange | EventsChange)[];
}

export interface AccountSnapshot {
  exists: boolean;
  version: string;
  balance: string;
  /** journal entries not yet persisted, dead letters included */
  pending: number;
  openHolds: number;
}

export interface RepairArgs {
  userId: string;
  period: string;
  /** version seen by the snapshot taken before MySQL was read */
  version: string;
  balance: string;
  quotaExpiresAt: number;
  /** MySQL's grants in the account hash's encoding ('' for none): see includes/grants.lua */
  grants: string;
  used: QuotaUse;
}

export interface Repair {
  field: string;
  before: string;
  after: string;
}

/** null: the account changed since the snapshot or has changes in flight, so nothing was set. */
export type RepairReply = Repair[] | null;

type Op = 'check' | 'deduct' | 'reserve' | 'commit' | 'release' | 'expire' | 'refund';

const str = (v: string | undefined) => v ?? '';
const num = (v: string | undefined) => Number(v ?? 0);
const big = (v: string | undefined) => BigInt(v || '0');

export class Scripts {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly accounts: AccountLoader,
    private readonly metrics: Metrics,
  ) {}

  /** Runs a script; if the account is not in Redis yet ('init'), loads it and runs the script once more. */
  private async withAccount(userId: string, now: Date, run: () => Promise<string[]>) {
    const r = await run();
    if (r[0] !== 'init') return r;
    await this.accounts.load(userId, now);
    return run();
  }

  /** Counts the answer, and turns a charging refusal into its AppError. */
  private outcome(op: Op, status: string, refusal?: { service: string; requestId: string; reply: ChargeReply }): void {
    this.metrics.outcomes.inc({ op, outcome: status });
    if (!refusal) return;
    const { service, requestId, reply } = refusal;
    switch (status) {
      case 'ok':
      case 'dup':
        return;
      case 'reused':
        throw new AppError('REQUEST_ID_REUSED', `request_id ${requestId} was used before with a different payload`);
      case 'no_quota':
        throw new AppError(
          'INSUFFICIENT_QUOTA',
          `free quota of ${service} is used up for this month and the service is free-only`,
        );
      case 'no_balance':
        throw new AppError(
          'INSUFFICIENT_BALANCE',
          `insufficient balance: ${formatMoney(reply.available)} available, ${formatMoney(reply.amount)} needed`,
        );
      case 'limit':
        throw new AppError(
          'SPENDING_LIMIT_REACHED',
          `spending limit reached: ${formatMoney(reply.amount)} would exceed what is left of the limit`,
        );
      default:
        throw new Error(`${op} script answered ${status}`);
    }
  }

  private charge(r: string[]): ChargeReply {
    return { duplicate: r[0] === 'dup', free: num(r[2]), paid: num(r[3]), amount: big(r[4]), available: big(r[5]) };
  }

  private reservationGone(id: string, status: string): AppError {
    return new AppError('RESERVATION_NOT_FOUND', `reservation ${id} is ${status === 'missing' ? 'unknown' : status}`);
  }

  /**
   * Where the events of a step that journals no change of its own go (a refusal, a release: see
   * src/redis/commands/includes/alerts.lua): the persistence buffer, wired by the composition root.
   * Unset, they are still journaled, and the persistence sweep books them.
   */
  onEventsJournaled: (change: LedgerChange) => void = () => undefined;

  private journaledEvents(json: string | undefined): void {
    if (json) this.onEventsJournaled(JSON.parse(json) as LedgerChange);
  }

  async check(a: CheckArgs): Promise<CheckReply> {
    const k = this.keys;
    const s = a.service;
    const r = await this.withAccount(a.userId, a.now, () =>
      this.redis.checkScript(
        k.account(a.userId),
        k.quota(a.userId, a.period),
        s.name,
        a.count,
        s.freeQuota,
        s.priceArg,
        a.now.getTime(),
        a.day,
      ),
    );
    const reason = str(r[2]) as CheckReply['reason'];
    this.outcome('check', reason);
    return { allowed: r[1] === '1', reason, freeLeft: num(r[3]), available: big(r[4]) };
  }

  async deduct(a: DeductArgs): Promise<DeductReply> {
    const k = this.keys;
    const s = a.service;
    const windowMs = a.idempotencyTtlMs;
    const digest = requestDigest(a.userId, a.requestId);
    const place = requestPlace(digest, a.now.getTime(), windowMs);
    const recordId = recordIdOf(digest, place.window, windowMs);
    const at = a.now.toISOString();
    const r = await this.withAccount(a.userId, a.now, () =>
      this.redis.deductScript(
        k.account(a.userId),
        k.quota(a.userId, a.period),
        k.requests(a.userId, place.window, place.shard),
        k.requests(a.userId, place.window - 1, place.shard),
        k.pending(a.userId),
        k.journalIndex(a.userId),
        k.activityIndex(a.userId),
        k.request(a.userId, a.requestId),
        place.field,
        s.name,
        a.count,
        s.freeQuota,
        s.priceArg,
        recordId,
        a.requestId,
        windowMs,
        a.quotaExpiresAt,
        a.userId,
        a.now.getTime(),
        deductPrint(s.name, a.count),
        (place.window + 2) * windowMs,
        a.date,
        a.period,
        at,
      ),
    );
    const status = str(r[0]);
    const reply = this.charge(r);
    if (status === 'no_balance') this.journaledEvents(r[6]);
    this.outcome('deduct', status, { service: s.name, requestId: a.requestId, reply });
    if (status === 'dup') {
      // The record of the first call, made in the window the script found it in.
      const window = r[1] === 'previous' ? place.window - 1 : place.window;
      return { ...reply, recordId: recordIdOf(digest, window, windowMs) };
    }
    // What the script journaled (built there from the same arguments, so that none is sent twice).
    const journaled: DeductionChange = {
      kind: 'deduction',
      userId: a.userId,
      requestId: a.requestId,
      service: s.name,
      count: String(a.count),
      period: a.period,
      day: a.date,
      at,
      id: recordId,
      free: str(r[2]),
      paid: str(r[3]),
      amount: str(r[4]),
      unitPrice: str(r[6]),
      ...(r[7] ? { grants: JSON.parse(r[7]) as DeductionChange['grants'] } : {}),
      ...(r[8] ? { events: JSON.parse(r[8]) as ChangeEvent[] } : {}),
    };
    return { ...reply, recordId, journaled };
  }

  async reserve(a: ReserveArgs): Promise<ReserveReply> {
    const k = this.keys;
    const s = a.service;
    // A deduct that took this request id makes it 'reused' here (one request-id space per user).
    const place = requestPlace(requestDigest(a.userId, a.requestId), a.now.getTime(), a.idempotencyTtlMs);
    const r = await this.withAccount(a.userId, a.now, () =>
      this.redis.reserveScript(
        k.account(a.userId),
        k.quota(a.userId, a.period),
        k.request(a.userId, a.requestId),
        k.reservation(a.userId, a.reservationId),
        k.holds(a.userId),
        k.holdsIndex(a.userId),
        k.activityIndex(a.userId),
        k.requests(a.userId, place.window, place.shard),
        k.requests(a.userId, place.window - 1, place.shard),
        k.pending(a.userId),
        k.journalIndex(a.userId),
        `reserve|${s.name}|${a.count}|${a.ttlMs}`,
        s.name,
        a.count,
        s.freeQuota,
        s.priceArg,
        a.reservationId,
        a.now.getTime() + a.ttlMs,
        a.idempotencyTtlMs,
        a.quotaExpiresAt,
        a.requestId,
        a.period,
        a.keepMs,
        a.userId,
        a.now.getTime(),
        place.field,
        a.idempotencyTtlMs,
        a.day,
      ),
    );
    const reply = this.charge(r);
    this.journaledEvents(r[7]);
    this.outcome('reserve', str(r[0]), { service: s.name, requestId: a.requestId, reply });
    return { ...reply, reservationId: str(r[1]), expiresAt: num(r[6]) };
  }

  async commitReservation(a: CommitArgs): Promise<CommitReply> {
    const k = this.keys;
    const r = await this.redis.commitReservationScript(
      k.account(a.userId),
      k.quota(a.userId, a.period),
      k.reservation(a.userId, a.reservationId),
      k.holds(a.userId),
      k.pending(a.userId),
      k.journalIndex(a.userId),
      k.holdsIndex(a.userId),
      k.activityIndex(a.userId),
      a.reservationId,
      a.count,
      a.recordId,
      JSON.stringify(a.change),
      a.now.getTime(),
      a.userId,
    );
    const status = str(r[0]);
    this.outcome('commit', status);
    if (status === 'expired') this.journaledEvents(r[7]);
    if (status === 'too_many') {
      throw new AppError('VALIDATION_FAILED', 'count exceeds what is held', [
        { field: 'count', message: `must be at most ${str(r[1])}` },
      ]);
    }
    if (status === 'reused') {
      throw new AppError('REQUEST_ID_REUSED', `reservation ${a.reservationId} was committed before with another count`);
    }
    if (status !== 'ok' && status !== 'dup') throw this.reservationGone(a.reservationId, status);
    const json = str(r[7]);
    return {
      duplicate: status === 'dup',
      recordId: str(r[1]) || null,
      free: num(r[2]),
      paid: num(r[3]),
      amount: big(r[4]),
      released: big(r[5]),
      available: big(r[6]),
      journaled: status === 'ok' && json ? (JSON.parse(json) as LedgerChange) : undefined,
    };
  }

  /** Throws for a release ('released') that finds no hold to return; an expiry reports its outcome. */
  async releaseReservation(a: ReleaseArgs): Promise<ReleaseReply> {
    const k = this.keys;
    const r = await this.redis.releaseReservationScript(
      k.account(a.userId),
      k.quota(a.userId, a.period),
      k.reservation(a.userId, a.reservationId),
      k.holds(a.userId),
      k.holdsIndex(a.userId),
      k.activityIndex(a.userId),
      k.pending(a.userId),
      k.journalIndex(a.userId),
      a.reservationId,
      a.as,
      a.now.getTime(),
      a.userId,
    );
    const status = str(r[0]);
    this.outcome(a.as === 'released' ? 'release' : 'expire', status);
    this.journaledEvents(r[3]);
    if (a.as === 'released' && status !== 'ok' && status !== 'released')
      throw this.reservationGone(a.reservationId, status);
    return { outcome: status, released: big(r[1]), available: big(r[2]) };
  }

  /**
   * The deduct this request id made within the last idempotency window (this window's hash, else the
   * previous one's), as Redis remembers it; null when there is none. Read only: the refund script
   * checks it again atomically.
   */
  async rememberedDeduct(
    userId: string,
    requestId: string,
    now: Date,
    windowMs: number,
  ): Promise<RememberedDeduct | null> {
    const digest = requestDigest(userId, requestId);
    const place = requestPlace(digest, now.getTime(), windowMs);
    for (const window of [place.window, place.window - 1]) {
      const packed = await this.redis.hgetBuffer(
        this.keys.requests(userId, window, place.shard),
        Buffer.from(place.field, 'hex'),
      );
      // PACKED_ANSWER of includes/remembered.lua: fingerprint, first-seen second, free, paid, amount, available
      if (!packed || packed.length < 32) continue;
      const firstSeenS = packed.readUInt32BE(4);
      if (firstSeenS * 1000 + windowMs <= now.getTime()) continue;
      return {
        recordId: recordIdOf(digest, window, windowMs),
        window,
        firstSeen: new Date(firstSeenS * 1000),
        fingerprint: packed.readUInt32BE(0),
        free: packed.readUInt32BE(8),
        paid: packed.readUInt32BE(12),
        amount: BigInt(packed.readDoubleBE(16)),
      };
    }
    return null;
  }

  /**
   * Refunds calls of a remembered deduct (refund-9.lua); throws the refusals as AppErrors (10010).
   * null: `a.record` was read as none, and the deduct has landed since (read it again, then retry).
   */
  async refund(a: RefundArgs): Promise<RefundReply | null> {
    const k = this.keys;
    const W = a.idempotencyTtlMs;
    const nowMs = a.now.getTime();
    const requestDigestOf = requestDigest(a.userId, a.requestId);
    const place = requestPlace(requestDigestOf, nowMs, W);
    const refundWindow = Math.floor(nowMs / W);
    const digest = refundDigest(a.userId, a.refundId);
    const id = refundKeyOf(digest, refundWindow, W);
    // Without a record, the refund-id memory may still hold a replay; the record keys are then this window's.
    const recordWindow = a.record?.window ?? place.window;
    const shard = requestDigestOf[0] % SHARDS;
    const change = { ...a.change, id };
    const r = await this.withAccount(a.userId, a.now, () =>
      this.redis.refundScript(
        k.account(a.userId),
        k.quota(a.userId, a.period),
        k.requests(a.userId, recordWindow, shard),
        k.refunded(a.userId, recordWindow),
        k.refunds(a.userId, refundWindow),
        k.refunds(a.userId, refundWindow - 1),
        k.pending(a.userId),
        k.journalIndex(a.userId),
        k.activityIndex(a.userId),
        place.field,
        fieldOf(digest),
        payloadPrint(`${a.requestId}|${a.count ?? '*'}`),
        a.count === null ? '' : a.count,
        a.returnFreeTo ?? '',
        a.refundWindowMs,
        W,
        nowMs,
        JSON.stringify(change),
        journalId(change as RefundChange),
        a.userId,
        (recordWindow + 2) * W,
        (refundWindow + 2) * W,
        recordWindow,
        a.record ? '1' : '',
      ),
    );
    const status = str(r[0]);
    this.outcome('refund', status);
    switch (status) {
      case 'ok':
      case 'dup':
        break;
      case 'stale':
        return null;
      case 'reused':
        throw new AppError('REFUND_NOT_POSSIBLE', `refund_id ${a.refundId} was used before with a different payload`);
      case 'gone':
        throw new AppError(
          'REFUND_NOT_FOUND',
          `no call with request_id ${a.requestId} to refund (unknown, or past the refund window)`,
        );
      case 'too_many':
        throw new AppError(
          'REFUND_NOT_POSSIBLE',
          `only ${num(r[2])} calls of request_id ${a.requestId} are left to refund`,
        );
      default:
        throw new Error(`refund script answered ${status}`);
    }
    const reply: RefundReply = {
      duplicate: status === 'dup',
      recordId: recordIdOf(requestDigestOf, num(r[1]), W),
      count: num(r[2]),
      free: num(r[3]),
      paid: num(r[4]),
      amount: big(r[5]),
      available: big(r[6]),
    };
    if (status === 'ok') {
      reply.journaled = {
        ...change,
        count: str(r[2]),
        free: str(r[3]),
        paid: str(r[4]),
        amount: str(r[5]),
        freeReturned: str(r[7]),
        ...(r[8] ? { grants: JSON.parse(r[8]) as RefundChange['grants'] } : {}),
        // refund.created at least: never empty
        events: JSON.parse(r[9]) as ChangeEvent[],
      };
    }
    return reply;
  }

  async credit(a: CreditArgs): Promise<CreditReply> {
    const k = this.keys;
    const { change } = a;
    const id = journalId(change);
    const r = await this.withAccount(change.userId, a.now, () =>
      this.redis.creditScript(
        k.account(change.userId),
        k.applied(change.userId, id),
        k.pending(change.userId),
        k.journalIndex(change.userId),
        k.activityIndex(change.userId),
        a.amount.toString(),
        id,
        JSON.stringify(change),
        a.markerTtlMs,
        a.maxBalance.toString(),
        a.refuseOverdraw ? '1' : '0',
        change.userId,
        a.now.getTime(),
      ),
    );
    const balance = big(r[1]);
    switch (r[0]) {
      case 'ok':
        return { applied: true, balance, events: r[3] ? (JSON.parse(r[3]) as ChangeEvent[]) : undefined };
      case 'dup':
        if (r[2] !== a.amount.toString()) {
          const first = formatMoney(big(r[2]));
          throw new AppError(
            'REQUEST_ID_REUSED',
            `${change.kind} ${change.id} was applied before with amount ${first}`,
          );
        }
        return { applied: false, balance, events: r[3] ? (JSON.parse(r[3]) as ChangeEvent[]) : undefined };
      case 'no_balance':
        throw new AppError(
          'INSUFFICIENT_BALANCE',
          `balance ${formatMoney(balance)} cannot cover ${formatMoney(-a.amount)}`,
        );
      case 'too_large':
        throw new AppError('VALIDATION_FAILED', 'the balance would exceed the largest amount the service holds', [
          { field: 'amount', message: 'too large' },
        ]);
      default:
        throw new Error(`credit script answered ${r[0]}`);
    }
  }

  /** Adds a credit grant to a loaded account (loading it first), idempotent by grant id. */
  async createGrant(a: CreateGrantArgs): Promise<CreateGrantReply> {
    const k = this.keys;
    const { change } = a;
    const field = journalId(change);
    const r = await this.withAccount(change.userId, a.now, () =>
      this.redis.createGrantScript(
        k.account(change.userId),
        k.applied(change.userId, field),
        k.pending(change.userId),
        k.journalIndex(change.userId),
        k.activityIndex(change.userId),
        change.id,
        change.amount,
        change.priority,
        change.expiresAt === '' ? '' : Date.parse(change.expiresAt),
        change.category,
        JSON.stringify(change),
        field,
        a.markerTtlMs,
        a.fingerprint,
        change.userId,
        a.now.getTime(),
        a.maxGrants,
        MAX_MICROS.toString(),
      ),
    );
    switch (r[0]) {
      case 'ok':
      case 'dup':
        return {
          duplicate: r[0] === 'dup',
          available: big(r[1]),
          journaled:
            r[0] === 'ok' ? { ...change, ...(r[2] ? { events: JSON.parse(r[2]) as ChangeEvent[] } : {}) } : undefined,
        };
      case 'reused':
        throw new AppError('REQUEST_ID_REUSED', `grant_id ${change.id} was used before with a different payload`);
      case 'too_many':
        throw new AppError('VALIDATION_FAILED', `a user holds at most ${a.maxGrants} grants`, [
          { field: 'grant_id', message: 'too many grants for this user' },
        ]);
      case 'too_large':
        throw new AppError('VALIDATION_FAILED', 'balance and grants together would exceed the largest amount held', [
          { field: 'amount', message: 'too large' },
        ]);
      default:
        throw new Error(`create-grant script answered ${r[0]}`);
    }
  }

  /**
   * Ends the user's grants past their expiry ('expire'), or voids one ('void'). Returns what ended now
   * (each one journaled change) and the status: 'held' when a voided grant waits for its holds.
   */
  async endGrants(a: EndGrantsArgs): Promise<EndGrantsReply> {
    const k = this.keys;
    const r = await this.withAccount(a.userId, a.now, () =>
      this.redis.endGrantsScript(
        k.account(a.userId),
        k.pending(a.userId),
        k.journalIndex(a.userId),
        k.activityIndex(a.userId),
        // 'expire' reads no marker; the key only keeps the call within the user's slot.
        k.applied(a.userId, journalId({ kind: 'grant', id: a.grantId ?? '' })),
        a.mode,
        a.grantId ?? '',
        a.now.getTime(),
        a.now.toISOString(),
        a.userId,
      ),
    );
    const ended = r.slice(2).map((json) => JSON.parse(json) as GrantEndChange | EventsChange);
    return { status: str(r[0]) as EndGrantsReply['status'], voided: big(r[1]), ended };
  }

  /** Sets account settings (price overrides, limits; '' removes). false: not in Redis (loads read MySQL). */
  async setAccountFields(userId: string, fields: [field: string, value: string][], now: Date): Promise<boolean> {
    const k = this.keys;
    const set = await this.redis.setAccountFieldsScript(
      k.account(userId),
      k.activityIndex(userId),
      userId,
      now.getTime(),
      ...fields.flat(),
    );
    return set === 1;
  }

  /** Sets the alert thresholds of a loaded account; false if it is not in Redis (its load reads them). */
  async setAlerts(userId: string, balanceLow: bigint, quotaLowPercent: number): Promise<boolean> {
    return (await this.redis.setAlertsScript(this.keys.account(userId), balanceLow.toString(), quotaLowPercent)) === 1;
  }

  /** true if this call loaded the account, false if it was already there. */
  async initAccount(a: InitAccountArgs): Promise<boolean> {
    const k = this.keys;
    const loaded = await this.redis.initAccountScript(
      k.account(a.userId),
      k.quota(a.userId, a.period),
      a.balance,
      a.overdraftLimit,
      a.quotaExpiresAt,
      a.ttlMs,
      a.accountFields.length,
      ...a.accountFields.flat(),
      ...a.used.flat(),
      ...a.spent.flat(),
    );
    return loaded === 1;
  }

  async accountSnapshot(userId: string): Promise<AccountSnapshot> {
    const k = this.keys;
    const r = await this.redis.accountSnapshotScript(
      k.account(userId),
      k.pending(userId),
      k.holds(userId),
      k.deadLetters(userId),
    );
    return { exists: r[0] === '1', version: str(r[1]), balance: str(r[2]), pending: num(r[3]), openHolds: num(r[4]) };
  }

  async repairAccount(a: RepairArgs): Promise<RepairReply> {
    const k = this.keys;
    const r = await this.redis.repairAccountScript(
      k.account(a.userId),
      k.quota(a.userId, a.period),
      k.pending(a.userId),
      k.holds(a.userId),
      k.deadLetters(a.userId),
      a.version,
      a.balance,
      a.quotaExpiresAt,
      a.grants,
      ...a.used.flat(),
    );
    if (r[0] === 'changed') return null;
    const repairs: Repair[] = [];
    for (let i = 1; i + 2 < r.length; i += 3)
      repairs.push({ field: str(r[i]), before: str(r[i + 1]), after: str(r[i + 2]) });
    return repairs;
  }

  /** Moves a journal entry to the user's dead letters, with the error. false: it was no longer there. */
  async parkChange(a: { userId: string; field: string; error: string; at: Date }): Promise<boolean> {
    const k = this.keys;
    const moved = await this.redis.parkChangeScript(
      k.pending(a.userId),
      k.deadLetters(a.userId),
      k.journalIndex(a.userId),
      a.field,
      JSON.stringify(a.error.slice(0, 500)),
      a.at.toISOString(),
      a.userId,
    );
    return moved === 1;
  }

  /** Puts a dead letter back into the journal. Returns its change JSON (null if none) and how many are left. */
  async unparkChange(userId: string, field: string, now: Date): Promise<{ change: string | null; left: number }> {
    const k = this.keys;
    const [change, left] = await this.redis.unparkChangeScript(
      k.pending(userId),
      k.deadLetters(userId),
      k.journalIndex(userId),
      field,
      userId,
      now.getTime(),
    );
    return { change: change || null, left: Number(left) };
  }

  /**
   * Removes persisted changes from their users' journals (and each user left with none from the journal
   * index): one script call per journal index, so on one Redis server one call in all, on a Redis
   * Cluster one per hash slot the users' keys share. Returns how many were removed.
   */
  async ackChangesOfUsers(fieldsByUser: ReadonlyMap<string, readonly string[]>): Promise<number> {
    const k = this.keys;
    const byIndex = new Map<string, { pendings: string[]; args: (string | number)[] }>();
    for (const [userId, fields] of fieldsByUser) {
      if (fields.length === 0) continue;
      const index = k.journalIndex(userId);
      let group = byIndex.get(index);
      if (!group) byIndex.set(index, (group = { pendings: [], args: [] }));
      group.pendings.push(k.pending(userId));
      group.args.push(userId, fields.length, ...fields);
    }
    const removed = await Promise.all(
      [...byIndex].map(([index, g]) =>
        this.redis.ackUserChangesScript(1 + g.pendings.length, index, ...g.pendings, ...g.args),
      ),
    );
    return removed.reduce((a, b) => a + Number(b), 0);
  }

  /**
   * Removes an account idle since before `idleBefore` from Redis, if nothing of it is in flight.
   * `periods`: the current month and the one before (their quota hashes go with it).
   */
  async evictAccount(a: { userId: string; idleBefore: number; period: string; previousPeriod: string }) {
    const k = this.keys;
    const outcome = await this.redis.evictAccountScript(
      k.account(a.userId),
      k.quota(a.userId, a.period),
      k.quota(a.userId, a.previousPeriod),
      k.pending(a.userId),
      k.deadLetters(a.userId),
      k.holds(a.userId),
      k.activityIndex(a.userId),
      a.userId,
      a.idleBefore,
    );
    return outcome as 'evicted' | 'active' | 'busy' | 'gone';
  }
}
