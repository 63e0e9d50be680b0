import { readdirSync, readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import type { RedisClient } from './connection.js';
import type { RedisKeys } from './keys.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';
import { journalId, type CreditChange, type DeductionChange, type LedgerChange } from '../lib/ledger-change.js';
import type { ChangeEvent } from '../lib/events.js';
import type { Metrics } from '../lib/metrics.js';
import { payloadPrint, recordIdOf, requestDigest, requestPlace } from './idempotency.js';

/*
 * The one boundary between TypeScript and the Lua scripts in ./commands, after BullMQ's `Scripts`
 * class: each method owns its script's key order and argument order, takes named fields, returns
 * named reply fields, and turns a refusal into the AppError callers see. Services never build a
 * script call or read a reply by position.
 *
 * Every src/redis/commands/<name>-<numKeys>.lua is loaded once as an ioredis custom command named
 * <name>Script (EVALSHA, falling back to EVAL after a Redis restart). A line
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

export function defineScripts(redis: RedisClient): void {
  for (const file of readdirSync(commandsDir)) {
    const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
    if (!m) continue;
    const name = m[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) + 'Script';
    const lua = withIncludes(readFileSync(new URL(file, commandsDir), 'utf8'));
    redis.defineCommand(name, { numberOfKeys: Number(m[2]), lua });
  }
}

type Arg = string | number | Buffer;

// Positional on purpose: only the Scripts class below calls these.
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
    ackChangesScript(pending: string, journalIndex: string, user: string, ...fields: string[]): Result<number, Context>;
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

/** Loads a user's account from MySQL into Redis (the scripts answer 'init' until it is there). */
export interface AccountLoader {
  load(userId: string, now: Date): Promise<void>;
}

/** free calls used this month per service: [service name, used] */
export type QuotaUse = [service: string, used: string][];

export interface CheckArgs {
  userId: string;
  period: string;
  service: PricedService;
  count: number;
  now: Date;
}

export interface CheckReply {
  allowed: boolean;
  reason: 'free' | 'balance' | 'insufficient_balance' | 'insufficient_quota';
  freeLeft: number;
  available: bigint;
}

export interface DeductArgs extends CheckArgs {
  requestId: string;
  /** the change to journal; its id (the record id) is made here, the script adds free, paid and amount */
  change: Omit<DeductionChange, 'id' | 'free' | 'paid' | 'amount'>;
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
  /** alert thresholds and alarms derived from the loaded state (includes/alerts.lua) */
  accountFields: [string, string][];
  /** free calls used per service, and the quota alarms ('!al:<service>') */
  used: QuotaUse;
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
  used: QuotaUse;
}

export interface Repair {
  field: string;
  before: string;
  after: string;
}

/** null: the account changed since the snapshot or has changes in flight, so nothing was set. */
export type RepairReply = Repair[] | null;

type Op = 'check' | 'deduct' | 'reserve' | 'commit' | 'release' | 'expire';

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
    const change = { ...a.change, id: recordIdOf(digest, place.window, windowMs) };
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
        change.id,
        JSON.stringify(change),
        windowMs,
        a.quotaExpiresAt,
        a.userId,
        a.now.getTime(),
        payloadPrint(`${s.name}|${a.count}`),
        (place.window + 2) * windowMs,
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
    const journaled: DeductionChange = { ...change, free: str(r[2]), paid: str(r[3]), amount: str(r[4]) };
    if (r[6]) journaled.events = JSON.parse(r[6]) as ChangeEvent[];
    return { ...reply, recordId: change.id, journaled };
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

  /** Removes persisted changes from a user's journal (and the user from the journal index once empty). */
  async ackChanges(userId: string, fields: string[]): Promise<number> {
    if (fields.length === 0) return 0;
    const k = this.keys;
    return this.redis.ackChangesScript(k.pending(userId), k.journalIndex(userId), userId, ...fields);
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
