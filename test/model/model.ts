/**
 * Reference model of the money engine, written from SPEC sections 4–8 and 10 (not from the Lua):
 * plain TypeScript, no I/O, deterministic. Each operation returns the answer the service must give
 * (the fields the SPEC fixes) or the SPEC error code, and changes the state as the SPEC says.
 *
 * What the SPEC leaves open is decided here the way a careful user would expect, and marked "choice":
 * the runner reports a difference on those as a model/service disagreement to be settled, not a bug.
 *
 * Later features (grants, refunds, limits, per-user prices, events) slot in as: more state on
 * `ModelAccount` (grants list, limits, price overrides, alarm flags), a `price()` that reads the user's
 * override, and a `spend()` that takes from grants before the balance; the operations below already
 * go through `quote()` and `spend()` for that reason.
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
}

function record(requestId: string, service: string, free: number, paid: number, amount: bigint): ModelRecord {
  return {
    requestId,
    service,
    type: paid === 0 ? 'free' : free === 0 ? 'balance' : 'mixed',
    count: free + paid,
    free,
    paid,
    amount,
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
}

export interface ModelOrder {
  userId: string;
  amount: bigint;
  status: 'pending' | 'paid' | 'failed' | 'closed';
  paymentId: string | null;
  flagged: boolean;
}

export interface ModelState {
  now: number;
  accounts: Map<string, ModelAccount>;
  orders: Map<string, ModelOrder>;
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
    this.state = { now, accounts: new Map(), orders: new Map() };
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
      a = {
        balance: 0n,
        held: 0n,
        used: new Map(),
        requests: new Map(),
        holds: new Map(),
        adjustments: new Map(),
        records: [],
        written: false,
      };
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

  /** What the user may spend: the balance less what is held (no overdraft: SPEC 7.3). */
  available(a: ModelAccount): bigint {
    return a.balance - a.held;
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

  /**
   * The price of `count` calls now (SPEC 3, 4): free quota of the month first, then the balance.
   * 'no_quota' for a free-only service past its quota, 'no_balance' when the balance cannot cover it.
   */
  quote(a: ModelAccount, serviceName: string, count: number) {
    const svc = this.service(serviceName);
    const freeLeft = Math.max(0, svc.freeQuota - this.usedOf(a, this.period(), svc.name));
    const free = Math.min(count, freeLeft);
    const paid = count - free;
    if (paid > 0 && svc.unitPrice === null) return { refusal: 10002, free, paid, amount: 0n, freeLeft, unitPrice: 0n };
    const unitPrice = svc.unitPrice ?? 0n;
    const amount = BigInt(paid) * unitPrice;
    if (amount > this.available(a)) return { refusal: 10001, free, paid, amount, freeLeft, unitPrice };
    return { refusal: 0, free, paid, amount, freeLeft, unitPrice };
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
          : q.paid > 0
            ? 'balance'
            : 'free';
    return {
      ok: { allowed: q.refusal === 0, reason, freeRemaining: q.freeLeft, balance: formatMicros(this.available(a)) },
    };
  }

  /** An account nobody has written: what a read sees, without creating it. */
  private scratch(): ModelAccount {
    return {
      balance: 0n,
      held: 0n,
      used: new Map(),
      requests: new Map(),
      holds: new Map(),
      adjustments: new Map(),
      records: [],
      written: false,
    };
  }

  /** GET /account (SPEC 4): the available balance, the amount held, this month's free calls used. */
  viewAccount(userId: string): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const used = this.config.services.map((s) => `${s.name}:${this.usedOf(a, this.period(), s.name)}`).join(',');
    return { ok: { balance: formatMicros(this.available(a)), heldAmount: formatMicros(a.held), used } };
  }

  /** POST /deduct (SPEC 4): atomic, idempotent by request_id, refused → nothing changes. */
  deduct(userId: string, requestId: string, serviceName: string, count: number): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `deduct|${serviceName}|${count}`;
    const m = this.memo(a, requestId);
    if (m) return m.payload === payload ? { ok: { ...m.answer, duplicate: true } } : { code: 10007 };
    const q = this.quote(a, serviceName, count);
    if (q.refusal) return { code: q.refusal };
    const acct = this.account(userId);
    this.addUsed(acct, this.period(), serviceName, q.free);
    acct.balance -= q.amount;
    acct.records.push(record(requestId, serviceName, q.free, q.paid, q.amount));
    acct.written = true;
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

  /** POST /reservations (SPEC 4): holds free quota and balance; same request-id space as deduct (choice). */
  reserve(userId: string, requestId: string, serviceName: string, count: number, ttlSeconds: number): Answer {
    const a = this.state.accounts.get(userId) ?? this.scratch();
    const payload = `reserve|${serviceName}|${count}|${ttlSeconds}`;
    const m = this.memo(a, requestId);
    if (m) return m.payload === payload ? { ok: { ...m.answer, duplicate: true } } : { code: 10007 };
    const q = this.quote(a, serviceName, count);
    if (q.refusal) return { code: q.refusal };
    const acct = this.account(userId);
    const period = this.period();
    this.addUsed(acct, period, serviceName, q.free);
    acct.held += q.amount;
    acct.written = true;
    const expiresAt = this.state.now + ttlSeconds * 1000;
    acct.holds.set(requestId, {
      service: serviceName,
      count,
      free: q.free,
      paid: q.paid,
      amount: q.amount,
      unitPrice: q.unitPrice,
      period,
      expiresAt,
      state: 'held',
    });
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
   * POST /reservations/{id}/commit (SPEC 4): charges `count` ≤ held, free part first, returns the
   * rest (unused free calls to the month they were taken from: choice). Idempotent: the same count
   * again is the first answer; another count is 10007 (choice, as deduct). Not found, released,
   * expired or past its time: 10008. More than held: 40000.
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
    a.held -= h.amount;
    a.balance -= amount;
    // A commit of 0 calls is a release by another name: no call, no record (choice).
    if (count > 0) a.records.push(record(requestId!, h.service, free, paid, amount));
    h.state = 'committed';
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
    return {
      ok: {
        status: 'released',
        releasedAmount: formatMicros(h.amount),
        balance: formatMicros(this.available(a)),
        duplicate: false,
      },
    };
  }

  private returnHold(a: ModelAccount, h: ModelHold): void {
    this.addUsed(a, h.period, h.service, -h.free);
    a.held -= h.amount;
  }

  /** The clock moves on; holds past their time are released by themselves (the expiry sweep). */
  advance(ms: number): number {
    this.state.now += ms;
    return this.expireDue();
  }

  expireDue(): number {
    let n = 0;
    for (const a of this.state.accounts.values()) {
      for (const h of a.holds.values()) {
        if (h.state === 'held' && h.expiresAt <= this.state.now) {
          this.returnHold(a, h);
          h.state = 'expired';
          n++;
        }
      }
    }
    return n;
  }

  /** POST /recharge (SPEC 5): a pending order; nothing moves until it is paid. */
  createOrder(orderKey: string, userId: string, amount: bigint): Answer {
    this.state.orders.set(orderKey, { userId, amount, status: 'pending', paymentId: null, flagged: false });
    return { ok: { status: 'pending', amount: formatMicros(amount), userId } };
  }

  /**
   * POST /callback (SPEC 6), signed: unknown order 10003; amount different 10005 (flagged, not
   * credited); paid by this payment 200; paid by another 10004; otherwise success credits exactly once.
   */
  callback(orderKey: string, paymentId: string, amount: bigint): Answer {
    const o = this.state.orders.get(orderKey);
    if (!o) return { code: 10003 };
    if (amount !== o.amount) {
      o.flagged = true;
      return { code: 10005 };
    }
    if (o.status === 'paid') return o.paymentId === paymentId ? { ok: {} } : { code: 10004 };
    o.status = 'paid';
    o.paymentId = paymentId;
    const a = this.account(o.userId);
    a.balance += o.amount;
    a.written = true;
    return { ok: {} };
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
    if (amount < 0n && this.available(a) + amount < 0n) return { code: 10001 };
    const acct = this.account(userId);
    acct.balance += amount;
    acct.adjustments.set(key, amount);
    acct.written = true;
    return { ok: { applied: true, amount: formatMicros(amount), balance: formatMicros(acct.balance) } };
  }
}
