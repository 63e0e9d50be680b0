/**
 * Reference model of the money engine, written from SPEC sections 4–8 and 10 (not from the Lua):
 * plain TypeScript, no I/O, deterministic. Each operation returns the answer the service must give
 * (the fields the SPEC fixes) or the SPEC error code, and changes the state as the SPEC says.
 *
 * What the SPEC leaves open is decided here the way a careful user would expect, and marked "choice":
 * the runner reports a difference on those as a model/service disagreement to be settled, not a bug.
 *
 * The money features of SPEC 14 (credit grants, refunds, spending limits, per-user prices) are modelled
 * from the SPEC and the README's rules for them ("Credit grants, spending limits, per-user prices",
 * "Refunds"): `quote()` reads the user's price and limits and the grants spendable at a time; deducts
 * take from grants in spending order before the balance, holds hold from the grants that outlive them.
 *
 * Events (SPEC 13, docs/events.md "Alarm state"): each change records the events it fires in its
 * account's `events`, and the alarms that make each fire once per crossing (`alarms`). The balance
 * alarms compare the available balance (grants spendable now included) with the user's threshold.
 */
import { DateTime } from 'luxon';

export const MICROS = 1_000_000n;

export interface ModelService {
  name: string;
  freeQuota: number;
  /** micro-units per call; null: free-only */
  unitPrice: bigint | null;
}

export interface ModelConfig {
  services: ModelService[];
  zone: string;
  idempotencyWindowMs: number;
  maxCallsPerRequest: number;
  /** `alerts.balance_low_threshold` (micro-units) and `alerts.quota_low_percent`: the defaults */
  alertDefaults: { balanceLow: bigint; quotaLowPercent: number };
}

/** An event as `GET /admin/v1/events` lists it: its type and data (amounts as decimal strings). */
export interface ModelEvent {
  type: string;
  data: Record<string, string>;
}

/**
 * The alarms of SPEC 13, as docs/events.md keeps them: the balance alarm `new` (never at or above the
 * threshold: nothing fell below it), `armed` or `low`; `depletedAt` the available balance at which
 * balance.depleted fired (null: armed; a new account counts as depleted at 0); the quota alarms by
 * month then service: 1 after quota.low, 2 after quota.exhausted.
 */
export interface ModelAlarms {
  balance: 'new' | 'armed' | 'low';
  depletedAt: bigint | null;
  quota: Map<string, Map<string, number>>;
}

/** An answer: either success with the SPEC's fields, or an error code of SPEC section 8. */
export type Answer = { ok: Record<string, unknown> } | { code: number };

interface Memo {
  payload: string;
  at: number;
  answer: Record<string, unknown>;
}

export interface ModelHold {
  service: string;
  count: number;
  free: number;
  paid: number;
  amount: bigint;
  unitPrice: bigint;
  /** the month the free part was taken from: what is not used returns there */
  period: string;
  /** the business day (DD) its spending counts in (spending limits) */
  day: string;
  /** what it holds of each grant, in spending order, then of the balance */
  grantParts: [string, bigint][];
  balancePart: bigint;
  expiresAt: number;
  state: 'held' | 'committed' | 'released' | 'expired';
  commit?: { count: number; answer: Record<string, unknown> };
  release?: Record<string, unknown>;
}

/** One charged call as the records show it (SPEC 5): type free, balance or mixed. */
export interface ModelRecord {
  requestId: string;
  service: string;
  type: 'free' | 'balance' | 'mixed';
  count: number;
  free: number;
  paid: number;
  amount: bigint;
  /** the model clock when the call was charged (the deduct, the commit): the record's `createdAt` */
  at: number;
}

/** Spending order (SPEC 14): priority (lower first), earliest expiry (none last), oldest, then id. */
function spendingOrder(a: ModelGrant, b: ModelGrant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt ?? Infinity;
  const eb = b.expiresAt ?? Infinity;
  if (ea !== eb) return ea < eb ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function record(
  requestId: string,
  service: string,
  free: number,
  paid: number,
  amount: bigint,
  at: number,
): ModelRecord {
  return {
    requestId,
    service,
    type: paid === 0 ? 'free' : free === 0 ? 'balance' : 'mixed',
    count: free + paid,
    free,
    paid,
    amount,
    at,
  };
}

export interface ModelAccount {
  /** the balance (what MySQL and Redis `bal` hold): holds are not taken from it until committed */
  balance: bigint;
  /** the amount held by open reservations */
  held: bigint;
  /** free calls used, by month (YYYYMM) then service */
  used: Map<string, Map<string, number>>;
  /** request ids (deduct and reserve share one space per user; choice) within the window */
  requests: Map<string, Memo>;
  /** reservations by the request id that made them */
  holds: Map<string, ModelHold>;
  /** operator adjustments by idempotency key: the amount first applied */
  adjustments: Map<string, bigint>;
  /** consumption records: accepted deductions and commits */
  records: ModelRecord[];
  /** whether anything lasting was written for this user (SPEC 10.5: read-only calls write nothing) */
  written: boolean;
  /** credit grants, in the order given (spending order is computed), ended ones included */
  grants: ModelGrant[];
  /** spending limits (micro-units), null: none */
  limits: { daily: bigint | null; monthly: bigint | null };
  /** amounts spent, by month then 'm' (the month) or a business day 'DD' (spending limits) */
  spent: Map<string, Map<string, bigint>>;
  /** per-user prices by service: null parts are the catalogue's */
  prices: Map<string, { freeQuota: number | null; unitPrice: bigint | null }>;
  /** what refunds need of each accepted deduct, by request id */
  deducts: Map<string, ModelDeduct>;
  /** refund ids: the payload and first answer */
  refunds: Map<string, Memo>;
  alarms: ModelAlarms;
  /** the events fired, in order */
  events: ModelEvent[];
}

export interface ModelGrant {
  id: string;
  payload: string;
  category: 'promotional' | 'paid';
  priority: number;
  amount: bigint;
  rem: bigint;
  /** the part of rem that open holds hold */
  held: bigint;
  /** unix ms, null: never */
  expiresAt: number | null;
  createdAt: number;
  voided: boolean;
  /** ended: its remainder left (expired or voided); it is no longer spendable nor refundable to */
  ended: 'expired' | 'voided' | null;
  answer: Record<string, unknown>;
}

/** An accepted deduct as a refund sees it. */
export interface ModelDeduct {
  service: string;
  free: number;
  paid: number;
  amount: bigint;
  period: string;
  /** what each grant paid, in spending order (the balance paid the rest) */
  grantParts: [string, bigint][];
  refundedFree: number;
  refundedPaid: number;
  refundedAmount: bigint;
}

export interface ModelOrder {
  userId: string;
  amount: bigint;
  status: 'pending' | 'paid' | 'failed' | 'closed';
  paymentId: string | null;
  flagged: boolean;
  /** the payment at the payment service (what GetPayment says); null: none (CreatePayment failed) */
  payment: PaymentStatus | null;
  /** recharge.failed fired (once per order) */
  failedFired: boolean;
}

export type PaymentStatus = 'PENDING' | 'SUCCESS' | 'FAILED' | 'CLOSED';

export interface ModelState {
  now: number;
  accounts: Map<string, ModelAccount>;
  orders: Map<string, ModelOrder>;
  /** alert settings by user (null: the default); kept apart from accounts: setting them writes no account */
  alerts: Map<string, { balanceLow: bigint | null; quotaLowPercent: number | null }>;
}

function newOrder(userId: string, amount: bigint): ModelOrder {
  return { userId, amount, status: 'pending', paymentId: null, flagged: false, payment: null, failedFired: false };
}

function emptyAccount(): ModelAccount {
  return {
    balance: 0n,
    held: 0n,
    used: new Map(),
    requests: new Map(),
    holds: new Map(),
    adjustments: new Map(),
    records: [],
    written: false,
    grants: [],
    limits: { daily: null, monthly: null },
    spent: new Map(),
    prices: new Map(),
    deducts: new Map(),
    refunds: new Map(),
    alarms: { balance: 'new', depletedAt: 0n, quota: new Map() },
    events: [],
  };
}

/** Micro-units of a decimal amount as sent ("1.5", "0.000001"), null if it is not one (SPEC 2). */
export function parseMicros(text: string): bigint | null {
  const m = /^(-?)(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) return null;
  const v = BigInt(m[2]) * MICROS + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

/** "1.50", "0.001", "-2.00": at least 2 fractional digits, at most 6 (SPEC 2). */
export function formatMicros(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  let frac = (abs % MICROS).toString().padStart(6, '0');
  while (frac.length > 2 && frac.endsWith('0')) frac = frac.slice(0, -1);
  return `${neg ? '-' : ''}${abs / MICROS}.${frac}`;
}

export class BillingModel {
  state: ModelState;

  constructor(
    readonly config: ModelConfig,
    now: number,
  ) {
    this.state = { now, accounts: new Map(), orders: new Map(), alerts: new Map() };
  }

  /** A deep copy: the runner tries serial orders of a concurrent group on copies. */
  clone(): BillingModel {
    const copy = new BillingModel(this.config, this.state.now);
    copy.state = structuredClone(this.state);
    return copy;
  }

  // ---- calendar (business time zone, SPEC 2) ----

  period(at = this.state.now): string {
    return DateTime.fromMillis(at, { zone: this.config.zone }).toFormat('yyyyLL');
  }

  day(at = this.state.now): string {
    return DateTime.fromMillis(at, { zone: this.config.zone }).toISODate()!;
  }

  // ---- state helpers ----

  private service(name: string): ModelService {
    const s = this.config.services.find((x) => x.name === name);
    if (!s) throw new Error(`model: unknown service ${name}`);
    return s;
  }

  account(userId: string): ModelAccount {
    let a = this.state.accounts.get(userId);
    if (!a) {
      a = emptyAccount();
      this.state.accounts.set(userId, a);
    }
    return a;
  }

  usedOf(a: ModelAccount, period: string, service: string): number {
    return a.used.get(period)?.get(service) ?? 0;
  }

  private addUsed(a: ModelAccount, period: string, service: string, n: number): void {
    if (!a.used.has(period)) a.used.set(period, new Map());
    const m = a.used.get(period)!;
    m.set(service, (m.get(service) ?? 0) + n);
  }

  /** What the balance can still pay: the balance less what holds took of it (no overdraft: SPEC 7.3). */
  balanceLeft(a: ModelAccount): bigint {
    return a.balance - a.held;
  }

  /** The grants spendable at `at`: not voided, not ended, before their expiry; in spending order. */
  spendable(a: ModelAccount, at: number): ModelGrant[] {
    return a.grants
      .filter((g) => !g.ended && !g.voided && (g.expiresAt === null || at < g.expiresAt))
      .sort(spendingOrder);
  }

  /** Grants in spending order. */
  spendingOrderOf(grants: ModelGrant[]): ModelGrant[] {
    return [...grants].sort(spendingOrder);
  }

  /** The unheld remainder of the grants spendable at `at`. */
  grantsAvailable(a: ModelAccount, at: number): bigint {
    return this.spendable(a, at).reduce((sum, g) => sum + g.rem - g.held, 0n);
  }

  /** What the user may spend now, the `balance` of every answer (SPEC 14): balance − held + grants. */
  available(a: ModelAccount): bigint {
    return this.balanceLeft(a) + this.grantsAvailable(a, this.state.now);
  }

  /** A request id's first answer, if it is still inside the idempotency window (SPEC 10.2). */
  private memo(a: ModelAccount, requestId: string): Memo | undefined {
    const m = a.requests.get(requestId);
    if (m && this.state.now - m.at >= this.config.idempotencyWindowMs) {
      a.requests.delete(requestId);
      return undefined;
    }
    return m;
  }

  /** The free quota and unit price this user pays for a service: their own where set (SPEC 14). */
  priceOf(a: ModelAccount, serviceName: string): { freeQuota: number; unitPrice: bigint | null } {
    const svc = this.service(serviceName);
    const own = a.prices.get(serviceName);
    return { freeQuota: own?.freeQuota ?? svc.freeQuota, unitPrice: own?.unitPrice ?? svc.unitPrice };
  }

  spentOf(a: ModelAccount, period: string, key: string): bigint {
    return a.spent.get(period)?.get(key) ?? 0n;
  }

  private addSpent(a: ModelAccount, period: string, day: string, amount: bigint): void {
    if (amount === 0n) return;
    if (!a.spent.has(period)) a.spent.set(period, new Map());
    const m = a.spent.get(period)!;
    m.set('m', (m.get('m') ?? 0n) + amount);
    m.set(day, (m.get(day) ?? 0n) + amount);
  }

  /** What the spending limits still allow today and this month (the smaller), or null without limits. */
  limitLeft(a: ModelAccount): bigint | null {
    const { daily, monthly } = a.limits;
    if (daily === null && monthly === null) return null;
    const period = this.period();
    const dayLeft = daily === null ? null : daily - this.spentOf(a, period, this.dayOfMonth());
    const monthLeft = monthly === null ? null : monthly - this.spentOf(a, period, 'm');
    const left = dayLeft === null ? monthLeft! : monthLeft === null || dayLeft < monthLeft ? dayLeft : monthLeft;
    return left < 0n ? 0n : left;
  }

  /** The business day of the month (DD): spending limits count per day within the month. */
  dayOfMonth(at = this.state.now): string {
    return DateTime.fromMillis(at, { zone: this.config.zone }).toFormat('dd');
  }

  /**
   * The price of `count` calls now (SPEC 3, 4, 14): the user's free quota of the month first, then
   * grants spendable at `grantsAt` (now for a deduct, the hold's expiry for a hold) and the balance.
   * 10002 for a free-only service past its quota, 10001 when grants and balance cannot cover it,
   * 10011 past a spending limit (checked after the balance: choice).
   */
  quote(a: ModelAccount, serviceName: string, count: number, grantsAt = this.state.now) {
    const price = this.priceOf(a, serviceName);
    const freeLeft = Math.max(0, price.freeQuota - this.usedOf(a, this.period(), serviceName));
    const free = Math.min(count, freeLeft);
    const paid = count - free;
    if (paid > 0 && price.unitPrice === null)
      return { refusal: 10002, free, paid, amount: 0n, freeLeft, unitPrice: 0n };
    const unitPrice = price.unitPrice ?? 0n;
    const amount = BigInt(paid) * unitPrice;
    const refusal =
      amount > this.balanceLeft(a) + this.grantsAvailable(a, grantsAt)
        ? 10001
        : paid > 0 && amount > (this.limitLeft(a) ?? amount)
          ? 10011
          : 0;
    return { refusal, free, paid, amount, freeLeft, unitPrice };
  }

  /** Takes `amount` from the grants spendable at `at`, in spending order; returns the parts and the rest. */
  private takeFromGrants(a: ModelAccount, amount: bigint, at: number, hold: boolean) {
    const parts: [string, bigint][] = [];
    let rest = amount;
    for (const g of this.spendable(a, at)) {
      if (rest <= 0n) break;
      const part = g.rem - g.held < rest ? g.rem - g.held : rest;
      if (part <= 0n) continue;
      if (hold) g.held += part;
      else g.rem -= part;
      rest -= part;
      parts.push([g.id, part]);
    }
    return { parts, rest };
  }

  private grant(a: ModelAccount, id: string): ModelGrant | undefined {
    return a.grants.find((g) => g.id === id);
  }

  /** An account nobody has written: what a read sees, without creating it. */
  private scratch(): ModelAccount {
    return emptyAccount();
  }

  // ---- events (SPEC 13; the alarm rules of docs/events.md) ----

  /** The user's thresholds: their own where set, else the configured defaults. */
  thresholdsOf(userId: string): { balanceLow: bigint; quotaLowPercent: number } {
    const own = this.state.alerts.get(userId);
    const d = this.config.alertDefaults;
    return { balanceLow: own?.balanceLow ?? d.balanceLow, quotaLowPercent: own?.quotaLowPercent ?? d.quotaLowPercent };
  }

  /**
   * After a change of the available balance: balance.low when it is below the threshold and the alarm
   * is armed; balance.recovered when it is back at or above it after a balance.low. A new account is
   * armed the first time it reaches the threshold (a first recharge fires nothing: docs' choice). More
   * available than when balance.depleted fired re-arms that.
   */
  private balanceAlarms(userId: string, a: ModelAccount): void {
    const available = this.available(a);
    const alarms = a.alarms;
    if (alarms.depletedAt !== null && available > alarms.depletedAt) alarms.depletedAt = null;
    const threshold = this.thresholdsOf(userId).balanceLow;
    const data = { available: formatMicros(available), threshold: formatMicros(threshold) };
    if (available < threshold) {
      if (alarms.balance === 'armed') {
        alarms.balance = 'low';
        a.events.push({ type: 'balance.low', data });
      }
      return;
    }
    if (alarms.balance === 'low') a.events.push({ type: 'balance.recovered', data });
    alarms.balance = 'armed';
  }

  /**
   * A call refused for balance (10001): balance.depleted, once until more is available than when it
   * fired (an account that never had money counts as depleted at 0: its refusals fire nothing).
   */
  private depleted(userId: string, serviceName: string, needed: bigint): void {
    const a = this.state.accounts.get(userId);
    if (!a || a.alarms.depletedAt !== null) return;
    const available = this.available(a);
    a.alarms.depletedAt = available;
    a.events.push({
      type: 'balance.depleted',
      data: { service: serviceName, needed: formatMicros(needed), available: formatMicros(available) },
    });
    a.written = true;
  }

  /**
   * After a call took from (or could have taken from) a service's free quota of a month: quota.low once
   * the user's percent of it is used, quota.exhausted once all of it is; each once per month (both at
   * once when one call crosses both: choice). A service without free quota has no quota alarms.
   */
  private quotaAlarms(userId: string, a: ModelAccount, serviceName: string, period: string): void {
    const freeQuota = this.priceOf(a, serviceName).freeQuota;
    if (freeQuota <= 0) return;
    const used = this.usedOf(a, period, serviceName);
    if (!a.alarms.quota.has(period)) a.alarms.quota.set(period, new Map());
    const states = a.alarms.quota.get(period)!;
    let state = states.get(serviceName) ?? 0;
    const data = { service: serviceName, used: String(used), freeQuota: String(freeQuota) };
    if (state < 1 && used * 100 >= freeQuota * this.thresholdsOf(userId).quotaLowPercent) {
      state = 1;
      a.events.push({ type: 'quota.low', data });
    }
    if (state < 2 && used >= freeQuota) {
      state = 2;
      a.events.push({ type: 'quota.exhausted', data });
    }
    states.set(serviceName, state);
  }

  /** Every event the model fired for a user, in order. */
  eventsOf(userId: string): ModelEvent[] {
    return this.state.accounts.get(userId)?.events ?? [];
  }

  // ---- operations ----

  /** POST /check: read-only (SPEC 4, 10.5). */
  check(userId: string, serviceName: string, count: number): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    if (count > this.config.maxCallsPerRequest) return { ok: { allowed: false, reason: 'too_many_calls' } };
    const q = this.quote(a, serviceName, count);
    const reason =
      q.refusal === 10002
        ? 'insufficient_quota'
        : q.refusal === 10001
          ? 'insufficient_balance'
          : q.refusal === 10011
            ? 'limit_reached'
            : q.paid > 0
              ? 'balance'
              : 'free';
    return {
      ok: { allowed: q.refusal === 0, reason, freeRemaining: q.freeLeft, balance: formatMicros(this.available(a)) },
    };
  }

  /**
   * This month's free calls used as `/account` shows them: at most the user's free quota (choice: calls
   * taken before a user's own lower quota was set show as the whole quota used, remaining 0).
   */
  usedShown(a: ModelAccount, serviceName: string): number {
    return Math.min(this.priceOf(a, serviceName).freeQuota, this.usedOf(a, this.period(), serviceName));
  }

  /**
   * GET /account (SPEC 4, 14): the available balance, the amount held (of the balance and of grants),
   * this month's free calls used, the spendable grants in spending order with their unheld remainder.
   */
  viewAccount(userId: string, heldOfVoided = true): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const used = this.config.services.map((s) => `${s.name}:${this.usedShown(a, s.name)}`).join(',');
    // Every open hold counts, also one on a voided grant (the service leaves that out: found, open).
    const live = a.grants.filter((g) => !g.ended && (heldOfVoided || !g.voided));
    const held = a.held + live.reduce((sum, g) => sum + g.held, 0n);
    const grants = this.spendable(a, this.state.now)
      .map((g) => `${g.id}:${formatMicros(g.rem - g.held)}`)
      .join(',');
    return { ok: { balance: formatMicros(this.available(a)), heldAmount: formatMicros(held), used, grants } };
  }

  /** POST /deduct (SPEC 4): atomic, idempotent by request_id, refused → nothing changes. */
  deduct(userId: string, requestId: string, serviceName: string, count: number): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `deduct|${serviceName}|${count}`;
    const m = this.memo(a, requestId);
    if (m) return m.payload === payload ? { ok: { ...m.answer, duplicate: true } } : { code: 10007 };
    const q = this.quote(a, serviceName, count);
    if (q.refusal) {
      if (q.refusal === 10001) this.depleted(userId, serviceName, q.amount);
      return { code: q.refusal };
    }
    const acct = this.account(userId);
    const period = this.period();
    this.addUsed(acct, period, serviceName, q.free);
    const { parts, rest } = this.takeFromGrants(acct, q.amount, this.state.now, false);
    acct.balance -= rest;
    this.addSpent(acct, period, this.dayOfMonth(), q.amount);
    acct.records.push(record(requestId, serviceName, q.free, q.paid, q.amount, this.state.now));
    acct.deducts.set(requestId, {
      service: serviceName,
      free: q.free,
      paid: q.paid,
      amount: q.amount,
      period,
      grantParts: parts,
      refundedFree: 0,
      refundedPaid: 0,
      refundedAmount: 0n,
    });
    acct.written = true;
    this.balanceAlarms(userId, acct);
    this.quotaAlarms(userId, acct, serviceName, period);
    const answer = {
      success: true,
      requestId,
      freeCount: q.free,
      paidCount: q.paid,
      amount: formatMicros(q.amount),
      balance: formatMicros(this.available(acct)),
    };
    acct.requests.set(requestId, { payload, at: this.state.now, answer });
    return { ok: { ...answer, duplicate: false } };
  }

  /**
   * POST /reservations (SPEC 4, 14): holds free quota, then from the grants that outlive the hold, then
   * the balance; counts as spent (limits) when made. Same request-id space as deduct (choice).
   */
  reserve(userId: string, requestId: string, serviceName: string, count: number, ttlSeconds: number): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `reserve|${serviceName}|${count}|${ttlSeconds}`;
    const m = this.memo(a, requestId);
    if (m) return m.payload === payload ? { ok: { ...m.answer, duplicate: true } } : { code: 10007 };
    const expiresAt = this.state.now + ttlSeconds * 1000;
    const q = this.quote(a, serviceName, count, expiresAt);
    if (q.refusal) {
      if (q.refusal === 10001) this.depleted(userId, serviceName, q.amount);
      return { code: q.refusal };
    }
    const acct = this.account(userId);
    const period = this.period();
    const day = this.dayOfMonth();
    this.addUsed(acct, period, serviceName, q.free);
    const { parts, rest } = this.takeFromGrants(acct, q.amount, expiresAt, true);
    acct.held += rest;
    this.addSpent(acct, period, day, q.amount);
    acct.written = true;
    acct.holds.set(requestId, {
      service: serviceName,
      count,
      free: q.free,
      paid: q.paid,
      amount: q.amount,
      unitPrice: q.unitPrice,
      period,
      day,
      grantParts: parts,
      balancePart: rest,
      expiresAt,
      state: 'held',
    });
    this.balanceAlarms(userId, acct);
    this.quotaAlarms(userId, acct, serviceName, period);
    const answer = {
      requestId,
      status: 'held',
      expiresAt: new Date(expiresAt).toISOString(),
      freeCount: q.free,
      paidCount: q.paid,
      heldAmount: formatMicros(q.amount),
      balance: formatMicros(this.available(acct)),
    };
    acct.requests.set(requestId, { payload, at: this.state.now, answer });
    return { ok: { ...answer, duplicate: false } };
  }

  /**
   * POST /reservations/{id}/commit (SPEC 4): charges `count` ≤ held, free part first, from the held
   * parts in the order they were held (grants, then the balance), and returns the rest (unused free
   * calls to the month they were taken from: choice; unused spending to the day it counted in).
   * Idempotent: the same count again is the first answer; another count is 10007 (choice, as deduct).
   * Not found, released, expired or past its time: 10008. More than held: 40000.
   */
  commit(userId: string, requestId: string | null, count: number): Answer {
    const a = this.state.accounts.get(userId);
    const h = requestId === null ? undefined : a?.holds.get(requestId);
    if (!a || !h) return { code: 10008 };
    if (h.state === 'committed') {
      if (h.commit!.count !== count) return { code: 10007 };
      // The first answer, except the balance: the service answers a repeated commit with the balance
      // of now (a deduct repeats its first balance); SPEC 4 fixes neither (reported, left open).
      const { balance: _now, ...first } = h.commit!.answer;
      return { ok: { ...first, duplicate: true } };
    }
    if (h.state !== 'held' || this.state.now >= h.expiresAt) return { code: 10008 };
    if (count > h.count) return { code: 40000 };
    const free = Math.min(count, h.free);
    const paid = count - free;
    const amount = BigInt(paid) * h.unitPrice;
    this.addUsed(a, h.period, h.service, free - h.free);
    let rest = amount;
    for (const [id, part] of h.grantParts) {
      const take = part < rest ? part : rest;
      const g = this.grant(a, id)!;
      g.held -= part;
      g.rem -= take;
      rest -= take;
    }
    a.held -= h.balancePart;
    a.balance -= rest;
    this.addSpent(a, h.period, h.day, amount - h.amount);
    // A commit of 0 calls is a release by another name: no call, no record (choice).
    if (count > 0) a.records.push(record(requestId!, h.service, free, paid, amount, this.state.now));
    h.state = 'committed';
    this.balanceAlarms(userId, a);
    const answer = {
      status: 'committed',
      count,
      freeCount: free,
      paidCount: paid,
      amount: formatMicros(amount),
      releasedAmount: formatMicros(h.amount - amount),
      balance: formatMicros(this.available(a)),
    };
    h.commit = { count, answer };
    return { ok: { ...answer, duplicate: false } };
  }

  /** POST /reservations/{id}/release (SPEC 4): returns all of it, once; a repeat is a duplicate. */
  release(userId: string, requestId: string | null): Answer {
    const a = this.state.accounts.get(userId);
    const h = requestId === null ? undefined : a?.holds.get(requestId);
    if (!a || !h) return { code: 10008 };
    if (h.state === 'released') return { ok: { status: 'released', duplicate: true } };
    if (h.state !== 'held' || this.state.now >= h.expiresAt) return { code: 10008 };
    this.returnHold(a, h);
    h.state = 'released';
    this.balanceAlarms(userId, a);
    return {
      ok: {
        status: 'released',
        releasedAmount: formatMicros(h.amount),
        balance: formatMicros(this.available(a)),
        duplicate: false,
      },
    };
  }

  /** A hold given back whole: free calls to their month, grant parts and the balance part, its spending. */
  private returnHold(a: ModelAccount, h: ModelHold): void {
    this.addUsed(a, h.period, h.service, -h.free);
    for (const [id, part] of h.grantParts) this.grant(a, id)!.held -= part;
    a.held -= h.balancePart;
    this.addSpent(a, h.period, h.day, -h.amount);
  }

  /** The clock moves on; holds past their time are released by themselves, then grants end (the sweeps). */
  advance(ms: number): number {
    this.state.now += ms;
    const holds = this.expireDue();
    this.expireGrants();
    return holds;
  }

  expireDue(): number {
    let n = 0;
    for (const [userId, a] of this.state.accounts) {
      // The sweep takes them in the order they expire (ties: by request id, as code units compare).
      const due = [...a.holds.entries()]
        .filter(([, h]) => h.state === 'held' && h.expiresAt <= this.state.now)
        .sort(([rx, x], [ry, y]) => x.expiresAt - y.expiresAt || (rx < ry ? -1 : rx > ry ? 1 : 0));
      for (const [requestId, h] of due) {
        this.returnHold(a, h);
        h.state = 'expired';
        this.balanceAlarms(userId, a);
        a.events.push({
          type: 'reservation.expired',
          data: { reservationId: requestId, service: h.service, released: formatMicros(h.amount) },
        });
        n++;
      }
    }
    return n;
  }

  /**
   * The expiry job (SPEC 14): ends every grant past its expiry or voided whose holds are gone; what is
   * left of it leaves. A grant some hold holds part of waits (the hold may still be committed).
   */
  expireGrants(): void {
    for (const [userId, a] of this.state.accounts) this.endDue(userId, a);
  }

  /** Ends what is due: grant.expired for each (with what it took away), then the balance alarms once. */
  private endDue(userId: string, a: ModelAccount): ModelGrant[] {
    const ended: ModelGrant[] = [];
    for (const g of a.grants) {
      if (g.ended || g.held > 0n) continue;
      if (g.voided || (g.expiresAt !== null && g.expiresAt <= this.state.now)) {
        g.ended = g.voided ? 'voided' : 'expired';
        a.events.push({ type: 'grant.expired', data: { grantId: g.id, remaining: formatMicros(g.rem), how: g.ended } });
        g.rem = 0n;
        ended.push(g);
      }
    }
    if (ended.length > 0) this.balanceAlarms(userId, a);
    return ended;
  }

  /**
   * POST /admin/v1/accounts/{user}/grants: idempotent by grant id (the same payload answers the first
   * answer, another 10007). `amount` is the decimal string sent. An expiry not in the future is 40000,
   * also for a replay (choice: validation comes first, as for every request).
   */
  createGrant(
    userId: string,
    id: string,
    amountText: string,
    category: 'promotional' | 'paid',
    priority: number,
    expiresAt: number | null,
  ): Answer {
    const amount = parseMicros(amountText);
    if (
      !/^[A-Za-z0-9_.:@-]{1,64}$/.test(id) ||
      amount === null ||
      amount <= 0n ||
      !Number.isInteger(priority) ||
      priority < 0 ||
      priority > 1000 ||
      (expiresAt !== null && expiresAt <= this.state.now)
    )
      return { code: 40000 };
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `${amount}|${category}|${priority}|${expiresAt ?? ''}`;
    const first = this.grant(a, id);
    if (first) return first.payload === payload ? { ok: { ...first.answer, duplicate: true } } : { code: 10007 };
    const acct = this.account(userId);
    const answer = {
      grantId: id,
      category,
      priority,
      amount: formatMicros(amount),
      remaining: formatMicros(amount),
      expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
      status: 'active',
    };
    acct.grants.push({
      id,
      payload,
      category,
      priority,
      amount,
      rem: amount,
      held: 0n,
      expiresAt,
      createdAt: this.state.now,
      voided: false,
      ended: null,
      answer,
    });
    acct.written = true;
    this.balanceAlarms(userId, acct);
    return { ok: { ...answer, duplicate: false } };
  }

  /**
   * POST .../grants/{id}/void: nothing new spends it; its unheld remainder leaves now, or once the holds
   * on it end (`pending`). Unknown: 40400. An ended grant: nothing voided.
   */
  voidGrant(userId: string, id: string): Answer {
    // An empty id leaves the path `.../grants//void`: no such route.
    if (id === '') return { code: 40400 };
    if (!/^[A-Za-z0-9_.:@-]{1,64}$/.test(id)) return { code: 40000 };
    const a = this.state.accounts.get(userId);
    const g = a ? this.grant(a, id) : undefined;
    if (!a || !g) return { code: 40400 };
    if (g.ended) return { ok: { grantId: id, voided: '0.00', pending: false } };
    const left = g.rem;
    g.voided = true;
    const pending = g.held > 0n;
    // Its unheld part leaves now, so the balance alarms are checked now; a void that waits for holds
    // fires its grant.expired when the expiry job ends it (docs/events.md).
    const endedNow = this.endDue(userId, a).includes(g);
    if (!endedNow) this.balanceAlarms(userId, a);
    return { ok: { grantId: id, voided: formatMicros(endedNow ? left : g.rem - g.held), pending } };
  }

  /**
   * POST /internal/v1/billing/refunds (SPEC 14): calls of a deduct back, paid ones first; the money to
   * the balance first, then to the grants that paid, last one first (an ended grant forfeits its part);
   * free calls to the quota of their month if it is still the current one. Idempotent by refund id
   * (same request id and count: the first answer; else 10010); never more calls than charged (10010);
   * unknown request ids, reservations' and other users' 10010. Spending is not given back.
   */
  refund(userId: string, refundId: string, requestId: string, count: number | null): Answer {
    if (count !== null && (count < 1 || count > this.config.maxCallsPerRequest)) return { code: 40000 };
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `${requestId}|${count ?? ''}`;
    const first = a.refunds.get(refundId);
    if (first && this.state.now - first.at < this.config.idempotencyWindowMs)
      return first.payload === payload ? { ok: { ...first.answer, duplicate: true } } : { code: 10010 };
    const d = a.deducts.get(requestId);
    if (!d || this.state.now - a.requests.get(requestId)!.at >= this.config.idempotencyWindowMs) return { code: 10010 };
    const leftPaid = d.paid - d.refundedPaid;
    const leftFree = d.free - d.refundedFree;
    const n = count ?? d.free + d.paid;
    if (n > leftPaid + leftFree) return { code: 10010 };
    const paid = Math.min(n, leftPaid);
    const free = n - paid;
    const amount = paid === leftPaid ? d.amount - d.refundedAmount : BigInt(paid) * (d.amount / BigInt(d.paid));
    // Sources in reverse of how the call paid: the balance (paid last), then its grants, last one first.
    const fromGrants = d.grantParts.reduce((sum, [, part]) => sum + part, 0n);
    const sources: [string | null, bigint][] = [[null, d.amount - fromGrants], ...[...d.grantParts].reverse()];
    let at = 0n;
    let forfeited = 0n;
    const from = d.refundedAmount;
    const to = d.refundedAmount + amount;
    for (const [id, part] of sources) {
      const lo = from > at ? from : at;
      const hi = to < at + part ? to : at + part;
      const slice = hi - lo;
      if (slice > 0n) {
        if (id === null) a.balance += slice;
        else {
          const g = this.grant(a, id)!;
          if (g.ended) forfeited += slice;
          else g.rem += slice;
        }
      }
      at += part;
    }
    if (free > 0 && d.period === this.period()) {
      const used = this.usedOf(a, d.period, d.service);
      this.addUsed(a, d.period, d.service, -Math.min(free, used));
    }
    d.refundedFree += free;
    d.refundedPaid += paid;
    d.refundedAmount += amount;
    const answer = {
      refundId,
      count: n,
      freeCount: free,
      paidCount: paid,
      amount: formatMicros(amount - forfeited),
      balance: formatMicros(this.available(a)),
    };
    a.refunds.set(refundId, { payload, at: this.state.now, answer });
    this.balanceAlarms(userId, a);
    a.events.push({
      type: 'refund.created',
      data: { refundId, requestId, count: String(n), amount: formatMicros(amount - forfeited) },
    });
    return { ok: { ...answer, duplicate: false } };
  }

  /** PUT /api/v1/billing/limits: undefined leaves a limit, null removes it. */
  setLimits(userId: string, daily: bigint | null | undefined, monthly: bigint | null | undefined): Answer {
    if ((daily ?? 0n) < 0n || (monthly ?? 0n) < 0n) return { code: 40000 };
    const a = this.account(userId);
    if (daily !== undefined) a.limits.daily = daily;
    if (monthly !== undefined) a.limits.monthly = monthly;
    a.written = true;
    const money = (v: bigint | null) => (v === null ? null : formatMicros(v));
    return {
      ok: {
        daily: money(a.limits.daily),
        monthly: money(a.limits.monthly),
        spentToday: formatMicros(this.spentOf(a, this.period(), this.dayOfMonth())),
        spentThisMonth: formatMicros(this.spentOf(a, this.period(), 'm')),
      },
    };
  }

  /** PUT /admin/v1/accounts/{user}/pricing/{service}: undefined leaves a part, null takes it back to the catalogue's. */
  setPricing(
    userId: string,
    serviceName: string,
    freeQuota: number | null | undefined,
    unitPrice: bigint | null | undefined,
  ): Answer {
    if ((freeQuota ?? 0) < 0 || (unitPrice ?? 0n) < 0n) return { code: 40000 };
    const a = this.account(userId);
    const own = a.prices.get(serviceName) ?? { freeQuota: null, unitPrice: null };
    const next = {
      freeQuota: freeQuota === undefined ? own.freeQuota : freeQuota,
      unitPrice: unitPrice === undefined ? own.unitPrice : unitPrice,
    };
    if (next.freeQuota === null && next.unitPrice === null) a.prices.delete(serviceName);
    else a.prices.set(serviceName, next);
    a.written = true;
    const price = this.priceOf(a, serviceName);
    return {
      ok: {
        serviceName,
        freeQuota: price.freeQuota,
        unitPrice: price.unitPrice === null ? null : formatMicros(price.unitPrice),
        overridden: a.prices.has(serviceName),
      },
    };
  }

  /**
   * PUT /api/v1/billing/alerts (SPEC 13): `balance_low` a decimal string (≥ 0, at most 6 decimals),
   * `quota_low_percent` an integer 1–100; left out (undefined) keeps a setting, null returns it to the
   * default. Anything else is 40000 and changes nothing. The alarms are left as they are: the new
   * thresholds count from the next change (docs: a balance already below a raised threshold fires
   * balance.low at the next change if the alarm was armed).
   */
  setAlerts(userId: string, balanceLow: unknown, quotaLowPercent: unknown): Answer {
    const micros = typeof balanceLow === 'string' ? parseMicros(balanceLow) : null;
    if (balanceLow !== undefined && balanceLow !== null && (micros === null || micros < 0n)) return { code: 40000 };
    if (
      quotaLowPercent !== undefined &&
      quotaLowPercent !== null &&
      !(Number.isInteger(quotaLowPercent) && (quotaLowPercent as number) >= 1 && (quotaLowPercent as number) <= 100)
    )
      return { code: 40000 };
    const own = this.state.alerts.get(userId) ?? { balanceLow: null, quotaLowPercent: null };
    if (balanceLow !== undefined) own.balanceLow = micros;
    if (quotaLowPercent !== undefined) own.quotaLowPercent = quotaLowPercent as number | null;
    this.state.alerts.set(userId, own);
    return this.getAlerts(userId);
  }

  /** GET /api/v1/billing/alerts (SPEC 13): the thresholds in force and which are the defaults. */
  getAlerts(userId: string): Answer {
    const own = this.state.alerts.get(userId);
    const t = this.thresholdsOf(userId);
    return {
      ok: {
        userId,
        balanceLow: formatMicros(t.balanceLow),
        quotaLowPercent: t.quotaLowPercent,
        defaults: { balanceLow: own?.balanceLow == null, quotaLowPercent: own?.quotaLowPercent == null },
      },
    };
  }

  /** POST /recharge (SPEC 5): a pending order; nothing moves until it is paid. */
  createOrder(orderKey: string, userId: string, amount: bigint): Answer {
    this.state.orders.set(orderKey, { ...newOrder(userId, amount), payment: 'PENDING' });
    return { ok: { status: 'pending', amount: formatMicros(amount), userId } };
  }

  /** POST /recharge while the payment service refuses CreatePayment: 10009, the order failed (SPEC 5). */
  createOrderFailing(orderKey: string, userId: string, amount: bigint): Answer {
    this.state.orders.set(orderKey, newOrder(userId, amount));
    this.endOrder(orderKey, 'failed');
    return { code: 10009 };
  }

  /** The payment service settles a pending payment (no callback yet): what GetPayment says from now on. */
  settlePayment(orderKey: string, status: Exclude<PaymentStatus, 'PENDING'>): void {
    const o = this.state.orders.get(orderKey)!;
    if (o.payment === 'PENDING') o.payment = status;
  }

  /**
   * POST /callback (SPEC 6), signed: unknown order 10003; amount different 10005 (flagged, not
   * credited); paid by this payment 200; paid by another 10004; a failed or closed payment ends an
   * unpaid order (choice: a closed order stays closed); otherwise success credits exactly once.
   */
  callback(orderKey: string, paymentId: string, amount: bigint, status: 'success' | 'failed' | 'closed'): Answer {
    const o = this.state.orders.get(orderKey);
    if (!o) return { code: 10003 };
    if (amount !== o.amount) {
      o.flagged = true;
      return { code: 10005 };
    }
    if (o.status === 'paid') return o.paymentId === paymentId ? { ok: {} } : { code: 10004 };
    if (status !== 'success') this.endOrder(orderKey, status);
    else this.credit(orderKey, paymentId);
    return { ok: {} };
  }

  /**
   * gRPC RechargeCallback (a hint, SPEC 11): nothing is taken from it but the order; GetPayment says
   * what happened. Unknown order 10003; paid: as a callback; no payment there or still pending: not
   * paid (success false); paid there: credited with that payment (`paidBy`, the payment service's id,
   * whatever the hint names); failed or closed there: the order ends.
   */
  hint(orderKey: string, paymentId: string, paidBy: string): Answer {
    const o = this.state.orders.get(orderKey);
    if (!o) return { code: 10003 };
    if (o.status === 'paid')
      return o.paymentId === paymentId ? { ok: { success: true, outcome: 'already_paid' } } : { code: 10004 };
    if (o.payment === null || o.payment === 'PENDING') return { ok: { success: false, outcome: 'not_paid' } };
    if (o.payment === 'SUCCESS') {
      this.credit(orderKey, paidBy);
      return { ok: { success: true, outcome: 'queued' } };
    }
    this.endOrder(orderKey, o.payment === 'FAILED' ? 'failed' : 'closed');
    return { ok: { success: true, outcome: 'closed' } };
  }

  /**
   * A reconciliation run's check of a pending order (GetPayment, as a hint does): whether it would
   * change anything (a payment settled at the payment service), and if `apply`, the change.
   */
  reconcileOrder(orderKey: string, paidBy: string, apply: boolean): boolean {
    const o = this.state.orders.get(orderKey)!;
    if (o.status !== 'pending' || o.payment === null || o.payment === 'PENDING') return false;
    if (apply) this.hint(orderKey, paidBy, paidBy);
    return true;
  }

  /** An unpaid order ends: failed (recharge.failed, once) or closed; a closed one stays closed. */
  private endOrder(orderKey: string, status: 'failed' | 'closed'): void {
    const o = this.state.orders.get(orderKey)!;
    if (o.status !== 'pending' && o.status !== 'failed') return;
    o.status = status;
    if (status !== 'failed' || o.failedFired) return;
    o.failedFired = true;
    // The event only: no account is written (SPEC 10.5 counts none as lasting).
    this.account(o.userId).events.push({
      type: 'recharge.failed',
      data: { orderId: orderKey, amount: formatMicros(o.amount) },
    });
  }

  /** The order is paid by this payment and its amount credited, once. */
  private credit(orderKey: string, paymentId: string): void {
    const o = this.state.orders.get(orderKey)!;
    o.status = 'paid';
    o.paymentId = paymentId;
    const a = this.account(o.userId);
    a.balance += o.amount;
    a.written = true;
    a.events.push({ type: 'recharge.paid', data: { orderId: orderKey, amount: formatMicros(o.amount) } });
    this.balanceAlarms(o.userId, a);
  }

  /**
   * POST /admin/v1/accounts/{user}/adjustments: idempotent by (user, key); the same key with another
   * amount is 10007; a debit that would take the available balance below zero is 10001.
   */
  adjust(userId: string, key: string, amount: bigint): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const first = a.adjustments.get(key);
    if (first !== undefined)
      return first === amount ? { ok: { applied: false, amount: formatMicros(amount) } } : { code: 10007 };
    if (amount < 0n && this.balanceLeft(a) + amount < 0n) return { code: 10001 };
    const acct = this.account(userId);
    acct.balance += amount;
    acct.adjustments.set(key, amount);
    acct.written = true;
    this.balanceAlarms(userId, acct);
    return { ok: { applied: true, amount: formatMicros(amount), balance: formatMicros(acct.balance) } };
  }
}
