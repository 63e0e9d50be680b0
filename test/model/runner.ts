/**
 * Runs generated sequences against the real service (real Redis, MariaDB, payment simulator; api and
 * worker roles in this process, the worker on its own context so it can be stopped and started; for
 * a SIGKILL fault, a worker process of its own; calls over HTTP and gRPC) and compares every answer
 * with the model, then, once the sequence's changes are persisted, Redis, MySQL, the ledger, the events
 * and the model.
 */
import type { ChildProcess } from 'node:child_process';
import type * as grpc from '@grpc/grpc-js';
import { createLogger } from '../../src/lib/logger.js';
import { startRoles, type Running } from '../../src/main/processes.js';
import { signPayload } from '../../src/lib/payment-signature.js';
import { startHarness, CALLBACK_SECRET, ADMIN_TOKEN, type Harness } from '../support/harness.js';
import { FakeClock } from '../support/fake-clock.js';
import { spawnRole, exited } from '../support/processes.js';
import { OwnServers } from '../faults/support.js';
import { fullClients, call as grpcCall, callError, metadata } from '../fixtures/grpc-clients.js';
import { put, grantsPath, voidPath, pricingPath, LIMITS, admin } from '../support/money.js';
import { WebhookReceiver, signatureValid } from '../support/webhook-receiver.js';

const ALERTS = '/api/v1/billing/alerts';
import { BillingModel, formatMicros, parseMicros, type Answer } from './model.js';
import { compareViews } from './views.js';
import {
  USER_NAMES,
  countOps,
  countKinds,
  type BatchOp,
  type Op,
  type SettingOp,
  type SimpleOp,
  type Sequence,
} from './generator.js';

/** The catalogue of the model runs: small quotas so that every boundary is reached in a few calls. */
export const MODEL_SERVICES = [
  { name: 'alpha', free_quota: 3, unit_price: '0.25' },
  { name: 'beta', free_quota: 2, unit_price: null },
  { name: 'gamma', free_quota: 0, unit_price: '0.001' },
];
const MODEL_CONFIG = {
  services: [
    { name: 'alpha', freeQuota: 3, unitPrice: 250_000n },
    { name: 'beta', freeQuota: 2, unitPrice: null },
    { name: 'gamma', freeQuota: 0, unitPrice: 1_000n },
  ],
  zone: 'Asia/Shanghai',
  idempotencyWindowMs: 24 * 3_600_000,
  maxCallsPerRequest: 10_000,
  // `alerts.*` as the model runs configure them: a balance_low default of 1.00 (not 10.00) is crossed
  // by the balances the sequences reach, so the balance alarms fire without a PUT of their own.
  alertDefaults: { balanceLow: 1_000_000n, quotaLowPercent: 80 },
};
/**
 * At most this many model copies are followed at once: serial orders of a group that give the same
 * answers but different events or alarms (the events stored at the end decide between them).
 */
const MAX_CANDIDATES = 16;
/** The data fields of each event type the model fixes (ids the service makes are mapped to the model's). */
const EVENT_FIELDS: Record<string, string[]> = {
  'balance.low': ['available', 'threshold'],
  'balance.recovered': ['available', 'threshold'],
  'balance.depleted': ['service', 'needed', 'available'],
  'quota.low': ['service', 'used', 'freeQuota'],
  'quota.exhausted': ['service', 'used', 'freeQuota'],
  'recharge.paid': ['orderId', 'amount'],
  'recharge.failed': ['orderId', 'amount'],
  'reservation.expired': ['reservationId', 'service', 'released'],
  'refund.created': ['refundId', 'requestId', 'count', 'amount'],
  'grant.expired': ['grantId', 'remaining', 'how'],
};
/** The fake clock of a sequence stays inside the idempotency window: Redis expires request ids in real time. */
const MAX_SEQUENCE_SPAN_MS = 23 * 3_600_000;
const SETTLE_TIMEOUT_MS = 10_000;

export interface RunOptions {
  /** SPEC 10 checks that need the lead's identity fixes: read-only calls leave nothing lasting */
  strict: boolean;
  /**
   * Accept 404 / 40400 for a void of a grant already ended (the model: 200, nothing voided). The
   * service answers 40400 while the grant's rows are not in MySQL yet (found by the model test,
   * reported; off by default): `--without void` leaves it out, for soaks of everything else. Also
   * accepts an `/account` held amount without what holds hold of a voided grant (found, reported).
   */
  lenientVoid?: boolean;
}

export interface Stats {
  sequences: number;
  ops: number;
  groups: number;
  /** batches of deducts or checks (HTTP and gRPC) */
  batches: number;
  /** operations sent, by kind (and transport where there are two) */
  kinds: Record<string, number>;
  /** answers of single calls by kind: 'ok' or the SPEC code (to see what a run reached) */
  outcomes: Record<string, Record<string, number>>;
  faults: Record<string, number>;
  droppedChanges: number;
  /** operations sent while MySQL was down: answered from Redis, or 50300 */
  whileMysqlDown: { answered: number; unavailable: number };
  /** concurrent groups whose answers more than one distinct serial order explains (all followed) */
  ambiguousGroups: number;
  /** events stored and compared, by type */
  events: Record<string, number>;
  /** stored events found delivered, signed, at the run's webhook endpoint */
  deliveries: number;
  /** this sequence's orders a reconciliation run completed or ended (their payment settled, callback lost) */
  reconciledOrders: number;
}

export class ModelFailure extends Error {}

export class ModelEnv {
  readonly stats: Stats = {
    sequences: 0,
    ops: 0,
    groups: 0,
    batches: 0,
    kinds: {},
    outcomes: {},
    faults: {},
    droppedChanges: 0,
    whileMysqlDown: { answered: 0, unavailable: 0 },
    ambiguousGroups: 0,
    events: {},
    deliveries: 0,
    reconciledOrders: 0,
  };
  private seq = 0;
  /** how the last dying worker ended, for the sequence's log */
  lastKill = '';
  /** worker processes started for a SIGKILL fault (killed at the latest when the env stops) */
  readonly children = new Set<ChildProcess>();
  private constructor(
    readonly h: Harness,
    readonly servers: OwnServers,
    readonly clock: FakeClock,
    private worker: Running | null,
    /** billing.v1 BillingService (user) and BillingInternalService over real gRPC */
    readonly grpc: { user: grpc.Client; internal: grpc.Client },
  ) {}

  static async start(): Promise<ModelEnv> {
    const servers = await new OwnServers().start();
    const clock = new FakeClock(new Date('2026-12-01T00:00:00Z'));
    const h = await startHarness({
      roles: ['api'],
      clock,
      simulator: true,
      servers: servers.urls,
      // A buffer that waits 200 ms holds changes long enough for a lost enqueue to lose some.
      overrides: {
        services: MODEL_SERVICES,
        persistence: { flush_ms: 200 },
        alerts: { balance_low_threshold: formatMicros(MODEL_CONFIG.alertDefaults.balanceLow) },
        webhooks: { backoff_base: '200ms', timeout: '2s' },
        // Reconciliation asks about a pending order a second after its creation (and again a second
        // after each ask), so that a run mostly reaches the payments a sequence settled.
        payment_service: { pending_check_after: '1s' },
      },
    });
    const env = new ModelEnv(h, servers, clock, null, fullClients(h.running.grpcAddress!));
    await env.startWorker();
    // One endpoint for every event, on a real local receiver that fails each event's first attempt
    // (so every delivery is a retry too).
    const receiver = await new WebhookReceiver().start();
    const created = await h.post('/admin/v1/webhooks', { url: receiver.on('/model', 'fail:1'), events: ['*'] }, admin);
    if (created.status !== 201) throw new Error(`webhook endpoint refused: ${JSON.stringify(created.body)}`);
    env.webhook = { receiver, secret: String(created.body.data.secret), checked: 0, delivered: new Set() };
    return env;
  }

  /** The run's webhook endpoint: its receiver, signing secret, requests checked, event ids delivered signed. */
  webhook: { receiver: WebhookReceiver; secret: string; checked: number; delivered: Set<string> } | null = null;

  async startWorker(): Promise<void> {
    this.worker = await startRoles(this.h.config, ['worker'], {
      clock: this.clock,
      logger: createLogger('silent', 'model-worker'),
    });
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop();
    this.worker = null;
  }

  /**
   * A worker as a process of its own that SIGKILLs itself inside its first persistence batch, after
   * the MySQL commit (the in-process worker is stopped first: the batch must be the child's).
   */
  spawnDyingWorker(): ChildProcess {
    const child = spawnRole('worker', {
      ...this.h.env,
      ALERTS_BALANCE_LOW_THRESHOLD: formatMicros(MODEL_CONFIG.alertDefaults.balanceLow),
      BILLING_FAULT_CRASH_AT: 'after-batch-commit',
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  async stop(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    this.grpc.user.close();
    this.grpc.internal.close();
    await this.stopWorker();
    await this.h.stop();
    await this.servers.stop();
    await this.webhook?.receiver.stop();
  }

  fault(name: string): void {
    this.stats.faults[name] = (this.stats.faults[name] ?? 0) + 1;
  }

  /** A fresh prefix per sequence: sequences share the servers but never a user. */
  nextPrefix(): string {
    return `${this.h.tag}s${++this.seq}`;
  }
}

const RESERVE = '/internal/v1/billing/reservations';

/** A gRPC call's answer in the model's terms: the reply mapped to the HTTP field names, or its SPEC code. */
async function grpcAnswer(
  work: Promise<Record<string, any>>,
  fields: (reply: Record<string, any>) => Record<string, unknown>,
): Promise<Answer> {
  try {
    return { ok: fields(await work) };
  } catch (err) {
    const e = callError(err as grpc.ServiceError);
    return { code: e.billingCode ?? -1000 - e.code };
  }
}

const grpcDeductFields = (r: Record<string, any>) => ({
  success: r.success,
  recordId: r.recordId,
  requestId: r.requestId,
  freeCount: r.freeCount,
  paidCount: r.paidCount,
  amount: r.amountDecimal,
  balance: r.balanceDecimal,
  duplicate: r.duplicate,
});

const timestampIso = (t: { seconds: string; nanos: number }) =>
  new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString();

/** The account view in the model's terms: this month's free calls used as "service:n,…" in catalogue order. */
const accountFields = (balance: string, heldAmount: string, quotas: { serviceName: string; usedQuota: number }[]) => {
  const used = new Map(quotas.map((q) => [q.serviceName, q.usedQuota]));
  return { balance, heldAmount, used: MODEL_SERVICES.map((s) => `${s.name}:${used.get(s.name) ?? 'none'}`).join(',') };
};

/** The spendable grants `/account` lists, in its order, as "id:remaining,…" (gRPC GetAccount has none). */
const grantsField = (grants: { grantId: string; remaining: string }[]) =>
  grants.map((g) => `${g.grantId}:${g.remaining}`).join(',');

/** Commit and release name the reservation by the id the service gave when it was made. */
const namesReservation = (
  op: SimpleOp,
): op is Extract<SimpleOp, { t: 'commit' | 'release' | 'grpc-commit' | 'grpc-release' }> =>
  op.t === 'commit' || op.t === 'release' || op.t === 'grpc-commit' || op.t === 'grpc-release';

const grpcCheckFields = (r: Record<string, any>) => ({
  allowed: r.allowed,
  reason: r.reason,
  freeRemaining: Number(r.freeRemaining),
  balance: r.balanceDecimal,
});

/** The service's answer in the model's terms. */
function answerOf(r: { status: number; body: any }): Answer {
  if (r.status === 200 && r.body?.success === true) return { ok: r.body.data ?? {} };
  return { code: typeof r.body?.code === 'number' ? r.body.code : -r.status };
}

/** A void of an ended grant answered 40400 (see `RunOptions.lenientVoid`). */
function endedVoidAs404(op: SimpleOp, expected: Answer, real: Answer): boolean {
  return (
    op.t === 'void' &&
    'ok' in expected &&
    expected.ok.voided === '0.00' &&
    expected.ok.pending === false &&
    'code' in real &&
    real.code === 40400
  );
}

function sameAnswer(expected: Answer, real: Answer): boolean {
  if ('code' in expected) return 'code' in real && real.code === expected.code;
  if (!('ok' in real)) return false;
  return Object.entries(expected.ok).every(([k, v]) => JSON.stringify(real.ok[k]) === JSON.stringify(v));
}

function show(a: Answer): string {
  return JSON.stringify(a, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

/** One sequence against the service; throws ModelFailure naming the first difference. */
export async function runSequence(env: ModelEnv, sequence: Sequence, opts: RunOptions): Promise<void> {
  const { h, clock } = env;
  const ctx = h.probe;
  const prefix = env.nextPrefix();
  const users = USER_NAMES.map((n) => `${prefix}${n}`);
  const start = Date.parse(sequence.start);
  clock.set(new Date(start));
  let model = new BillingModel(MODEL_CONFIG, start);
  /** Other model copies that explain every answer so far (see MAX_CANDIDATES); `model` is the first. */
  let others: BillingModel[] = [];
  /**
   * Applies an operation to every candidate copy and keeps those whose answer `fits`; returns the
   * answer of the first kept (or, when none fits, the first copy's, for the failure message).
   */
  const step = (f: (m: BillingModel) => Answer, fits: (expected: Answer) => boolean): Answer => {
    const tried = [model, ...others].map((m) => ({ m, expected: f(m) }));
    const kept = tried.filter((t) => fits(t.expected));
    if (kept.length === 0) return tried[0].expected;
    model = kept[0].m;
    others = kept.slice(1).map((t) => t.m);
    return kept[0].expected;
  };
  const everyModel = (f: (m: BillingModel) => void) => [model, ...others].forEach(f);
  const reservations = new Map<string, string>();
  const recordIds = new Map<string, string>();
  /** Orders made, in order: `paymentId` the payment service's (null: its CreatePayment failed). */
  const orders: { key: string; orderId: string; paymentId: string | null; micros: bigint }[] = [];
  let lostEnqueue = false;
  let slowSettle = false;
  let killed = false;
  const log: string[] = [];
  env.stats.sequences++;
  env.stats.ops += countOps(sequence.ops);
  countKinds(sequence.ops, env.stats.kinds);

  const fail = (message: string): never => {
    throw new ModelFailure(`${message}\n  after: ${log.slice(-8).join('\n         ')}`);
  };

  const matches = (op: SimpleOp, expected: Answer, real: Answer) =>
    sameAnswer(expected, real) ||
    (opts.lenientVoid === true &&
      (endedVoidAs404(op, expected, real) ||
        // A void's `voided` is read before its atomic step: a hold made meanwhile is not taken off (found).
        (op.t === 'void' && 'ok' in expected && 'ok' in real && real.ok.pending === expected.ok.pending)));

  const bogusReservation = (u: number) =>
    `rsv_${Buffer.from(users[u]).toString('base64url')}.${model.period()}.${'0'.repeat(32)}`;

  /** Sends one simple op; `rsv` is the reservation id resolved before its group started. */
  const send = async (op: SimpleOp, rsv: string | undefined): Promise<Answer> => {
    const user = users[op.u];
    switch (op.t) {
      case 'check':
        return answerOf(await h.post('/internal/v1/billing/check', { user_id: user, service_name: op.s, count: op.n }));
      case 'deduct':
        return answerOf(
          await h.post('/internal/v1/billing/deduct', {
            request_id: op.r,
            user_id: user,
            service_name: op.s,
            count: op.n,
          }),
        );
      case 'reserve':
        return answerOf(
          await h.post(RESERVE, {
            request_id: op.r,
            user_id: user,
            service_name: op.s,
            count: op.n,
            ttl_seconds: op.ttl,
          }),
        );
      case 'commit':
        return answerOf(await h.post(`${RESERVE}/${rsv ?? bogusReservation(op.u)}/commit`, { count: op.n }));
      case 'release':
        return answerOf(await h.post(`${RESERVE}/${rsv ?? bogusReservation(op.u)}/release`, {}));
      case 'grpc-check':
        return grpcAnswer(
          grpcCall(env.grpc.internal, 'CheckQuota', { userId: user, serviceName: op.s, count: op.n }),
          grpcCheckFields,
        );
      case 'grpc-deduct':
        return grpcAnswer(
          grpcCall(env.grpc.internal, 'DeductQuota', { userId: user, serviceName: op.s, count: op.n, requestId: op.r }),
          grpcDeductFields,
        );
      case 'grpc-reserve':
        return grpcAnswer(
          grpcCall(env.grpc.internal, 'Reserve', {
            userId: user,
            serviceName: op.s,
            count: op.n,
            requestId: op.r,
            ttlSeconds: op.ttl,
          }),
          (r) => ({
            reservationId: r.reservationId,
            requestId: r.requestId,
            status: r.status,
            expiresAt: timestampIso(r.expiresAt),
            freeCount: r.freeCount,
            paidCount: r.paidCount,
            heldAmount: r.heldAmountDecimal,
            balance: r.balanceDecimal,
            duplicate: r.duplicate,
          }),
        );
      case 'grpc-commit':
        return grpcAnswer(
          grpcCall(env.grpc.internal, 'CommitReservation', {
            reservationId: rsv ?? bogusReservation(op.u),
            count: op.n,
          }),
          (r) => ({
            status: r.status,
            count: r.count,
            freeCount: r.freeCount,
            paidCount: r.paidCount,
            amount: r.amountDecimal,
            releasedAmount: r.releasedAmountDecimal,
            balance: r.balanceDecimal,
            duplicate: r.duplicate,
          }),
        );
      case 'grpc-release':
        return grpcAnswer(
          grpcCall(env.grpc.internal, 'ReleaseReservation', { reservationId: rsv ?? bogusReservation(op.u) }),
          (r) => ({
            status: r.status,
            releasedAmount: r.releasedAmountDecimal,
            balance: r.balanceDecimal,
            duplicate: r.duplicate,
          }),
        );
      case 'account': {
        if (op.via === 'grpc')
          return grpcAnswer(grpcCall(env.grpc.user, 'GetAccount', { userId: user }), (r) =>
            accountFields(r.balanceDecimal, r.heldAmountDecimal, r.quotas),
          );
        const a = answerOf(await h.get('/api/v1/billing/account', { user_id: user }));
        return 'ok' in a
          ? {
              ok: {
                ...accountFields(String(a.ok.balance), String(a.ok.heldAmount), a.ok.quotas as any[]),
                grants: grantsField(a.ok.grants as any[]),
              },
            }
          : a;
      }
      case 'grant':
        return answerOf(
          await h.post(
            grantsPath(user),
            {
              grant_id: op.g,
              amount: op.amount,
              category: op.cat,
              priority: op.prio,
              ...(op.exp === null ? {} : { expires_at: new Date(start + op.exp).toISOString() }),
            },
            admin,
          ),
        );
      case 'void':
        return answerOf(await h.post(voidPath(user, op.g), {}, admin));
      case 'get-alerts':
        return answerOf(await h.get(ALERTS, { user_id: user }));
      case 'refund':
        if (op.via === 'grpc')
          return grpcAnswer(
            grpcCall(env.grpc.internal, 'Refund', {
              refundId: op.f,
              userId: user,
              requestId: op.r,
              // `optional` in the proto: left out for the whole call; a 0 sent is refused, as over HTTP
              ...(op.n === null ? {} : { count: op.n }),
            }),
            (r) => ({
              refundId: r.refundId,
              count: r.count,
              freeCount: r.freeCount,
              paidCount: r.paidCount,
              amount: r.amountDecimal,
              balance: r.balanceDecimal,
              duplicate: r.duplicate,
            }),
          );
        return answerOf(
          await h.post('/internal/v1/billing/refunds', {
            refund_id: op.f,
            user_id: user,
            request_id: op.r,
            ...(op.n === null ? {} : { count: op.n }),
          }),
        );
      case 'adjust':
        return answerOf(
          await h.post(
            `/admin/v1/accounts/${encodeURIComponent(user)}/adjustments`,
            {
              amount: formatMicros(BigInt(op.micros)),
              reason: 'model test',
              idempotency_key: op.k,
            },
            { authorization: `Bearer ${ADMIN_TOKEN}` },
          ),
        );
    }
  };

  const apply = (m: BillingModel, op: SimpleOp, rsvKnown: boolean): Answer => {
    const user = users[op.u];
    switch (op.t) {
      case 'check':
      case 'grpc-check':
        return m.check(user, op.s, op.n);
      case 'account': {
        const view = m.viewAccount(user, opts.lenientVoid !== true);
        if (op.via === 'grpc' && 'ok' in view) delete view.ok.grants;
        return view;
      }
      case 'grant':
        return m.createGrant(user, op.g, op.amount, op.cat, op.prio, op.exp === null ? null : start + op.exp);
      case 'void':
        return m.voidGrant(user, op.g);
      case 'get-alerts':
        return m.getAlerts(user);
      case 'refund':
        return m.refund(user, op.f, op.r, op.n);
      case 'deduct':
      case 'grpc-deduct':
        return m.deduct(user, op.r, op.s, op.n);
      case 'reserve':
      case 'grpc-reserve':
        return m.reserve(user, op.r, op.s, op.n, op.ttl);
      case 'commit':
      case 'grpc-commit':
        return m.commit(user, rsvKnown ? op.r : null, op.n);
      case 'release':
      case 'grpc-release':
        return m.release(user, rsvKnown ? op.r : null);
      case 'adjust':
        return m.adjust(user, op.k, BigInt(op.micros));
    }
  };

  const tally = (kind: string, real: Answer) => {
    const by = (env.stats.outcomes[kind] ??= {});
    const key = 'ok' in real ? 'ok' : String(real.code);
    by[key] = (by[key] ?? 0) + 1;
  };

  /** A setting sent (PUT), and what the model answers. */
  const runSetting = async (op: SettingOp) => {
    const user = users[op.u];
    const body: Record<string, unknown> = {};
    let real: Answer;
    let expected: Answer;
    const micros = (v: string | null | undefined) => (v === undefined || v === null ? v : parseMicros(v)!);
    if (op.t === 'limits') {
      if (op.daily !== undefined) body.daily = op.daily;
      if (op.monthly !== undefined) body.monthly = op.monthly;
      real = answerOf(await put(h, LIMITS, { user_id: user, ...body }));
      expected = step(
        (m) => m.setLimits(user, micros(op.daily), micros(op.monthly)),
        (e) => sameAnswer(e, real),
      );
    } else if (op.t === 'alerts') {
      if (op.low !== undefined) body.balance_low = op.low;
      if (op.pct !== undefined) body.quota_low_percent = op.pct;
      real = answerOf(await put(h, ALERTS, { user_id: user, ...body }));
      expected = step(
        (m) => m.setAlerts(user, op.low, op.pct),
        (e) => sameAnswer(e, real),
      );
    } else {
      if (op.free !== undefined) body.free_quota = op.free;
      if (op.price !== undefined) body.unit_price = op.price;
      real = answerOf(await put(h, pricingPath(user, op.s), body, admin));
      expected = step(
        (m) => m.setPricing(user, op.s, op.free, micros(op.price)),
        (e) => sameAnswer(e, real),
      );
    }
    log.push(`${JSON.stringify(op)} -> ${show(real)}`);
    if (!sameAnswer(expected, real)) fail(`${op.t}: service ${show(real)}, model ${show(expected)}`);
    tally(op.t, real);
  };

  /** What the service's answers teach the runner: reservation ids, record ids of request ids. */
  const learn = (op: SimpleOp, real: Answer) => {
    tally(op.t, real);
    if (!('ok' in real)) return;
    if ((op.t === 'deduct' || op.t === 'grpc-deduct') && real.ok.duplicate === false)
      deducted.push({ u: op.u, r: op.r });
    if (op.t === 'grant' && real.ok.duplicate === false) granted.push({ u: op.u, g: op.g });
    if (op.t === 'reserve' || op.t === 'grpc-reserve') {
      reservations.set(`${op.u}|${op.r}`, String(real.ok.reservationId));
      if (real.ok.duplicate === false) reserved.push({ u: op.u, r: op.r });
    }
    if (op.t === 'deduct' || op.t === 'grpc-deduct') {
      const key = `${op.u}|${op.r}`;
      const first = recordIds.get(key);
      if (first && first !== real.ok.recordId)
        fail(`request id ${JSON.stringify(op.r)} answered record ${String(real.ok.recordId)}, first ${first}`);
      recordIds.set(key, String(real.ok.recordId));
    }
  };

  /** Deducts accepted and grants given, in order: the targets of refunds and voids that name a recent one. */
  const deducted: { u: number; r: string }[] = [];
  const granted: { u: number; g: string }[] = [];
  /** Holds made, in order: the targets of commits and releases that name a recent one. */
  const reserved: { u: number; r: string }[] = [];
  const recentOf = <T>(list: T[], k: number | null) =>
    k === null ? undefined : list[list.length - 1 - (k % list.length)];
  /** A refund, void, commit or release naming a recent target, made concrete (before its group starts). */
  const resolve = (op: SimpleOp): SimpleOp => {
    if (op.t === 'refund' && deducted.length > 0 && op.recent !== null)
      return { ...op, ...recentOf(deducted, op.recent)!, recent: null };
    if (op.t === 'void' && granted.length > 0 && op.recent !== null)
      return { ...op, ...recentOf(granted, op.recent)!, recent: null };
    if (namesReservation(op) && reserved.length > 0 && op.recent != null)
      return { ...op, ...recentOf(reserved, op.recent)!, recent: null };
    return op;
  };

  /** The id the service gave the reservation a commit or release names (none: it made none). */
  const reservationOf = (op: SimpleOp) => (namesReservation(op) ? reservations.get(`${op.u}|${op.r}`) : undefined);

  /** Each item's answer, in item order; the whole batch refused is a failure (every item is valid). */
  const sendBatch = async (op: BatchOp): Promise<Answer[]> => {
    const item = (a: any) => (a.ok ? { ok: a } : { code: a.code as number });
    if (op.t === 'check-batch') {
      const items = op.items.map((i) => ({ user_id: users[i.u], service_name: i.s, count: i.n }));
      const r = await h.post('/internal/v1/billing/check/batch', { items });
      if (r.status !== 200) fail(`check batch refused whole: ${r.status} ${JSON.stringify(r.body)}`);
      return (r.body.data.results as any[]).map(item);
    }
    if (op.via === 'http') {
      const items = op.items.map((i) => ({ request_id: i.r, user_id: users[i.u], service_name: i.s, count: i.n }));
      const r = await h.post('/internal/v1/billing/deduct/batch', { items });
      if (r.status !== 200) fail(`deduct batch refused whole: ${r.status} ${JSON.stringify(r.body)}`);
      return (r.body.data.results as any[]).map(item);
    }
    const items = op.items.map((i) => ({ userId: users[i.u], serviceName: i.s, count: i.n, requestId: i.r }));
    const outcome = (o: any): Answer => (o.ok ? { ok: grpcDeductFields(o.reply) } : { code: o.code as number });
    if (op.via === 'stream') {
      const outcomes = await deductStream(env.grpc.internal, items).catch((err: grpc.ServiceError) =>
        fail(`DeductStream failed: ${err.code} ${err.details}`),
      );
      const byIndex = new Map(outcomes.map((o) => [Number(o.index), o]));
      if (byIndex.size !== items.length) fail(`DeductStream: ${outcomes.length} answers for ${items.length} items`);
      return items.map((_, i) => outcome(byIndex.get(i)));
    }
    const whole = await grpcAnswer(grpcCall(env.grpc.internal, 'DeductBatch', { items }), (reply) => reply);
    if (!('ok' in whole)) return fail(`gRPC DeductBatch refused whole: code ${whole.code}`);
    return (whole.ok.results as any[]).map(outcome);
  };

  /** A batch: its items applied to the model one after the other (one user's items run in item order). */
  const runBatch = async (op: BatchOp) => {
    const real = await sendBatch(op);
    if (real.length !== op.items.length) fail(`${op.t}: ${real.length} answers for ${op.items.length} items`);
    const singles: SimpleOp[] = op.items.map((i) =>
      op.t === 'check-batch'
        ? { t: 'check', u: i.u, s: i.s, n: i.n }
        : { t: 'deduct', u: i.u, r: (i as { r: string }).r, s: i.s, n: i.n },
    );
    log.push(`${JSON.stringify(op)} -> ${real.map(show).join(' ')}`);
    singles.forEach((single, index) => {
      const expected = step(
        (m) => apply(m, single, false),
        (e) => sameAnswer(e, real[index]),
      );
      if (!sameAnswer(expected, real[index]))
        fail(`${op.t} item ${index} ${JSON.stringify(single)}: service ${show(real[index])}, model ${show(expected)}`);
      learn(single, real[index]);
    });
  };

  const runGroup = async (drawn: SimpleOp[]) => {
    const ops = drawn.map(resolve);
    const rsv = ops.map(reservationOf);
    const real = await Promise.all(ops.map((op, i) => send(op, rsv[i])));
    const indices = ops.map((_, i) => i);
    // Every serial order of every candidate copy that gives these answers; those that differ (in the
    // events they fire, the alarms they leave) are all followed, until later answers or the events decide.
    const explained: BillingModel[] = [];
    const seen = new Set<string>();
    let firstTry: Answer[] = [];
    for (const base of [model, ...others]) {
      for (const order of permutations(indices)) {
        const m = base.clone();
        const expected: Answer[] = [];
        for (const i of order) expected[i] = apply(m, ops[i], rsv[i] !== undefined);
        if (firstTry.length === 0) firstTry = expected;
        if (!indices.every((i) => matches(ops[i], expected[i], real[i]))) continue;
        const key = fingerprint(m);
        if (seen.has(key)) continue;
        seen.add(key);
        explained.push(m);
      }
    }
    const line = ops.map((op, i) => `${JSON.stringify(op)} -> ${show(real[i])}`).join(' || ');
    log.push(line);
    if (explained.length === 0) {
      fail(
        `no serial order explains the answers:\n${ops.map((op, i) => `    ${JSON.stringify(op)}\n      service: ${show(real[i])}\n      model:   ${show(firstTry[i])}`).join('\n')}`,
      );
    }
    model = explained[0];
    others = explained.slice(1, MAX_CANDIDATES);
    if (others.length > 0) env.stats.ambiguousGroups++;
    ops.forEach((op, i) => learn(op, real[i]));
  };

  /** `POST /recharge` or gRPC `Recharge`; with CreatePayment failing, the order is found in MySQL. */
  const runRecharge = async (op: Extract<Op, { t: 'recharge' }>) => {
    const micros = BigInt(op.micros);
    const user = users[op.u];
    const failing = op.create === 'fail';
    if (failing) h.sim!.behaviour = { ...h.sim!.behaviour, createPayment: 'fail' };
    let real: Answer;
    try {
      real =
        op.via === 'grpc'
          ? await grpcAnswer(
              grpcCall(env.grpc.user, 'Recharge', {
                userId: user,
                amountDecimal: formatMicros(micros),
                paymentMethod: 'wechat',
                currency: 'CNY',
              }),
              (r) => ({
                status: r.status,
                amount: r.amountDecimal,
                orderId: r.rechargeOrderId,
                paymentId: r.paymentId,
              }),
            )
          : answerOf(
              await h.post('/api/v1/billing/recharge', {
                user_id: user,
                amount: formatMicros(micros),
                payment_method: 'wechat',
              }),
            );
    } finally {
      if (failing) h.sim!.reset();
    }
    const key = `o${orders.length}`;
    const expected = step(
      (m) => {
        const e = failing ? m.createOrderFailing(key, user, micros) : m.createOrder(key, user, micros);
        if (op.via === 'grpc' && 'ok' in e) delete e.ok.userId;
        return e;
      },
      (e) => sameAnswer(e, real),
    );
    log.push(`${JSON.stringify(op)} -> ${show(real)}`);
    if (!sameAnswer(expected, real)) fail(`recharge: service ${show(real)}, model ${show(expected)}`);
    tally(`recharge-${op.create ?? 'ok'}`, real);
    if ('ok' in real) {
      orders.push({ key, orderId: String(real.ok.orderId), paymentId: String(real.ok.paymentId), micros });
      return;
    }
    // The failed order's id was in no answer: the user's one order MySQL has and the runner does not.
    const known = new Set(orders.map((o) => o.orderId));
    const rows: { order_id: string; status: string }[] = await ctx
      .db('recharge_orders')
      .where({ user_id: user })
      .select('order_id', 'status');
    const fresh = rows.filter((r) => !known.has(r.order_id));
    if (fresh.length !== 1 || fresh[0].status !== 'failed')
      fail(`recharge refused: expected one new failed order of ${user}, MySQL has ${JSON.stringify(fresh)}`);
    orders.push({ key, orderId: fresh[0].order_id, paymentId: null, micros });
  };

  /**
   * The payment a callback or hint names as the order's own: the payment service's, or for an order
   * whose CreatePayment failed one made up per order (payment ids are unique across orders).
   */
  const paymentOf = (order: (typeof orders)[number] | undefined) =>
    order ? (order.paymentId ?? `pay_none_${order.orderId}`) : 'pay_unknown';

  /** Signed callbacks (1 or 2 copies at once) reporting a success, a failure or a close. */
  const runCallback = async (op: Extract<Op, { t: 'callback' }>) => {
    const order = orders.length > 0 ? orders[op.order % orders.length] : undefined;
    const orderKey = order?.key ?? 'unknown';
    const orderId = order?.orderId ?? `ord_${'0'.repeat(32)}`;
    const micros = (order?.micros ?? 1_000_000n) + (op.amount === 'wrong' ? 10_000n : 0n);
    const status = op.status ?? 'success';
    // "Another payment" only for an order already paid: SPEC 6 says which payment of a pending
    // order is the real one only through GetPayment, which the simulator answers for its own ids.
    const paid = model.state.orders.get(orderKey)?.status === 'paid';
    const paymentId = op.pay === 'other' && paid ? `pay_other_${orderKey}` : paymentOf(order);
    const raw = JSON.stringify({
      order_id: orderId,
      payment_id: paymentId,
      amount: formatMicros(micros),
      currency: 'CNY',
      status,
    });
    const signature = signPayload(CALLBACK_SECRET, raw, Math.floor(clock.now().getTime() / 1000));
    const real = (
      await Promise.all(
        Array.from({ length: op.copies }, () =>
          h.post('/internal/v1/billing/callback', raw, { 'x-payment-signature': signature, authorization: '' }),
        ),
      )
    ).map(answerOf);
    log.push(`${JSON.stringify(op)} -> ${real.map(show).join(' ')}`);
    real.forEach((a) => {
      const expected = step(
        (m) => m.callback(orderKey, paymentId, micros, status),
        (e) => sameAnswer(e, a),
      );
      if (!sameAnswer(expected, a)) fail(`callback: service ${show(a)}, model ${show(expected)}`);
      tally(`callback-${status}`, a);
    });
    if (order && model.state.orders.get(orderKey)?.status === 'paid') await waitPaid(env, order.orderId);
  };

  /** gRPC RechargeCallback (1 or 2 copies at once): the payment service's hint, confirmed by GetPayment. */
  const runHint = async (op: Extract<Op, { t: 'hint' }>) => {
    const order = orders.length > 0 ? orders[op.order % orders.length] : undefined;
    const orderKey = order?.key ?? 'unknown';
    const o = model.state.orders.get(orderKey);
    const paymentId = op.pay === 'other' ? `pay_other_${orderKey}` : (o?.paymentId ?? paymentOf(order));
    const hint = {
      rechargeOrderId: order?.orderId ?? `ord_${'0'.repeat(32)}`,
      paymentId,
      amount: 0,
      status: 'success',
    };
    const real = await Promise.all(
      Array.from({ length: op.copies }, () =>
        grpcAnswer(grpcCall(env.grpc.internal, 'RechargeCallback', hint, metadata({}, CALLBACK_SECRET)), (r) => ({
          success: r.success,
          outcome: r.outcome,
        })),
      ),
    );
    log.push(`${JSON.stringify(op)} -> ${real.map(show).join(' ')}`);
    // Two copies at once: the second may read the order as it was before the first's credit landed (the
    // credit is a job), and answer as the first did; the answers may come in either order.
    const paidBy = paymentOf(order);
    const once = (m: BillingModel) => m.hint(orderKey, paymentId, paidBy);
    const explain = (m: BillingModel): Answer => {
      for (const answers of permutations(real)) {
        const c = m.clone();
        const fits = answers.every(
          (a, i) => (sameAnswer(once(c.clone()), a) && (once(c), true)) || (i > 0 && sameAnswer(once(m.clone()), a)),
        );
        if (fits) {
          m.state = c.state;
          return { ok: { answers: real } };
        }
      }
      return { ok: { answers: real.map(() => once(m)) } };
    };
    const expected = step(explain, (e) => 'ok' in e && e.ok.answers === real);
    if (!('ok' in expected) || expected.ok.answers !== real)
      fail(`hint: service ${real.map(show).join(' ')}, model ${show(expected)}`);
    for (const a of real) tally(`hint-${'ok' in a ? String(a.ok.outcome) : 'refused'}`, a);
    if (order && model.state.orders.get(orderKey)?.status === 'paid') await waitPaid(env, order.orderId);
  };

  /**
   * A reconciliation run (admin API), followed to its end. It must repair nothing of this sequence's
   * users (Redis and MySQL agree, changes in flight included). Of this sequence's orders it may have
   * reached only those due (it checks every pending order of the database, 1,000 at most per run, each
   * a second after its creation or its last check at the earliest, on the fake clock, which moves back
   * between sequences): MySQL says which; each must be one whose payment settled, and changes as a hint
   * would have changed it.
   */
  const runReconcile = async (full: boolean) => {
    // Two seconds on the clock first (as a scheduled run comes some time after the orders it checks).
    await runOp({ t: 'advance', ms: 2_000 });
    const started = await h.post('/admin/v1/reconciliation/runs', { full }, admin);
    if (started.status !== 202) fail(`reconciliation refused: ${started.status} ${JSON.stringify(started.body)}`);
    const id = Number(started.body.data.id);
    let run: any;
    for (const until = Date.now() + 60_000; ;) {
      run = (await h.get(`/admin/v1/reconciliation/runs/${id}`, {}, admin)).body.data;
      if (run.status !== 'running') break;
      if (Date.now() > until) fail(`reconciliation run ${id} still running after 60 s`);
      await new Promise((r) => setTimeout(r, 25));
    }
    log.push(`reconcile${full ? ' (full)' : ''} -> run ${id} ${run.status}, ${run.ordersChecked} orders checked`);
    if (run.status !== 'ok') fail(`reconciliation run ${id}: ${run.status} ${run.error}`);
    const ours = (run.repairs as { userId: string; kind: string }[]).filter(
      (r) => r.kind !== 'pending_order' && users.includes(r.userId),
    );
    if (ours.length > 0) fail(`reconciliation repaired this sequence's users: ${JSON.stringify(ours)}`);
    tally(full ? 'reconcile-full' : 'reconcile', { ok: {} });
    for (const order of orders) {
      const row = await ctx.db('recharge_orders').where({ order_id: order.orderId }).first('status');
      const confirmed = order.paymentId
        ? await ctx.repositories.recharges.isConfirmed(order.orderId, order.paymentId)
        : false;
      const o = model.state.orders.get(order.key)!;
      const reached = o.status === 'pending' && (row?.status !== 'pending' || confirmed);
      if (!reached) continue;
      const paidBy = paymentOf(order);
      const settled = step(
        (m) => ({ ok: { changes: m.reconcileOrder(order.key, paidBy, true) } }),
        (e) => 'ok' in e && e.ok.changes === true,
      );
      if (!('ok' in settled) || settled.ok.changes !== true)
        fail(`reconciliation changed order ${order.key} (MySQL ${row?.status}) whose payment is still pending`);
      env.stats.reconciledOrders++;
      if (model.state.orders.get(order.key)!.status === 'paid') await waitPaid(env, order.orderId);
    }
  };

  const runOp = async (op: Op): Promise<void> => {
    switch (op.t) {
      case 'limits':
      case 'pricing':
      case 'alerts':
        return runSetting(op);
      case 'group':
        env.stats.groups++;
        return runGroup(op.ops);
      case 'deduct-batch':
      case 'check-batch':
        env.stats.batches++;
        return runBatch(op);
      case 'recharge':
        return runRecharge(op);
      case 'callback':
        return runCallback(op);
      case 'settle': {
        const order = orders.length > 0 ? orders[op.order % orders.length] : undefined;
        // Only a payment still pending at the payment service settles (its final states are final).
        if (!order || model.state.orders.get(order.key)?.payment !== 'PENDING') return;
        const sim = h.sim!;
        const settle = { SUCCESS: sim.pay, FAILED: sim.fail, CLOSED: sim.close }[op.result].bind(sim);
        await settle(order.paymentId!, 'lost');
        const result = op.result;
        everyModel((m) => m.settlePayment(order.key, result));
        log.push(`${JSON.stringify(op)} (payment of ${order.key})`);
        return;
      }
      case 'hint':
        return runHint(op);
      case 'reconcile':
        return runReconcile(op.full === true);
      case 'advance': {
        if (model.state.now + op.ms - start > MAX_SEQUENCE_SPAN_MS) return;
        const then = model.state.now + op.ms;
        const due = [model, ...others].some((copy) =>
          users.some((u) =>
            copy.state.accounts
              .get(u)
              ?.grants.some((g) => !g.ended && (g.voided || (g.expiresAt !== null && g.expiresAt <= then))),
          ),
        );
        clock.set(new Date(then));
        const ms = op.ms;
        everyModel((m) => m.advance(ms));
        // The scheduled sweeps' work, done now: the expiry of holds, then of grants, follows the fake clock.
        await ctx.reservations.expireDue();
        // The grant expiry job finds its users in MySQL: the grants due must be persisted first (else
        // it ends them on a later run, and a refund in between gives back to a grant the model ended).
        if (due) {
          if (killed) await persistenceIdle(env, 60_000);
          if (lostEnqueue) await ctx.persistence.sweep(0);
          await settle(env, users, fail, slowSettle ? 60_000 : SETTLE_TIMEOUT_MS);
        }
        await ctx.grants.expireDue();
        log.push(`${JSON.stringify(op)}`);
        return;
      }
      case 'worker-down': {
        env.fault('worker-restart');
        await env.stopWorker();
        try {
          for (const inner of op.ops) await runOp(inner);
        } finally {
          await env.startWorker();
        }
        log.push('worker started again');
        return;
      }
      case 'worker-kill': {
        // A batch cut short by an earlier kill runs again first: killed a second time, its job would
        // pass BullMQ's stalled limit and fail, leaving its changes to the scheduled sweep.
        await persistenceIdle(env, 30_000);
        await env.stopWorker();
        const child = env.spawnDyingWorker();
        try {
          for (const inner of op.ops) await runOp(inner);
          // The segment's changes (and any the stopped worker left) leave the buffer as a batch: the
          // child takes the first one and dies inside it. With none to take, it is killed idle.
          await ctx.persistence.drainBuffer();
          const how = await dyingWorkerEnd(env, child);
          if (how !== 'SIGKILL') fail(`the dying worker exited with ${how}`);
          log.push(`worker SIGKILLed (${env.lastKill})`);
        } finally {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
          await exited(child, 10_000).catch(() => 'gone');
          await env.startWorker();
        }
        // The batch cut short runs again once its job lock lapses (seconds).
        slowSettle = true;
        killed = true;
        return;
      }
      case 'lose-enqueue': {
        env.fault('lost-enqueue');
        const buffer = ctx.persistence as unknown as { buffer: unknown[]; timer: NodeJS.Timeout | null };
        env.stats.droppedChanges += buffer.buffer.length;
        log.push(`lose-enqueue (${buffer.buffer.length} changes)`);
        buffer.buffer = [];
        if (buffer.timer) clearTimeout(buffer.timer);
        buffer.timer = null;
        lostEnqueue = true;
        return;
      }
      case 'mysql-outage': {
        env.fault('mysql-outage');
        slowSettle = true;
        await env.servers.stopMysql();
        try {
          for (const drawn of op.ops) {
            const inner = resolve(drawn);
            const rsv = reservationOf(inner);
            const real = await send(inner, rsv);
            log.push(`(MySQL down) ${JSON.stringify(inner)} -> ${show(real)}`);
            // SPEC 7.4: answers keep flowing where Redis knows enough; where it does not, 50300 and nothing changed.
            if ('code' in real && real.code === 50300) {
              env.stats.whileMysqlDown.unavailable++;
              continue;
            }
            env.stats.whileMysqlDown.answered++;
            const expected = step(
              (m) => apply(m, inner, rsv !== undefined),
              (e) => matches(inner, e, real),
            );
            if (!matches(inner, expected, real))
              fail(`${inner.t} with MySQL down: service ${show(real)}, model ${show(expected)}`);
            learn(inner, real);
          }
        } finally {
          await env.servers.startMysql();
        }
        return;
      }
      case 'redis-restart': {
        env.fault('redis-restart');
        // The worker is stopped around the restart: a worker that lived through a Redis restart did
        // not finish close() in our runs (reported), and the next worker-down would hang on it.
        await env.stopWorker();
        await env.servers.restartRedis();
        await env.startWorker();
        for (let i = 0; i < 100; i++) {
          if (
            await ctx.redis.ping().then(
              () => true,
              () => false,
            )
          )
            break;
          await new Promise((r) => setTimeout(r, 50));
        }
        log.push('redis restarted');
        return;
      }
      default: {
        op = resolve(op);
        const rsv = reservationOf(op);
        const real = await send(op, rsv);
        const sent = op;
        const expected = step(
          (m) => apply(m, sent, rsv !== undefined),
          (e) => matches(sent, e, real),
        );
        log.push(`${JSON.stringify(op)} -> ${show(real)}`);
        if (!matches(op, expected, real)) fail(`${op.t}: service ${show(real)}, model ${show(expected)}`);
        learn(op, real);
      }
    }
  };

  for (const op of sequence.ops)
    await withDeadline(
      runOp(op),
      OP_TIMEOUT_MS,
      () => `${JSON.stringify(op)} got no answer within ${OP_TIMEOUT_MS} ms`,
    );

  // ---- after the queues drain: Redis, MySQL, the ledger and the model agree ----
  // A killed batch is left to run again as a stalled job before any sweep could persist it instead.
  if (killed) await persistenceIdle(env, 60_000);
  if (lostEnqueue) await ctx.persistence.sweep(0);
  // After a MySQL outage persistence retries with backoff (up to 30 s between attempts).
  await settle(env, users, fail, slowSettle ? 60_000 : SETTLE_TIMEOUT_MS);
  // The grant expiry job once more (it finds its users in MySQL): voided grants whose holds ended leave now.
  await ctx.grants.expireDue();
  everyModel((m) => m.expireGrants());
  await settle(env, users, fail, SETTLE_TIMEOUT_MS);
  // The events: every change's are stored with it (nothing to dispatch for the comparison). The first
  // candidate copy whose events match is the one compared in full; with none, the first copy is.
  const { stored, ids } = await storedEvents(env, users, orders, reservations, fail);
  const chosen = [model, ...others].find((m) => users.every((u) => sameEvents(modelEvents(m, u), stored.get(u)!)));
  await compareState(env, chosen ?? model, users, orders, opts, fail);
  await compareViews(env, chosen ?? model, users, orders, fail);
  if (!chosen) {
    const u = users.find((x) => !sameEvents(modelEvents(model, x), stored.get(x)!))!;
    const want = modelEvents(model, u);
    const got = stored.get(u)!;
    fail(
      `${u}: events differ (${others.length + 1} candidate model copies, none matches)\n` +
        `    stored, not in the model: ${JSON.stringify(multisetMinus(got, want))}\n` +
        `    in the model, not stored: ${JSON.stringify(multisetMinus(want, got))}`,
    );
  }
  await checkDeliveries(env, users, ids, fail);
}

/**
 * Every stored event of these users reached the run's endpoint at least once, signed with its secret.
 * First the scheduled `dispatch-events` job's run, 11 s later on the fake clock (its grace): it queues
 * what a killed worker stored but never queued. The sequence is over; the next one sets the clock.
 */
async function checkDeliveries(env: ModelEnv, users: string[], ids: string[], fail: (m: string) => never) {
  const { receiver, secret } = env.webhook!;
  env.clock.set(new Date(env.clock.now().getTime() + 11_000));
  await env.h.probe.workers.events.dispatchLeftovers();
  const deadline = Date.now() + 30_000;
  let missing = ids;
  while (Date.now() < deadline) {
    // Requests are checked once each, as they come (a soak's receiver gets tens of thousands).
    for (; env.webhook!.checked < receiver.received.length; env.webhook!.checked++) {
      const r = receiver.received[env.webhook!.checked];
      const body = JSON.parse(r.body) as { id?: string };
      if (r.path === '/model' && body.id === r.eventId && signatureValid(r.signature, r.body, secret))
        env.webhook!.delivered.add(r.eventId);
    }
    missing = ids.filter((id) => !env.webhook!.delivered.has(id));
    if (missing.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  env.stats.deliveries += ids.length;
  if (missing.length > 0)
    fail(`${missing.length} of ${ids.length} stored events not delivered signed: ${missing.slice(0, 5).join(', ')}`);
}

/** A model copy's state as a string (Maps as entry lists, bigints as strings): equal copies are one. */
function fingerprint(m: BillingModel): string {
  // Map entries sorted: two orders that touch two users leave the same accounts in another insertion order.
  return JSON.stringify(m.state, (_k, v: unknown) =>
    v instanceof Map
      ? [...v.entries()].sort(([a], [b]) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0))
      : typeof v === 'bigint'
        ? v.toString()
        : v,
  );
}

/** One event as compared: its type and the data fields the model fixes, in a fixed order. */
function eventKey(type: string, data: Record<string, string>): string {
  const fields = EVENT_FIELDS[type] ?? Object.keys(data).sort();
  return `${type} ${JSON.stringify(fields.map((f) => [f, data[f] ?? null]))}`;
}

function modelEvents(m: BillingModel, user: string): string[] {
  return m.eventsOf(user).map((e) => eventKey(e.type, e.data));
}

function sameEvents(a: string[], b: string[]): boolean {
  return JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
}

/** What `a` holds more of than `b` (multisets). */
function multisetMinus(a: string[], b: string[]): string[] {
  const left = [...b];
  return a.filter((x) => {
    const i = left.indexOf(x);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

/**
 * Each user's stored events (`GET /admin/v1/events?user_id=`, every page) in the model's terms: order
 * ids as the runner's order keys, reservation ids as the request ids that made them. Fails on an event
 * of another user or an id listed twice.
 */
async function storedEvents(
  env: ModelEnv,
  users: string[],
  orders: { key: string; orderId: string }[],
  reservations: Map<string, string>,
  fail: (m: string) => never,
): Promise<{ stored: Map<string, string[]>; ids: string[] }> {
  const orderKeys = new Map(orders.map((o) => [o.orderId, o.key]));
  const requestOf = new Map([...reservations].map(([key, id]) => [id, key.slice(key.indexOf('|') + 1)]));
  const out = new Map<string, string[]>();
  const all: string[] = [];
  for (const user of users) {
    const ids = new Set<string>();
    const keys: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const r = await env.h.get(
        '/admin/v1/events',
        { user_id: user, page_size: 100, ...(cursor ? { cursor } : {}) },
        admin,
      );
      if (r.status !== 200) fail(`GET /admin/v1/events: ${r.status} ${JSON.stringify(r.body)}`);
      const body = r.body.data as {
        events: { id: string; type: string; userId: string; data: any }[];
        nextCursor: string | null;
      };
      for (const e of body.events) {
        if (e.userId !== user) fail(`events of ${user}: ${e.id} is ${e.userId}'s`);
        if (ids.has(e.id)) fail(`events of ${user}: ${e.id} listed twice`);
        ids.add(e.id);
        all.push(e.id);
        const data = { ...e.data } as Record<string, string>;
        if (data.orderId !== undefined) data.orderId = orderKeys.get(data.orderId) ?? `unknown ${data.orderId}`;
        if (e.type === 'reservation.expired')
          data.reservationId = requestOf.get(data.reservationId) ?? `unknown ${data.reservationId}`;
        keys.push(eventKey(e.type, data));
        env.stats.events[e.type] = (env.stats.events[e.type] ?? 0) + 1;
      }
      if (!body.nextCursor) break;
      cursor = body.nextCursor;
    }
    out.set(user, keys);
  }
  return { stored: out, ids: all };
}

const OP_TIMEOUT_MS = 90_000;

/** Writes the items to one DeductStream, ends it, and collects every outcome the server streams back. */
function deductStream(client: grpc.Client, items: Record<string, unknown>[]): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const stream = (client as any).DeductStream(metadata(), {
      deadline: Date.now() + 30_000,
    }) as grpc.ClientDuplexStream<unknown, any>;
    const outcomes: any[] = [];
    stream.on('data', (o) => outcomes.push(o));
    stream.on('error', reject);
    stream.on('end', () => resolve(outcomes));
    for (const item of items) stream.write(item);
    stream.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function persistenceJobs(env: ModelEnv, states: ('waiting' | 'active' | 'delayed' | 'prioritized')[]) {
  const counts = await env.h.probe.queues.queueOf('persist-changes').getJobCounts(...states);
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Waits (at most `ms`) until no persistence job is waiting, running or stalled. */
async function persistenceIdle(env: ModelEnv, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && (await persistenceJobs(env, ['waiting', 'active', 'prioritized'])) > 0)
    await sleep(50);
}

/**
 * Waits for the dying worker to SIGKILL itself inside a persistence batch; when no batch is left for
 * it to take (the segment changed nothing, or its changes were lost with the buffer), kills it here.
 * Resolves with how it ended (a signal or an exit code).
 */
async function dyingWorkerEnd(env: ModelEnv, child: ChildProcess): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (child.exitCode === null && child.signalCode === null) {
    if ((await persistenceJobs(env, ['waiting', 'active', 'delayed', 'prioritized'])) === 0 || Date.now() > deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      child.kill('SIGKILL');
      env.fault('worker-sigkill-idle');
      env.lastKill = 'idle: no batch to take';
      return exited(child, 10_000);
    }
    await sleep(50);
  }
  env.fault('worker-sigkill-mid-batch');
  env.lastKill = 'by itself, after a batch commit';
  return exited(child, 10_000);
}

/** A hang is a failure too, named by the operation that hung. */
async function withDeadline<T>(work: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ModelFailure(what())), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until MySQL says the order is paid (the apply-payment job ran). */
async function waitPaid(env: ModelEnv, orderId: string): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const row = await env.h.probe.db('recharge_orders').where({ order_id: orderId }).first('status');
    if (row?.status === 'paid') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new ModelFailure(`order ${orderId} not credited within ${SETTLE_TIMEOUT_MS} ms`);
}

/** Waits until every change of these users is in MySQL (their journals are empty). */
async function settle(env: ModelEnv, users: string[], fail: (m: string) => never, timeoutMs: number): Promise<void> {
  const ctx = env.h.probe;
  const deadline = Date.now() + timeoutMs;
  await ctx.persistence.drainBuffer();
  while (Date.now() < deadline) {
    const lengths = await Promise.all(users.map((u) => ctx.redis.hlen(ctx.keys.pending(u))));
    if (lengths.every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  const left = await Promise.all(
    users.map(
      async (u) => `${u}: ${JSON.stringify(Object.values(await ctx.redis.hgetall(ctx.keys.pending(u)))).slice(0, 400)}`,
    ),
  );
  fail(`changes not persisted within ${timeoutMs} ms:\n    ${left.join('\n    ')}`);
}

/**
 * SPEC 7 for the money features: each grant's remaining and held in Redis (the account's 'g' list, in
 * spending order, ended grants gone), `credit_grants.remaining`, the sum of its `grant_entries` and its
 * status; the spending the limits count per month and day; the calls refunded per record.
 */
async function compareMoney(env: ModelEnv, model: BillingModel, user: string, fail: (m: string) => never) {
  const ctx = env.h.probe;
  const a = model.state.accounts.get(user)!;
  const json = await ctx.redis.hget(ctx.keys.account(user), 'g');
  const live = (json ? (JSON.parse(json) as { id: string; rem: string; held: string }[]) : []).map(
    (g) => `${g.id}:${g.rem}:${g.held}`,
  );
  const order = model.spendingOrderOf(a.grants.filter((g) => !g.ended)).map((g) => `${g.id}:${g.rem}:${g.held}`);
  if (JSON.stringify(live) !== JSON.stringify(order))
    fail(`${user}: Redis grants ${JSON.stringify(live)}, model ${JSON.stringify(order)}`);
  const rows: { grant_id: string; remaining: string | number; status: string; entries: string | number }[] = await ctx
    .db('credit_grants as g')
    .where('g.user_id', user)
    .select(
      'g.grant_id',
      'g.remaining',
      'g.status',
      ctx.db.raw(
        '(SELECT COALESCE(SUM(e.amount), 0) FROM grant_entries e WHERE e.user_id = g.user_id AND e.grant_id = g.grant_id) AS entries',
      ),
    );
  const stored = rows.map((r) => `${r.grant_id}:${BigInt(r.remaining)}:${BigInt(r.entries)}:${r.status}`).sort();
  const modelled = a.grants
    .map((g) => `${g.id}:${g.rem}:${g.rem}:${g.ended ?? (g.voided ? 'voiding' : 'active')}`)
    .sort();
  if (JSON.stringify(stored) !== JSON.stringify(modelled))
    fail(
      `${user}: MySQL grants (id:remaining:entries:status) ${JSON.stringify(stored)}, model ${JSON.stringify(modelled)}`,
    );
  for (const [period, spent] of a.spent) {
    const redisSpent = await ctx.redis.hgetall(ctx.keys.quota(user, period));
    for (const [key, amount] of spent) {
      const field = key === 'm' ? '$m' : `$d:${key}`;
      if (BigInt(redisSpent[field] ?? '0') !== amount)
        fail(`${user}: Redis spent ${period} ${field} ${redisSpent[field]}, model ${amount}`);
    }
  }
  // Refunds as MySQL booked them: calls (free, paid) and the money given back, summed per user.
  const sums: Record<string, string | number | null> = (await ctx
    .db('refunds')
    .where({ user_id: user })
    .sum({ count: 'count', free: 'free_count', paid: 'paid_count', amount: 'amount' })
    .first())!;
  const storedRefunds = ['count', 'free', 'paid', 'amount'].map((k) => String(sums[k] ?? 0)).join('|');
  const answers = [...a.refunds.values()].map((m) => m.answer);
  const total = (k: string) => answers.reduce((n, x) => n + Number(x[k]), 0);
  const givenBack = answers.reduce((n, x) => n + parseMicros(String(x.amount))!, 0n);
  const modelRefunds = [total('count'), total('freeCount'), total('paidCount'), givenBack].join('|');
  if (storedRefunds !== modelRefunds)
    fail(`${user}: refunds in MySQL (count|free|paid|amount) ${storedRefunds}, model ${modelRefunds}`);
}

async function compareState(
  env: ModelEnv,
  model: BillingModel,
  users: string[],
  orders: { key: string; orderId: string }[],
  opts: RunOptions,
  fail: (m: string) => never,
): Promise<void> {
  const ctx = env.h.probe;
  const period = model.period();
  for (const user of users) {
    const a = model.state.accounts.get(user);
    const written = a?.written ?? false;
    if (!written) {
      // SPEC 10.5: reads of a user never written leave nothing lasting (a key with a TTL is not lasting).
      if (opts.strict && (await ctx.redis.pttl(ctx.keys.account(user))) === -1)
        fail(`${user}: read-only calls left a lasting account in Redis`);
      const { balance } = await ctx.repositories.ledger.balanceAndLedgerSum(user);
      if (balance !== 0n) fail(`${user}: never written, MySQL balance ${balance}`);
      continue;
    }
    const [bal, held] = await ctx.redis.hmget(ctx.keys.account(user), 'bal', 'held');
    if (BigInt(bal ?? '0') !== a!.balance) fail(`${user}: Redis balance ${bal}, model ${a!.balance}`);
    if (BigInt(held ?? '0') !== a!.held) fail(`${user}: Redis held ${held}, model ${a!.held}`);
    const { balance, ledgerSum } = await ctx.repositories.ledger.balanceAndLedgerSum(user);
    if (balance !== a!.balance) fail(`${user}: MySQL balance ${balance}, model ${a!.balance}`);
    if (ledgerSum !== a!.balance) fail(`${user}: ledger sum ${ledgerSum}, model ${a!.balance}`);
    for (const p of new Set([period, ...a!.used.keys()])) {
      const redisUsed = await ctx.redis.hgetall(ctx.keys.quota(user, p));
      const mysqlUsed = Object.fromEntries(
        (await ctx.repositories.accounts.quotaUsage(user, p)).map((r) => [r.service_name, Number(r.used)]),
      );
      for (const svc of MODEL_SERVICES.map((s) => s.name)) {
        const want = model.usedOf(a!, p, svc);
        if (Number(redisUsed[svc] ?? 0) !== want)
          fail(`${user}: Redis quota used ${p}/${svc} ${redisUsed[svc]}, model ${want}`);
        // An open hold's free calls are taken in Redis only; MySQL learns of them at the commit.
        const held = [...a!.holds.values()]
          .filter((x) => x.state === 'held' && x.period === p && x.service === svc)
          .reduce((n, x) => n + x.free, 0);
        if ((mysqlUsed[svc] ?? 0) !== want - held)
          fail(`${user}: MySQL quota used ${p}/${svc} ${mysqlUsed[svc]}, model ${want - held}`);
      }
    }
    const rows: Record<string, unknown>[] = await ctx
      .db('consumption_records')
      .where({ user_id: user })
      .select('request_id', 'service_name', 'type', 'count', 'free_count', 'paid_count', 'amount');
    const stored = rows
      .map((r) =>
        [
          r.request_id,
          r.service_name,
          r.type,
          Number(r.count),
          Number(r.free_count),
          Number(r.paid_count),
          String(r.amount),
        ].join('|'),
      )
      .sort();
    const want = a!.records
      .map((r) => [r.requestId, r.service, r.type, r.count, r.free, r.paid, r.amount.toString()].join('|'))
      .sort();
    if (JSON.stringify(stored) !== JSON.stringify(want))
      fail(`${user}: consumption records ${JSON.stringify(stored)}, model ${JSON.stringify(want)}`);
    await compareMoney(env, model, user, fail);
    const acct = (await env.h.get('/api/v1/billing/account', { user_id: user })).body.data;
    if (acct.balance !== formatMicros(model.available(a!)))
      fail(`${user}: GET /account balance ${acct.balance}, model ${formatMicros(model.available(a!))}`);
    for (const q of acct.quotas as { serviceName: string; usedQuota: number }[]) {
      const want = model.usedShown(a!, q.serviceName);
      if (q.usedQuota !== want) fail(`${user}: GET /account usedQuota ${q.serviceName} ${q.usedQuota}, model ${want}`);
    }
  }
  for (const o of orders) {
    const row = await ctx.db('recharge_orders').where({ order_id: o.orderId }).first('status');
    const want = model.state.orders.get(o.key)!.status;
    if (row?.status !== want) fail(`order ${o.orderId}: MySQL status ${row?.status}, model ${want}`);
  }
}
