/**
 * Operation sequences for the model test, as plain JSON (printable and replayable as code).
 *
 * Concurrency: a `group` runs its operations with Promise.all. The runner accepts the answers if SOME
 * serial order of the group, applied to the model, gives exactly those answers (groups hold at most
 * 3 operations: at most 6 orders to try). Callbacks, clock moves and faults are never inside a group.
 */
import fc from 'fast-check';

/** Users of a sequence, by index. 'c' and 'c:d' make "user:key" joins ambiguous on purpose. */
export const USER_NAMES = ['a', 'b.x@y', 'c', 'c:d'] as const;

/**
 * Request ids (SPEC 2: 1–128 printable ASCII, byte-exact, SPEC 10.1). The hostile ones differ from
 * a plain id only by a trailing space or case, or carry characters that mean something in Redis keys
 * and SCAN patterns.
 */
export const PLAIN_REQUEST_IDS = ['r1', 'r2', 'r3', 'r4'];
export const HOSTILE_REQUEST_IDS = ['r1 ', 'R1', 'r1  ', 'r:{1}', 'r*?[1]', '{a}:*', ' r2'];
/** Hostile ids the service handled before the identity fixes (only keys and patterns, no collation). */
export const PATTERN_REQUEST_IDS = ['r:{1}', 'r*?[1]', '{a}:*'];

/** Adjustment keys: with users 'c' and 'c:d', 'd:k1' and 'k1' join to the same "c:d:k1". */
export const ADJUST_KEYS = ['k1', 'k2', 'd:k1'];
export const PLAIN_ADJUST_KEYS = ['k1', 'k2'];

export const SERVICES = ['alpha', 'beta', 'gamma'] as const;

/** Credit grant ids (the user-id rule): look-alikes by case, and hostile ones the rule refuses. */
export const GRANT_IDS = ['g1', 'g2', 'g3'];
export const HOSTILE_GRANT_IDS = ['G1', 'g1 ', 'g:{1}', ''];
/** Refund ids (the request-id rule): look-alikes by a trailing space and case. */
export const REFUND_IDS = ['f1', 'f2', 'f3'];
export const HOSTILE_REFUND_IDS = ['f1 ', 'F1', 'f*?[1]'];

export type Transport = 'http' | 'grpc';

export type SimpleOp =
  | { t: 'check'; u: number; s: string; n: number }
  | { t: 'deduct'; u: number; r: string; s: string; n: number }
  | { t: 'reserve'; u: number; r: string; s: string; n: number; ttl: number }
  /**
   * commit or release the hold made with request id `r`; `recent` k: the k-th most recent hold made
   * instead (user and request id), if any (left out: none)
   */
  | { t: 'commit'; u: number; r: string; n: number; recent?: number | null }
  | { t: 'release'; u: number; r: string; recent?: number | null }
  | { t: 'adjust'; u: number; k: string; micros: string }
  /** billing.v1 BillingInternalService CheckQuota and DeductQuota over gRPC (the same model operations) */
  | { t: 'grpc-check'; u: number; s: string; n: number }
  | { t: 'grpc-deduct'; u: number; r: string; s: string; n: number }
  /** BillingInternalService Reserve, CommitReservation, ReleaseReservation */
  | { t: 'grpc-reserve'; u: number; r: string; s: string; n: number; ttl: number }
  | { t: 'grpc-commit'; u: number; r: string; n: number; recent?: number | null }
  | { t: 'grpc-release'; u: number; r: string; recent?: number | null }
  /** the account view: `GET /api/v1/billing/account` or BillingService GetAccount */
  | { t: 'account'; u: number; via: 'http' | 'grpc' }
  /**
   * a credit grant (admin): `amount` as sent (hostile: 0, negative, 7 decimals), `exp` its expiry as an
   * offset from the sequence's start (ms; null: none; a replay sends the same instant), `prio` 0–1000
   */
  | { t: 'grant'; u: number; g: string; amount: string; cat: 'promotional' | 'paid'; prio: number; exp: number | null }
  /** `recent` k: the runner voids the k-th most recent grant given instead (user and id), if any */
  | { t: 'void'; u: number; g: string; recent: number | null }
  /**
   * a refund of the deduct made with request id `r`: `n` calls, null for the whole call; `recent` k:
   * the runner refunds the k-th most recent deduct accepted instead (user and request id), if any;
   * `via` grpc: BillingInternalService Refund (its count left out for the whole call, as over HTTP; left
   * out: http)
   */
  | { t: 'refund'; u: number; f: string; r: string; n: number | null; recent: number | null; via?: Transport }
  /** `GET /api/v1/billing/alerts`: the thresholds in force (read-only, so also inside groups) */
  | { t: 'get-alerts'; u: number };

/**
 * Settings (sent one at a time, never in a group: they are written to MySQL, then to Redis). A field
 * left out (undefined) is not sent: the setting stays; null takes it away.
 */
export type SettingOp =
  | { t: 'limits'; u: number; daily?: string | null; monthly?: string | null }
  | { t: 'pricing'; u: number; s: string; free?: number | null; price?: string | null }
  /** `PUT /api/v1/billing/alerts`: `low` balance_low, `pct` quota_low_percent (hostile: < 0, > 100, 7 decimals) */
  | { t: 'alerts'; u: number; low?: string | null; pct?: number | null };

/** One item of a batch of deducts. */
export interface BatchItem {
  u: number;
  r: string;
  s: string;
  n: number;
}

/**
 * Batches: each item is one deduct (or check), items of one user in item order. Never inside a group
 * (a batch is not atomic: another call may land between two of its items) nor a MySQL outage (an item
 * that met the outage answers 50300 and may have applied: the answer cannot say whether).
 */
export type BatchOp =
  /** grpc: DeductBatch; stream: the items written to one DeductStream */
  | { t: 'deduct-batch'; via: 'http' | 'grpc' | 'stream'; items: BatchItem[] }
  | { t: 'check-batch'; items: { u: number; s: string; n: number }[] };

/** What a worker fault's segment may send while the worker is down or dying. */
export type SegmentOp = SimpleOp | SettingOp | BatchOp | { t: 'group'; ops: SimpleOp[] };

export type Op =
  | SimpleOp
  | SettingOp
  | BatchOp
  | { t: 'group'; ops: SimpleOp[] }
  /**
   * `POST /recharge` or gRPC `Recharge` (left out: http); `create` fail: the payment service refuses
   * CreatePayment (503 / 10009, the order failed, recharge.failed)
   */
  | { t: 'recharge'; u: number; micros: string; via?: Transport; create?: 'ok' | 'fail' }
  /**
   * a signed callback; order: index among the orders created so far (none: an unknown order id);
   * status: what it reports (left out: success)
   */
  | {
      t: 'callback';
      order: number;
      pay: 'real' | 'other';
      amount: 'right' | 'wrong';
      copies: 1 | 2;
      status?: 'success' | 'failed' | 'closed';
    }
  /** the payment service settles a pending payment and its callback is lost (GetPayment knows) */
  | { t: 'settle'; order: number; result: 'SUCCESS' | 'FAILED' | 'CLOSED' }
  /**
   * `POST /admin/v1/reconciliation/runs`, followed to its end: it checks every account changed and
   * every pending order of the database (other sequences' too), so the runner learns from MySQL which
   * of this sequence's settled payments it reached; `full`: the full audit (every account)
   */
  | { t: 'reconcile'; full?: boolean }
  /** gRPC RechargeCallback: a hint, confirmed by GetPayment; `pay` the payment id it names */
  | { t: 'hint'; order: number; pay: 'real' | 'other'; copies: 1 | 2 }
  | { t: 'advance'; ms: number }
  /** the worker role stops, the ops run, the worker starts again */
  | { t: 'worker-down'; ops: SegmentOp[] }
  /**
   * The worker runs as a process of its own that SIGKILLs itself inside its first persistence batch,
   * after the MySQL commit and before the journals are cleared (`after-batch-commit`); the ops run
   * meanwhile; then a new worker starts and must run the stalled batch again without booking it twice
   */
  | { t: 'worker-kill'; ops: SegmentOp[] }
  /** the API's not-yet-enqueued persistence buffer is lost (a crash): the sweep must recover it */
  | { t: 'lose-enqueue' }
  | { t: 'redis-restart' }
  /** MySQL is stopped, the ops run one by one (each may be 50300 and change nothing), MySQL starts again */
  | { t: 'mysql-outage'; ops: SimpleOp[] };

export interface Sequence {
  /** start instant (UTC ISO): just before a business day or month boundary, or mid-month */
  start: string;
  ops: Op[];
}

export interface GenOptions {
  /** SPEC 11's cap on checks: a check over it is answered `too_many_calls` (generated when true) */
  overCap: boolean;
  /**
   * SPEC as of 2026-11-29, including what the in-flight changes bring: ids that collide under a PAD or
   * case-insensitive collation, and adjustment keys that collide when joined to their user
   */
  hostile: boolean;
  maxOps: number;
  redisRestart: boolean;
  mysqlOutage: boolean;
  /** worker SIGKILL mid-batch (slow: a process start and a lapsed job lock, seconds each) */
  workerKill: boolean;
}

/** Asia/Shanghai is UTC+8: 16:00Z is midnight there. */
export const STARTS = [
  '2026-11-30T15:40:00.000Z', // 20 minutes before December (a month boundary)
  '2026-12-01T15:50:00.000Z', // 10 minutes before a day boundary
  '2026-12-15T04:00:00.000Z', // mid-month
  '2027-01-31T15:59:00.000Z', // one minute before February
];

export function sequenceArb(o: GenOptions): fc.Arbitrary<Sequence> {
  const requestIds = o.hostile
    ? [...PLAIN_REQUEST_IDS, ...HOSTILE_REQUEST_IDS]
    : [...PLAIN_REQUEST_IDS, ...PATTERN_REQUEST_IDS];
  const u = fc.integer({ min: 0, max: USER_NAMES.length - 1 });
  // Half the picks among the hostile ids, so that an id and its look-alike meet in one sequence.
  const r = o.hostile
    ? fc.oneof(fc.constantFrom(...PLAIN_REQUEST_IDS), fc.constantFrom(...HOSTILE_REQUEST_IDS))
    : fc.constantFrom(...requestIds);
  const s = fc.constantFrom(...SERVICES);
  const n = fc.integer({ min: 1, max: 4 });
  const ttl = fc.constantFrom(60, 600, 3600);
  // Commits and releases mostly name a recent hold (so that they meet one), sometimes the ids as drawn.
  const recent = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 3 }) }, fc.constant(null));
  const checkCount = o.overCap ? fc.oneof(n, n, n, fc.constant(10_001)) : n;
  const simple: fc.Arbitrary<SimpleOp> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('check' as const),
        u,
        s,
        n: checkCount,
      }),
    },
    { weight: 8, arbitrary: fc.record({ t: fc.constant('deduct' as const), u, r, s, n }) },
    {
      weight: 4,
      arbitrary: fc.record({ t: fc.constant('reserve' as const), u, r, s, n, ttl }),
    },
    {
      weight: 3,
      arbitrary: fc.record({ t: fc.constant('commit' as const), u, r, n: fc.integer({ min: 0, max: 5 }), recent }),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), u, r, recent }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('grpc-check' as const), u, s, n: checkCount }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('grpc-deduct' as const), u, r, s, n }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('grpc-reserve' as const), u, r, s, n, ttl }) },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('grpc-commit' as const),
        u,
        r,
        n: fc.integer({ min: 0, max: 5 }),
        recent,
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('grpc-release' as const), u, r, recent }) },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('account' as const),
        u,
        via: fc.constantFrom('http' as const, 'grpc' as const),
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('get-alerts' as const), u }) },
    {
      weight: 2,
      arbitrary: fc.record({
        t: fc.constant('adjust' as const),
        u,
        k: fc.constantFrom(...(o.hostile ? ADJUST_KEYS : PLAIN_ADJUST_KEYS)),
        micros: fc.constantFrom('1000000', '2500000', '250000', '-500000', '-3000000'),
      }),
    },
  );
  const money = moneyArbs(o, u, r, s);
  const simpleOrMoney: fc.Arbitrary<SimpleOp> = fc.oneof(
    { weight: 10, arbitrary: simple },
    { weight: 3, arbitrary: money },
  );
  const group = fc.record({
    t: fc.constant('group' as const),
    ops: fc.array(simpleOrMoney, { minLength: 2, maxLength: 3 }),
  });
  const setting = settingArb(o, u, s);
  const alerts = alertsArb(o, u);
  // Batches of 1-6 items over the sequence's users, often one user's items in a row (replays included).
  const batch: fc.Arbitrary<BatchOp> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('deduct-batch' as const),
        via: fc.constantFrom('http' as const, 'grpc' as const, 'stream' as const),
        items: fc.array(fc.record({ u, r, s, n }), { minLength: 1, maxLength: 6 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        t: fc.constant('check-batch' as const),
        items: fc.array(fc.record({ u, s, n: checkCount }), { minLength: 1, maxLength: 4 }),
      }),
    },
  );
  const segment = fc.array(
    fc.oneof(
      { weight: 30, arbitrary: simpleOrMoney },
      { weight: 10, arbitrary: group },
      { weight: 5, arbitrary: batch },
      { weight: 2, arbitrary: setting },
      { weight: 1, arbitrary: alerts },
    ),
    { maxLength: 6 },
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 200, arbitrary: simple },
    { weight: 60, arbitrary: money },
    { weight: 15, arbitrary: setting },
    { weight: 15, arbitrary: alerts },
    { weight: 50, arbitrary: group },
    { weight: 25, arbitrary: batch },
    {
      weight: 20,
      arbitrary: fc.record({
        t: fc.constant('recharge' as const),
        u,
        micros: fc.constantFrom('10000', '1000000', '2500000'),
        via: fc.constantFrom('http' as const, 'grpc' as const),
        create: fc.constantFrom('ok' as const, 'ok' as const, 'ok' as const, 'ok' as const, 'fail' as const),
      }),
    },
    {
      weight: 30,
      arbitrary: fc.record({
        t: fc.constant('callback' as const),
        order: fc.integer({ min: 0, max: 5 }),
        pay: fc.constantFrom('real' as const, 'other' as const),
        amount: fc.constantFrom('right' as const, 'right' as const, 'wrong' as const),
        copies: fc.constantFrom(1 as const, 2 as const),
        status: fc.constantFrom(
          'success' as const,
          'success' as const,
          'success' as const,
          'failed' as const,
          'closed' as const,
        ),
      }),
    },
    {
      weight: 14,
      arbitrary: fc.record({
        t: fc.constant('settle' as const),
        order: fc.integer({ min: 0, max: 5 }),
        result: fc.constantFrom('SUCCESS' as const, 'SUCCESS' as const, 'FAILED' as const, 'CLOSED' as const),
      }),
    },
    {
      weight: 12,
      arbitrary: fc.record({
        t: fc.constant('hint' as const),
        order: fc.integer({ min: 0, max: 5 }),
        pay: fc.constantFrom('real' as const, 'real' as const, 'other' as const),
        copies: fc.constantFrom(1 as const, 2 as const),
      }),
    },
    {
      weight: 6,
      arbitrary: fc.record({ t: fc.constant('reconcile' as const), full: fc.constantFrom(false, false, false, true) }),
    },
    {
      weight: 20,
      arbitrary: fc.record({
        t: fc.constant('advance' as const),
        ms: fc.constantFrom(1_000, 60_000, 600_000, 3_600_000, 6 * 3_600_000),
      }),
    },
    {
      weight: 10,
      arbitrary: fc.record({
        t: fc.constant('worker-down' as const),
        ops: segment,
      }),
    },
    // Rare: about one sequence in 8 of CI length has one (each costs seconds).
    ...(o.workerKill
      ? [{ weight: 1, arbitrary: fc.record({ t: fc.constant('worker-kill' as const), ops: segment }) }]
      : []),
    { weight: 10, arbitrary: fc.constant({ t: 'lose-enqueue' as const }) },
    ...(o.redisRestart ? [{ weight: 2, arbitrary: fc.constant({ t: 'redis-restart' as const }) }] : []),
    ...(o.mysqlOutage
      ? [
          {
            weight: 2,
            arbitrary: fc.record({
              t: fc.constant('mysql-outage' as const),
              ops: fc.array(simpleOrMoney, { maxLength: 6 }),
            }),
          },
        ]
      : []),
  );
  return fc.record({
    start: fc.constantFrom(...STARTS),
    ops: fc.array(op, { minLength: 1, maxLength: o.maxOps, size: 'max' }),
  });
}

/** Grants, voids and refunds: single calls, also sent inside concurrent groups. */
function moneyArbs(
  o: GenOptions,
  u: fc.Arbitrary<number>,
  r: fc.Arbitrary<string>,
  s: fc.Arbitrary<string>,
): fc.Arbitrary<SimpleOp> {
  void s;
  const g = o.hostile
    ? fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...GRANT_IDS) }, fc.constantFrom(...HOSTILE_GRANT_IDS))
    : fc.constantFrom(...GRANT_IDS);
  const amount = o.hostile
    ? fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom('0.50', '1.00', '0.30', '0.000001') },
        fc.constantFrom('0', '-1.00', '0.0000001'),
      )
    : fc.constantFrom('0.50', '1.00', '0.30', '0.000001');
  const prio = o.hostile
    ? fc.oneof({ weight: 12, arbitrary: fc.constantFrom(10, 50, 50) }, fc.constantFrom(-1, 1001))
    : fc.constantFrom(10, 50, 50);
  // Expiries inside the sequence's span, so that the clock crosses them; -1 min: already past.
  const exp = fc.constantFrom(
    null,
    null,
    30_000,
    600_000,
    2 * 3_600_000,
    8 * 3_600_000,
    ...(o.hostile ? [-60_000] : []),
  );
  const f = o.hostile
    ? fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...REFUND_IDS) }, fc.constantFrom(...HOSTILE_REFUND_IDS))
    : fc.constantFrom(...REFUND_IDS);
  const n = o.hostile
    ? fc.oneof({ weight: 8, arbitrary: fc.constantFrom(null, null, 1, 2, 3) }, fc.constantFrom(0, 10_001))
    : fc.constantFrom(null, null, 1, 2, 3);
  // Mostly a recent target (so that refunds and voids meet what they name), sometimes the ids as drawn.
  const recent = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 3 }) }, fc.constant(null));
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('grant' as const),
        u,
        g,
        amount,
        cat: fc.constantFrom('promotional' as const, 'paid' as const),
        prio,
        exp,
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('void' as const), u, g, recent }) },
    {
      weight: 5,
      arbitrary: fc.record({
        t: fc.constant('refund' as const),
        u,
        f,
        r,
        n,
        recent,
        via: fc.constantFrom('http' as const, 'http' as const, 'grpc' as const),
      }),
    },
  );
}

/** Spending limits and per-user prices; a field is left out about one time in three. */
function settingArb(o: GenOptions, u: fc.Arbitrary<number>, s: fc.Arbitrary<string>): fc.Arbitrary<SettingOp> {
  const limit = fc.constantFrom(null, '0.00', '0.50', '1.00', '3.00', ...(o.hostile ? ['-1.00'] : []));
  const price = fc.constantFrom(null, '0.00', '0.10', '0.30', ...(o.hostile ? ['-0.10'] : []));
  return fc.oneof(
    fc.record({ t: fc.constant('limits' as const), u, daily: limit, monthly: limit }, { requiredKeys: ['t', 'u'] }),
    fc.record(
      {
        t: fc.constant('pricing' as const),
        u,
        s,
        free: fc.constantFrom(null, 0, 1, 5, ...(o.hostile ? [-1] : [])),
        price,
      },
      { requiredKeys: ['t', 'u', 's'] },
    ),
  );
}

/**
 * Alert thresholds (SPEC 13): balance_low around the balances the sequences reach (a few units, the
 * default 10.00 is rarely reached), so that the balance alarms cross both ways; a field left out about
 * one time in three.
 */
function alertsArb(o: GenOptions, u: fc.Arbitrary<number>): fc.Arbitrary<SettingOp> {
  // Thresholds around the balances the sequences reach (a few units), so that alarms cross both ways.
  const low = fc.constantFrom(
    null,
    '0.00',
    '0.30',
    '0.50',
    '1.00',
    '2.00',
    '3.50',
    '20.00',
    ...(o.hostile ? ['-1.00', '1.0000001'] : []),
  );
  const pct = fc.constantFrom(null, 1, 34, 50, 67, 80, 100, ...(o.hostile ? [0, -5, 101, 50.5] : []));
  return fc.record({ t: fc.constant('alerts' as const), u, low, pct }, { requiredKeys: ['t', 'u'] });
}

/** Counts the operations a sequence sends (a group's and a segment's members each count). */
export function countOps(ops: Op[]): number {
  let n = 0;
  for (const op of ops) {
    if (op.t === 'group') n += op.ops.length;
    else if (op.t === 'deduct-batch' || op.t === 'check-batch') n += op.items.length;
    else if (op.t === 'worker-down' || op.t === 'worker-kill' || op.t === 'mysql-outage') n += countOps(op.ops);
    else if (op.t === 'callback' || op.t === 'hint') n += op.copies;
    else n++;
  }
  return n;
}

/** Counts the operations a sequence sends by kind (a batch's items under its own kind and transport). */
export function countKinds(ops: Op[], into: Record<string, number>): Record<string, number> {
  const add = (kind: string, n = 1) => (into[kind] = (into[kind] ?? 0) + n);
  for (const op of ops) {
    if (op.t === 'group' || op.t === 'worker-down' || op.t === 'worker-kill' || op.t === 'mysql-outage')
      countKinds(op.ops, into);
    else if (op.t === 'deduct-batch') add(`deduct-batch-${op.via}`, op.items.length);
    else if (op.t === 'check-batch') add('check-batch', op.items.length);
    else if (op.t === 'account') add(`account-${op.via}`);
    else if (op.t === 'callback') add(`callback-${op.status ?? 'success'}`, op.copies);
    else if (op.t === 'hint') add('hint-grpc', op.copies);
    else if (op.t === 'reconcile') add(op.full ? 'reconcile-full' : 'reconcile');
    else if (op.t === 'refund' || op.t === 'recharge') add(`${op.t}-${op.via ?? 'http'}`);
    else if (op.t === 'advance' || op.t === 'settle' || op.t === 'lose-enqueue' || op.t === 'redis-restart') continue;
    else add(op.t);
  }
  return into;
}
