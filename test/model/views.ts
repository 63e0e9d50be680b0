/**
 * The read-only views (SPEC 5, 11, 14, 15) called after a sequence's queues drained, each compared
 * with the model: records (HTTP, gRPC, the CSV export), statistics, monthly statements, recharge
 * orders, the catalogue, grants, limits, prices and the admin account and ledger views. Every user
 * of the sequence is read; one the model never wrote must see nothing and keep nothing lasting.
 *
 * What a view adds up is computed here from the model's state (records with the time they were
 * charged, deducts with the grant parts that paid them, holds, refunds, orders), never from MySQL.
 */
import { DateTime } from 'luxon';
import type * as grpc from '@grpc/grpc-js';
import { call as grpcCall, callError } from '../fixtures/grpc-clients.js';
import { GATEWAY_TOKEN } from '../support/harness.js';
import { admin, grantsPath, pricingPath, LIMITS } from '../support/money.js';
import { BillingModel, formatMicros, parseMicros, type ModelAccount, type ModelRecord } from './model.js';
import type { ModelEnv } from './runner.js';

const BILLING = '/api/v1/billing';
/** Small pages, so that a sequence's few records already take several (cursor and offset paging). */
const PAGE = 7;

/** One user's views: the model's account (an empty one for a user it never wrote) and where to report. */
interface Ctx {
  env: ModelEnv;
  model: BillingModel;
  user: string;
  a: ModelAccount;
  orders: { key: string; orderId: string }[];
  fail: (m: string) => never;
  /** record id by request id, from the HTTP listing (the model does not know the ids the service gave) */
  ids: Map<string, string>;
  refunds: Refund[];
}

/** A refund as the views show it: calls and money given back, and the part the balance got. */
interface Refund {
  requestId: string;
  count: number;
  net: bigint;
  toBalance: bigint;
}

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
const sum = (xs: bigint[]) => xs.reduce((s, x) => s + x, 0n);
const month = (m: BillingModel, at: number) => DateTime.fromMillis(at, { zone: m.config.zone }).toFormat('yyyy-LL');
const iso = (ms: number) => new Date(ms).toISOString();

/** The fields the model fixes, in its order (others the service adds are not compared). */
function expectFields(c: Ctx, view: string, got: Record<string, unknown>, want: Record<string, unknown>): void {
  const seen = Object.fromEntries(Object.keys(want).map((k) => [k, got?.[k]]));
  if (show(seen) !== show(want)) c.fail(`${c.user}: ${view}: service ${show(seen)}, model ${show(want)}`);
}

/** Two multisets of rows; the failure names what each has that the other lacks. */
function expectRows(c: Ctx, view: string, got: string[], want: string[]): void {
  const rest = [...want];
  const extra = got.filter((x) => {
    const i = rest.indexOf(x);
    if (i >= 0) rest.splice(i, 1);
    return i < 0;
  });
  if (extra.length > 0 || rest.length > 0)
    c.fail(`${c.user}: ${view}: service has ${show(extra)}, model has ${show(rest)} (${got.length} vs ${want.length})`);
}

async function get(c: Ctx, path: string, query: Record<string, string | number>, headers?: Record<string, string>) {
  const r = await c.env.h.get(path, query, headers);
  if (r.status !== 200 || r.body?.success !== true) c.fail(`${c.user}: GET ${path}: ${r.status} ${show(r.body)}`);
  return r.body.data;
}

/** A view that is not JSON (CSV): the harness's `get` parses JSON only. */
async function getText(c: Ctx, path: string, query: Record<string, string>): Promise<string> {
  const res = await fetch(`${c.env.h.url}${path}?${new URLSearchParams(query)}`, {
    headers: { authorization: `Bearer ${GATEWAY_TOKEN}` },
  });
  const text = await res.text();
  if (res.status !== 200 || !res.headers.get('content-type')?.startsWith('text/csv'))
    c.fail(`${c.user}: GET ${path} (CSV): ${res.status} ${res.headers.get('content-type')} ${text.slice(0, 300)}`);
  return text;
}

async function rpc(c: Ctx, client: grpc.Client, method: string, request: Record<string, unknown>): Promise<any> {
  try {
    return await grpcCall(client, method, request);
  } catch (err) {
    const e = callError(err as grpc.ServiceError);
    return c.fail(`${c.user}: gRPC ${method}: ${e.code} ${e.details} (billing-code ${e.billingCode})`);
  }
}

/** RFC 4180 rows (CRLF, quoted cells), with the export's `'` before formula-like text taken off again. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  const re = /("(?:[^"]|"")*"|[^,\r\n]*)(,|\r\n|$)/y;
  let row: string[] = [];
  while (re.lastIndex < text.length) {
    const m = re.exec(text)!;
    let cell = m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1];
    if (/^'[=+\-@\t\r]/.test(cell)) cell = cell.slice(1);
    row.push(cell);
    if (m[2] !== ',') {
      rows.push(row);
      row = [];
    }
  }
  return rows;
}

// ---- what the model says each view shows ----

/** What the balance paid of a record and what each grant paid (grants first, in the order taken). */
function paidBy(a: ModelAccount, r: ModelRecord): { balance: bigint; grants: bigint[] } {
  const d = a.deducts.get(r.requestId);
  if (d) {
    const grants = d.grantParts.map(([, part]) => part);
    return { balance: d.amount - sum(grants), grants };
  }
  // A commit charges from the hold's parts in the order they were held, grants before the balance.
  let rest = r.amount;
  const grants: bigint[] = [];
  for (const [, part] of a.holds.get(r.requestId)!.grantParts) {
    const take = part < rest ? part : rest;
    if (take > 0n) grants.push(take);
    rest -= take;
  }
  return { balance: rest, grants };
}

/**
 * Each refund (in the order made) with what it gave back (`net`: less a slice an ended grant forfeited)
 * and what of it went to the balance: the model's rule, the balance (paid last) first, then the grants.
 */
function refundsOf(a: ModelAccount): Refund[] {
  const done = new Map<string, { paid: number; gross: bigint }>();
  return [...a.refunds.values()].map(({ payload, answer }) => {
    const requestId = payload.slice(0, payload.lastIndexOf('|'));
    const d = a.deducts.get(requestId)!;
    const before = done.get(requestId) ?? { paid: 0, gross: 0n };
    const paid = Number(answer.paidCount);
    // The last paid call refunded takes whatever is left of the amount (the model's refund does the same).
    const gross = paid === d.paid - before.paid ? d.amount - before.gross : BigInt(paid) * (d.amount / BigInt(d.paid));
    done.set(requestId, { paid: before.paid + paid, gross: before.gross + gross });
    const balancePart = d.amount - sum(d.grantParts.map(([, part]) => part));
    const end = before.gross + gross < balancePart ? before.gross + gross : balancePart;
    const toBalance = end > before.gross ? end - before.gross : 0n;
    return { requestId, count: Number(answer.count), net: parseMicros(String(answer.amount))!, toBalance };
  });
}

function usage(records: ModelRecord[]) {
  return {
    totalCount: records.reduce((n, r) => n + r.count, 0),
    freeCount: records.reduce((n, r) => n + r.free, 0),
    paidCount: records.reduce((n, r) => n + r.paid, 0),
    totalCost: formatMicros(sum(records.map((r) => r.amount))),
  };
}

/** A record as the listing and the export show it; `id` only where the listing's ids are known. */
function recordRow(c: Ctx, r: ModelRecord, withId: boolean, refunds = true): string {
  const back = c.refunds.filter((x) => x.requestId === r.requestId);
  const refunded = [back.reduce((n, x) => n + x.count, 0), formatMicros(sum(back.map((x) => x.net)))];
  const fields = [r.requestId, r.service, r.type, r.count, r.free, r.paid, formatMicros(r.amount), iso(r.at)];
  return show([...(withId ? [c.ids.get(r.requestId)] : []), ...fields, ...(refunds ? refunded : [])]);
}

// ---- the views ----

/** GET /records, every page by nextCursor: the model's records, newest first; learns the record ids. */
async function compareRecords(c: Ctx): Promise<void> {
  const got: any[] = [];
  let cursor: string | null = null;
  let total = -1;
  for (let page = 0; page < 1000; page++) {
    const q = { user_id: c.user, page_size: PAGE, ...(cursor ? { cursor } : {}) };
    const data: any = await get(c, `${BILLING}/records`, q);
    if (total >= 0 && data.total !== total) c.fail(`${c.user}: GET /records: total ${data.total}, then ${total}`);
    total = data.total;
    got.push(...data.records);
    cursor = data.nextCursor;
    if (!cursor) break;
  }
  expectFields(c, 'GET /records total', { total }, { total: c.a.records.length });
  const times: string[] = got.map((r) => r.createdAt);
  newestFirst(c, 'GET /records', times);
  for (const r of got) {
    if (c.ids.has(r.requestId)) c.fail(`${c.user}: GET /records: request ${show(r.requestId)} listed twice`);
    c.ids.set(r.requestId, r.id);
    // A paid call carries the unit price it was charged at (SPEC 14).
    if (r.paidCount > 0 && parseMicros(r.unitPrice)! * BigInt(r.paidCount) !== parseMicros(r.amount))
      c.fail(`${c.user}: GET /records: ${r.id} unit price ${r.unitPrice} × ${r.paidCount} is not ${r.amount}`);
  }
  const row = (r: any) => [r.requestId, r.serviceName, r.type, r.count, r.freeCount, r.paidCount, r.amount];
  const seen = got.map((r) => show([...row(r), r.createdAt, r.refundedCount, r.refundedAmount]));
  const want = c.a.records.map((r) => recordRow(c, r, false));
  expectRows(c, 'GET /records', seen, want);
}

function newestFirst(c: Ctx, view: string, times: string[], oldestFirst = false): void {
  const i = times.findIndex((t, k) => k > 0 && (oldestFirst ? times[k - 1] > t : times[k - 1] < t));
  if (i > 0) c.fail(`${c.user}: ${view}: ${times[i - 1]} listed before ${times[i]}`);
}

/**
 * gRPC ListRecords, page by page (offset paging): the same records, type as 1 free, 2 balance, 3 mixed,
 * with what refunds gave back; a paid record's unit price × paid calls is its amount.
 */
async function compareGrpcRecords(c: Ctx): Promise<void> {
  const types: Record<number, string> = { 1: 'free', 2: 'balance', 3: 'mixed' };
  const got: any[] = [];
  for (let page = 1; page < 1000; page++) {
    const reply = await rpc(c, c.env.grpc.user, 'ListRecords', { userId: c.user, page, pageSize: PAGE });
    expectFields(c, `gRPC ListRecords page ${page} total`, reply, { total: c.a.records.length });
    got.push(...reply.records);
    if (reply.records.length < PAGE) break;
  }
  const at = (t: { seconds: string; nanos: number }) => iso(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
  const times = got.map((r) => at(r.createdAt));
  newestFirst(c, 'gRPC ListRecords', times);
  const row = (r: any) => [r.id, r.requestId, r.serviceName, types[r.type], r.count, r.freeCount, r.paidCount];
  for (const r of got)
    if (r.paidCount > 0 && parseMicros(r.unitPriceDecimal)! * BigInt(r.paidCount) !== parseMicros(r.amountDecimal))
      c.fail(
        `${c.user}: gRPC ListRecords: ${r.id} unit price ${r.unitPriceDecimal} × ${r.paidCount} is not ${r.amountDecimal}`,
      );
  const seen = got.map((r) =>
    show([...row(r), r.amountDecimal, at(r.createdAt), r.refundedCount, r.refundedAmountDecimal]),
  );
  const want = c.a.records.map((r) => recordRow(c, r, true));
  expectRows(c, 'gRPC ListRecords', seen, want);
}

/** GET /records/export: CSV, oldest first, the same records with their ids. */
async function compareExport(c: Ctx): Promise<void> {
  const [header, ...rows] = parseCsv(await getText(c, `${BILLING}/records/export`, { user_id: c.user }));
  const columns = 'record_id,request_id,service_name,type,count,free_count,paid_count,amount,unit_price,';
  if (header.join(',') !== `${columns}refunded_count,refunded_amount,created_at`)
    c.fail(`${c.user}: GET /records/export: header ${show(header)}`);
  const times = rows.map((r) => r[11]);
  newestFirst(c, 'GET /records/export', times, true);
  const seen = rows.map(([id, req, svc, type, n, free, paid, amount, , rn, ra, at]) =>
    show([id, req, svc, type, Number(n), Number(free), Number(paid), amount, at, Number(rn), ra]),
  );
  const want = c.a.records.map((r) => recordRow(c, r, true));
  expectRows(c, 'GET /records/export', seen, want);
}

/**
 * Statistics: today and this month (business time zone, the clock at the end of the sequence) by the
 * day each record was charged, over HTTP and gRPC, for every service and each one; the summary; the
 * daily rows of the default range (the last 30 days, zeros included).
 */
async function compareStats(c: Ctx): Promise<void> {
  const { model: m, a } = c;
  const now = m.state.now;
  const today = m.day(now);
  const periods = {
    today: { pick: (r: ModelRecord) => m.day(r.at) === today, extra: { day: today } },
    month: { pick: (r: ModelRecord) => m.period(r.at) === m.period(now), extra: { month: month(m, now) } },
  };
  for (const [period, { pick, extra }] of Object.entries(periods)) {
    for (const service of [undefined, ...m.config.services.map((s) => s.name)]) {
      const records = a.records.filter((r) => pick(r) && (service === undefined || r.service === service));
      const sums = usage(records);
      const q = { user_id: c.user, ...(service ? { service_name: service } : {}) };
      const want = { userId: c.user, serviceName: service ?? null, period, ...extra, ...sums };
      expectFields(c, `GET /stats/${period} ${service ?? ''}`, await get(c, `${BILLING}/stats/${period}`, q), want);
      const method = period === 'today' ? 'GetStatsToday' : 'GetStatsMonth';
      const reply = await rpc(c, c.env.grpc.user, method, { userId: c.user, serviceName: service ?? '' });
      const { totalCost, ...counts } = sums;
      const grpcWant = { userId: c.user, serviceName: service ?? '', period, ...counts, totalCostDecimal: totalCost };
      expectFields(c, `gRPC ${method} ${service ?? ''}`, reply, grpcWant);
    }
  }
  await compareSummary(c);
  await compareDaily(c);
}

/** GET /stats/summary and gRPC GetStatsSummary: every record, per service (services with records, by name). */
async function compareSummary(c: Ctx): Promise<void> {
  const names = [...new Set(c.a.records.map((r) => r.service))].sort();
  const services = names.map((s) => ({ serviceName: s, ...usage(c.a.records.filter((r) => r.service === s)) }));
  const all = usage(c.a.records);
  const want = { userId: c.user, totalCount: all.totalCount, totalCost: all.totalCost, services };
  expectFields(c, 'GET /stats/summary', await get(c, `${BILLING}/stats/summary`, { user_id: c.user }), want);
  const reply = await rpc(c, c.env.grpc.user, 'GetStatsSummary', { userId: c.user });
  const grpcServices = (reply.services as any[]).map((s) => ({
    serviceName: s.serviceName,
    totalCount: s.totalCount,
    freeCount: s.freeCount,
    paidCount: s.paidCount,
    totalCost: s.totalCostDecimal,
  }));
  const seen = { userId: reply.userId, totalCount: reply.totalCount, totalCost: reply.totalCostDecimal };
  expectFields(c, 'gRPC GetStatsSummary', { ...seen, services: grpcServices }, want);
}

async function compareDaily(c: Ctx): Promise<void> {
  const { model: m } = c;
  const end = DateTime.fromMillis(m.state.now, { zone: m.config.zone }).startOf('day');
  const days = Array.from({ length: 30 }, (_, i) => end.minus({ days: 29 - i }).toISODate()!);
  const want = {
    userId: c.user,
    from: days[0],
    to: days[29],
    days: days.map((day) => ({ day, ...usage(c.a.records.filter((r) => m.day(r.at) === day)) })),
  };
  expectFields(c, 'GET /stats/daily', await get(c, `${BILLING}/stats/daily`, { user_id: c.user }), want);
}

/**
 * GET /statements/{month} of this month and the one before (a sequence spans at most 23 h, so it
 * touched at most these two, and the user had nothing before): each month's charges (what the balance
 * paid), grants given and grant spending by when they happened; across the two the recharges,
 * adjustments, refunds, grant refunds and expiries (the model does not keep when those happened); the
 * first opening is zero, a month's closing the next one's opening, the last closing the model's balance
 * and grants; every figure adds up. And the CSV form of this month's.
 */
async function compareStatements(c: Ctx): Promise<void> {
  const { model: m, a } = c;
  const now = DateTime.fromMillis(m.state.now, { zone: m.config.zone }).startOf('month');
  const months = [now.minus({ months: 1 }), now];
  const got: any[] = [];
  for (const [i, start] of months.entries()) {
    const label = start.toFormat('yyyy-LL');
    const s = await get(c, `${BILLING}/statements/${label}`, { user_id: c.user });
    got.push(s);
    const header = {
      userId: c.user,
      month: label,
      timeZone: m.config.zone,
      currency: c.env.h.config.currency,
      periodStart: start.toUTC().toISO(),
      periodEnd: start.plus({ months: 1 }).toUTC().toISO(),
      closed: i === 0,
    };
    expectFields(c, `statement ${label}`, s, { ...header, ...monthFigures(c, label) });
    addsUp(c, label, s);
  }
  const [prev, cur] = got;
  const grantsLeft = sum(a.grants.map((g) => g.rem));
  const chain = { openingBalance: '0.00', openingGrantBalance: '0.00' };
  expectFields(c, `statement ${prev.month} opening`, prev, chain);
  const next = { openingBalance: prev.closingBalance, openingGrantBalance: prev.closingGrantBalance };
  expectFields(c, `statement ${cur.month} opening`, cur, next);
  const closing = { closingBalance: formatMicros(a.balance), closingGrantBalance: formatMicros(grantsLeft) };
  expectFields(c, `statement ${cur.month} closing`, cur, closing);
  expectFields(c, `statements ${prev.month}+${cur.month}`, bothMonths(prev, cur), twoMonthFigures(c));
  await compareStatementCsv(c, cur);
}

/** The figures the model places in a month: charges per service, grants given, grant spending. */
function monthFigures(c: Ctx, label: string) {
  const { model: m, a } = c;
  const records = a.records.filter((r) => month(m, r.at) === label);
  const parts = records.map((r) => ({ service: r.service, ...paidBy(a, r) }));
  const charged = parts.filter((p) => p.balance !== 0n);
  const figure = (xs: bigint[]) => ({ entries: xs.length, amount: formatMicros(sum(xs)) });
  const services = [...new Set(charged.map((p) => p.service))].sort().map((serviceName) => ({
    serviceName,
    ...figure(charged.filter((p) => p.service === serviceName).map((p) => -p.balance)),
  }));
  const grants = a.grants.filter((g) => month(m, g.createdAt) === label).map((g) => g.amount);
  return {
    charges: { ...figure(charged.map((p) => -p.balance)), services },
    grants: figure(grants),
    grantSpending: figure(parts.flatMap((p) => p.grants.map((x) => -x))),
  };
}

/** The lines the model cannot place in a month, added over both. */
function bothMonths(prev: any, cur: any) {
  const add = (line: string) => ({
    entries: prev[line].entries + cur[line].entries,
    amount: formatMicros(parseMicros(prev[line].amount)! + parseMicros(cur[line].amount)!),
  });
  const lines = ['recharges', 'adjustments', 'refunds', 'grantExpiries'];
  const grantRefunds = parseMicros(prev.grantRefunds.amount)! + parseMicros(cur.grantRefunds.amount)!;
  return {
    ...Object.fromEntries(lines.map((l) => [l, add(l)])),
    grantRefunds: formatMicros(grantRefunds),
    otherEntries: [...prev.otherEntries, ...cur.otherEntries],
  };
}

function twoMonthFigures(c: Ctx) {
  const { model: m, a } = c;
  const figure = (xs: bigint[]) => ({ entries: xs.length, amount: formatMicros(sum(xs)) });
  const paid = [...m.state.orders.values()].filter((o) => o.userId === c.user && o.status === 'paid');
  const refunds = c.refunds;
  const ended = a.events.filter((e) => e.type === 'grant.expired').map((e) => -parseMicros(e.data.remaining)!);
  return {
    recharges: figure(paid.map((o) => o.amount)),
    adjustments: figure([...a.adjustments.values()]),
    refunds: figure(refunds.filter((r) => r.toBalance > 0n).map((r) => r.toBalance)),
    grantExpiries: figure(ended),
    // Which grant rows a refund writes depends on which grants had ended by then: the amount only.
    grantRefunds: formatMicros(sum(refunds.map((r) => r.net - r.toBalance))),
    otherEntries: [],
  };
}

/** closing = opening + every figure, for the balance and for the grants (README "Monthly statements"). */
function addsUp(c: Ctx, label: string, s: any): void {
  const v = (x: string) => parseMicros(x)!;
  const lines = [s.recharges, s.charges, s.refunds, s.adjustments, ...s.otherEntries];
  const closing = v(s.openingBalance) + sum(lines.map((l) => v(l.amount)));
  const grantLines = [s.grants, s.grantSpending, s.grantRefunds, s.grantExpiries];
  const grantClosing = v(s.openingGrantBalance) + sum(grantLines.map((l) => v(l.amount)));
  const perService = sum(s.charges.services.map((x: any) => v(x.amount)));
  const stated = [s.closingBalance, s.closingGrantBalance, s.charges.amount];
  const added = [closing, grantClosing, perService].map(formatMicros);
  if (show(stated) !== show(added))
    c.fail(
      `${c.user}: statement ${label}: closing, grant closing, charges ${show(stated)}, figures add to ${show(added)}`,
    );
}

/** `format=csv`: the same figures, one line each, in the README's order. */
async function compareStatementCsv(c: Ctx, s: any): Promise<void> {
  const rows = parseCsv(await getText(c, `${BILLING}/statements/${s.month}`, { user_id: c.user, format: 'csv' }));
  type Figure = { entries: number; amount: string };
  const line = (name: string, f: Figure, service = '') => [name, service, `${f.entries}`, f.amount];
  const want = [
    ['line', 'service_name', 'entries', 'amount'],
    ['opening_balance', '', '', s.openingBalance],
    line('recharges', s.recharges),
    ...s.charges.services.map((x: any) => line('charges', x, x.serviceName)),
    line('charges_total', s.charges),
    line('refunds', s.refunds),
    line('adjustments', s.adjustments),
    ...s.otherEntries.map((x: any) => line(x.entryType, x)),
    ['closing_balance', '', '', s.closingBalance],
    ['opening_grant_balance', '', '', s.openingGrantBalance],
    line('grants', s.grants),
    line('grant_spending', s.grantSpending),
    line('grant_refunds', s.grantRefunds),
    line('grant_expiries', s.grantExpiries),
    ['closing_grant_balance', '', '', s.closingGrantBalance],
  ];
  expectFields(c, `statement ${s.month} CSV`, { rows }, { rows: want });
}

/** GET /recharge/{id}: the user's own orders with the model's status; another user's order is not found. */
async function compareOrders(c: Ctx, other: string): Promise<void> {
  for (const o of c.orders) {
    const mo = c.model.state.orders.get(o.key)!;
    if (mo.userId !== c.user) continue;
    const view = `GET /recharge/${o.orderId}`;
    const got = await get(c, `${BILLING}/recharge/${encodeURIComponent(o.orderId)}`, { user_id: c.user });
    // underReview only shows when set; paidAt is set exactly when the order is paid.
    const seen = { ...got, underReview: got.underReview ?? false, paid: got.paidAt !== null };
    const want = { orderId: o.orderId, userId: c.user, status: mo.status, amount: formatMicros(mo.amount) };
    expectFields(c, view, seen, { ...want, underReview: mo.flagged, paid: mo.status === 'paid' });
    const r = await c.env.h.get(`${BILLING}/recharge/${encodeURIComponent(o.orderId)}`, { user_id: other });
    if (r.status !== 404 || r.body?.code !== 10003)
      c.fail(`${c.user}: ${view} as ${other}: ${r.status} ${show(r.body)}, model 404 / 10003`);
  }
}

/** GET /admin/v1/accounts/{user}/grants: every grant given, ended ones included (newest first). */
async function compareGrants(c: Ctx): Promise<void> {
  const { model: m } = c;
  const { grants } = await get(c, grantsPath(c.user), {}, admin);
  const times: string[] = (grants as any[]).map((g) => g.createdAt);
  newestFirst(c, 'GET .../grants', times);
  const status = (g: ModelAccount['grants'][number]) =>
    g.voided || g.ended === 'voided'
      ? 'voided'
      : g.ended === 'expired' || (g.expiresAt !== null && g.expiresAt <= m.state.now)
        ? 'expired'
        : 'active';
  const want = c.a.grants.map((g) => {
    const expiresAt = g.expiresAt === null ? null : iso(g.expiresAt);
    const amounts = [formatMicros(g.amount), formatMicros(g.rem)];
    return show([g.id, g.category, g.priority, ...amounts, expiresAt, iso(g.createdAt), status(g)]);
  });
  const seen = (grants as any[]).map((g) =>
    show([g.grantId, g.category, g.priority, g.amount, g.remaining, g.expiresAt, g.createdAt, g.status]),
  );
  expectRows(c, 'GET .../grants (id, category, priority, amount, remaining, expiry, created, status)', seen, want);
}

/** GET /limits and GET .../pricing: the limits, what they count today and this month, the prices in force. */
async function compareSettings(c: Ctx): Promise<void> {
  const { model: m, a } = c;
  const money = (v: bigint | null) => (v === null ? null : formatMicros(v));
  expectFields(c, 'GET /limits', await get(c, LIMITS, { user_id: c.user }), {
    userId: c.user,
    daily: money(a.limits.daily),
    monthly: money(a.limits.monthly),
    spentToday: formatMicros(m.spentOf(a, m.period(), m.dayOfMonth())),
    spentThisMonth: formatMicros(m.spentOf(a, m.period(), 'm')),
  });
  const pricing = m.config.services.map((s) => ({
    userId: c.user,
    serviceName: s.name,
    freeQuota: m.priceOf(a, s.name).freeQuota,
    unitPrice: money(m.priceOf(a, s.name).unitPrice),
    overridden: a.prices.has(s.name),
  }));
  expectFields(c, 'GET .../pricing', await get(c, pricingPath(c.user), {}, admin), { pricing });
}

/** GET /admin/v1/accounts/{user}: the live account as `/account` shows it, MySQL's balance, nothing pending. */
async function compareAdminAccount(c: Ctx): Promise<void> {
  const { model: m, a } = c;
  const period = month(m, m.state.now);
  // Held: every open hold, also one on a voided grant (the model's `viewAccount`).
  const live = a.grants.filter((g) => !g.ended);
  const want = {
    userId: c.user,
    balance: formatMicros(m.available(a)),
    heldAmount: formatMicros(a.held + sum(live.map((g) => g.held))),
    grants: m.spendable(a, m.state.now).map((g) => ({
      grantId: g.id,
      category: g.category,
      remaining: formatMicros(g.rem - g.held),
      expiresAt: g.expiresAt === null ? null : iso(g.expiresAt),
    })),
    quotas: m.config.services.map((s) => {
      const total = m.priceOf(a, s.name).freeQuota;
      const used = m.usedShown(a, s.name);
      return { serviceName: s.name, totalQuota: total, usedQuota: used, remainingQuota: total - used, period };
    }),
    mysqlBalance: formatMicros(a.balance),
    ledgerSum: formatMicros(a.balance),
    unpersistedChanges: 0,
  };
  const view = 'GET /admin/v1/accounts/{user}';
  expectFields(c, view, await get(c, `/admin/v1/accounts/${encodeURIComponent(c.user)}`, {}, admin), want);
}

/**
 * GET .../ledger, every page: newest first; each paid order, adjustment, charge (what the balance paid
 * of a record, by its record id) and refund (what went to the balance) once; the entries add up to the
 * model's balance.
 */
async function compareLedger(c: Ctx): Promise<void> {
  const entries: any[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const q = { page_size: PAGE, ...(cursor ? { cursor } : {}) };
    const data: any = await get(c, `/admin/v1/accounts/${encodeURIComponent(c.user)}/ledger`, q, admin);
    entries.push(...data.entries);
    cursor = data.nextCursor;
    if (!cursor) break;
  }
  const ids = entries.map((e) => Number(e.id));
  if (ids.some((id, i) => i > 0 && ids[i - 1] <= id)) c.fail(`${c.user}: GET .../ledger: not newest first: ${ids}`);
  const total = sum(entries.map((e) => parseMicros(e.amount)!));
  if (total !== c.a.balance) c.fail(`${c.user}: GET .../ledger: entries sum to ${total}, model balance ${c.a.balance}`);
  // A refund's entry is named by a key the service makes: its amount only.
  const seen = entries.map((e) => show([e.type, e.type === 'refund' ? '' : e.ref, e.amount]));
  const orderIds = new Map(c.orders.map((o) => [o.key, o.orderId]));
  const paid = [...c.model.state.orders].filter(([, o]) => o.userId === c.user && o.status === 'paid');
  const want = [
    ...paid.map(([key, o]) => show(['recharge', orderIds.get(key), formatMicros(o.amount)])),
    ...[...c.a.adjustments].map(([key, amount]) => show(['adjustment', key, formatMicros(amount)])),
    ...c.a.records
      .map((r) => [r, paidBy(c.a, r).balance] as const)
      .filter(([, balance]) => balance !== 0n)
      .map(([r, balance]) => show(['deduction', c.ids.get(r.requestId), formatMicros(-balance)])),
    ...c.refunds.filter((r) => r.toBalance > 0n).map((r) => show(['refund', '', formatMicros(r.toBalance)])),
  ];
  expectRows(c, 'GET .../ledger (type, ref, amount)', seen, want);
}

/** GET /services and gRPC ListServices: the catalogue the runs configure (per user: see the pricing view). */
async function compareCatalogue(c: Ctx): Promise<void> {
  const currency = c.env.h.config.currency;
  const services = c.model.config.services.map((s) => ({
    serviceName: s.name,
    freeQuota: s.freeQuota,
    unitPrice: s.unitPrice === null ? null : formatMicros(s.unitPrice),
    currency,
  }));
  expectFields(c, 'GET /services', { services: await get(c, `${BILLING}/services`, {}) }, { services });
  const reply = await rpc(c, c.env.grpc.user, 'ListServices', {});
  // int64 comes as a string (the clients load longs as String); a free-only service has unitPrice ''.
  const wire = services.map((s) => ({ ...s, freeQuota: String(s.freeQuota), unitPrice: s.unitPrice ?? '' }));
  expectFields(c, 'gRPC ListServices', reply, { services: wire });
}

/** Redis TTLs of what a read of this user may load; -1 is lasting (SPEC 10.5). */
async function ttls(env: ModelEnv, model: BillingModel, user: string): Promise<number[]> {
  const { redis, keys } = env.h.probe;
  return Promise.all([redis.pttl(keys.account(user)), redis.pttl(keys.quota(user, model.period()))]);
}

export async function compareViews(
  env: ModelEnv,
  model: BillingModel,
  users: string[],
  orders: { key: string; orderId: string }[],
  fail: (m: string) => never,
): Promise<void> {
  // "Today" and "this month" are the service's clock's; the model's must be the same instant.
  if (env.clock.now().getTime() !== model.state.now)
    fail(`views: the service's clock is ${env.clock.now().toISOString()}, the model's ${iso(model.state.now)}`);
  const blank = new BillingModel(model.config, model.state.now);
  for (const [i, user] of users.entries()) {
    const a = model.state.accounts.get(user) ?? blank.account(user);
    const c: Ctx = { env, model, user, a, orders, fail, ids: new Map(), refunds: refundsOf(a) };
    const before = a.written ? [] : await ttls(env, model, user);
    if (i === 0) await compareCatalogue(c);
    await compareRecords(c);
    await compareGrpcRecords(c);
    await compareExport(c);
    await compareStats(c);
    await compareStatements(c);
    await compareOrders(c, users[(i + 1) % users.length]);
    await compareGrants(c);
    await compareSettings(c);
    await compareAdminAccount(c);
    await compareLedger(c);
    // Reads of a user never written leave nothing lasting (what was lasting before is compareState's).
    const after = a.written ? [] : await ttls(env, model, user);
    if (after.some((ttl, k) => ttl === -1 && before[k] !== -1))
      fail(`${user}: never written, the views left a lasting key in Redis (PTTL ${before} -> ${after})`);
  }
}
