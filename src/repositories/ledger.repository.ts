import type { Knex } from 'knex';
import type { Db } from './database.js';
import { balancesWithLedgerSum } from './ledger-sum.js';
import {
  balancePart,
  journalId,
  type LedgerChange,
  type DeductionChange,
  type CreditChange,
  type GrantChange,
  type GrantEndChange,
  type RefundChange,
} from '../lib/ledger-change.js';
import { eventOf } from '../lib/events.js';

const RECORD_COLUMNS = [
  'record_id',
  'user_id',
  'request_id',
  'service_name',
  'type',
  'count',
  'free_count',
  'paid_count',
  'amount',
  'unit_price',
  'period',
  'created_at',
] as const;
const LEDGER_COLUMNS = ['user_id', 'entry_type', 'ref_id', 'amount', 'note', 'created_at', 'balance_after'] as const;
/** usage_daily's key, then the sums, in the order of the `daily` map's values below. */
const DAILY_COLUMNS = [
  'user_id',
  'day',
  'service_name',
  'total_count',
  'free_count',
  'paid_count',
  'total_cost',
  'records',
  'refunded_count',
  'refunded_cost',
] as const;

export interface ApplyResult {
  applied: number;
  alreadyPersisted: number;
}

const recordType = (c: DeductionChange) => (c.paid === '0' ? 'free' : c.free === '0' ? 'balance' : 'mixed');
const mysqlTime = (iso: string) => new Date(iso);
/** `YYYY-MM-DDTHH:MM:SS.mmmZ`, what the scripts and the API write (Date#toISOString). */
const UTC_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/**
 * A DATETIME(3) literal of an ISO instant, for the raw statements below (the connection's time zone is
 * UTC): cut from the string when it is in toISOString's form, which costs far less than formatting a Date.
 */
const mysqlUtc = (iso: string): string | Date =>
  UTC_ISO.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 23)}` : mysqlTime(iso);

/*
 * The statements every deduction batch runs are written as raw SQL with one `?` per value: Knex's
 * query builder works per row and per value (column normalisation, identifier wrapping, binding
 * objects), 10-15 % of the CPU of booking a batch (bench/persist-cpu.ts apply, README "Performance").
 */
const rowSlots = new Map<number, string>();
/** `(?, ?, ?)` for a row of `width` values, repeated `count` times, comma-separated. */
function valueRows(width: number, count: number): string {
  let row = rowSlots.get(width);
  if (!row) rowSlots.set(width, (row = `(${new Array<string>(width).fill('?').join(', ')})`));
  return new Array<string>(count).fill(row).join(', ');
}

/** `INSERT INTO table (columns) VALUES (...), (...) [tail]` of `rows` (each one value per column). */
async function insertRows(
  trx: Knex.Transaction,
  table: string,
  columns: readonly string[],
  rows: unknown[][],
  tail = '',
): Promise<void> {
  if (rows.length === 0) return;
  const bindings: Knex.RawBinding[] = [];
  let complete = true;
  for (const r of rows) {
    for (const v of r) {
      if (v === undefined) complete = false;
      else bindings.push(v as Knex.RawBinding);
    }
  }
  // A value missing from a (malformed) change is the column's DEFAULT, as Knex's builder wrote it.
  const values = complete
    ? valueRows(columns.length, rows.length)
    : rows.map((r) => `(${r.map((v) => (v === undefined ? 'DEFAULT' : '?')).join(', ')})`).join(', ');
  const names = columns.map((c) => `\`${c}\``).join(', ');
  await trx.raw(`INSERT INTO \`${table}\` (${names}) VALUES ${values}${tail}`, bindings);
}

/** Rows of a raw SELECT (mysql2 answers [rows, fields]). */
async function selectRows<T>(trx: Knex.Transaction, sql: string, bindings: readonly unknown[]): Promise<T[]> {
  const [rows] = (await trx.raw(sql, bindings as Knex.RawBinding[])) as unknown as [T[]];
  return rows;
}

const inList = (n: number) => `(${new Array<string>(n).fill('?').join(', ')})`;
/** Code-unit order; ids are ASCII, so this is the byte order MySQL's binary collation uses. */
const byBytes = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Adds `delta` (a decimal integer string) into a map of bigints. */
function addTo(map: Map<string, bigint[]>, key: string, deltas: string[]): void {
  const cur = map.get(key) ?? deltas.map(() => 0n);
  map.set(
    key,
    cur.map((v, i) => v + BigInt(deltas[i])),
  );
}

/**
 * Writes changes recorded in Redis to MySQL: consumption records, ledger entries, account balances,
 * free quota used and daily aggregates, all in one transaction. A change whose id is already stored
 * is skipped, so a job run twice (or a change in two jobs) changes nothing the second time; two
 * transactions racing on the same id collide on a unique key, roll back, and the retry skips it.
 */
export class LedgerRepository {
  constructor(private readonly db: Db) {}

  /** Runs `work` in one MySQL transaction: changes are booked together with what the caller writes. */
  transaction<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.db.transaction(work);
  }

  /** In its own transaction, or in `outer` when the caller has one (a recharge's order update). */
  async applyChanges(changes: LedgerChange[], outer?: Knex.Transaction): Promise<ApplyResult> {
    const unique = [...new Map(changes.map((c) => [JSON.stringify([c.kind, c.userId, c.id]), c])).values()];
    return outer ? this.applyIn(outer, unique) : this.db.transaction((trx) => this.applyIn(trx, unique));
  }

  private async applyIn(trx: Knex.Transaction, unique: LedgerChange[]): Promise<ApplyResult> {
    const deductions = unique.filter((c): c is DeductionChange => c.kind === 'deduction');
    const credits = unique.filter((c): c is CreditChange => c.kind === 'recharge' || c.kind === 'adjustment');
    const grantChanges = unique.filter((c): c is GrantChange | GrantEndChange => c.kind.startsWith('grant'));
    await this.insertEvents(trx, unique);

    const freshDeductions = await this.withoutStored(trx, 'consumption_records', 'record_id', deductions);
    const freshCredits = await this.withoutStoredLedger(trx, credits);
    const freshGrants = await this.withoutStoredGrantEntries(trx, grantChanges);
    const refunds = unique.filter((c): c is RefundChange => c.kind === 'refund');
    const freshRefunds = await this.withoutStored(trx, 'refunds', 'refund_key', refunds);
    const applied = freshDeductions.length + freshCredits.length + freshGrants.length + freshRefunds.length;
    if (applied === 0) return { applied: 0, alreadyPersisted: unique.length };

    const ledger = [
      ...freshDeductions
        .filter((d) => balancePart(d) !== 0n)
        .map((d) => ({
          user_id: d.userId,
          entry_type: 'deduction',
          ref_id: d.id,
          amount: `${-balancePart(d)}`,
          note: `${d.service} x${d.paid}`,
          created_at: mysqlUtc(d.at),
        })),
      ...freshRefunds
        .filter((r) => balancePart(r) !== 0n)
        .map((r) => ({
          user_id: r.userId,
          entry_type: 'refund',
          ref_id: r.id,
          amount: `${balancePart(r)}`,
          note: `refund ${r.refundId} of ${r.recordId}`.slice(0, 255),
          created_at: mysqlUtc(r.at),
        })),
      ...freshCredits.map((c) => ({
        user_id: c.userId,
        entry_type: c.kind,
        ref_id: c.id,
        amount: c.amount,
        note: c.note.slice(0, 255),
        created_at: mysqlUtc(c.at),
      })),
    ];

    // Every touched account row first, in one order: it is created if new, stamped changed (what
    // reconciliation looks for), given the batch's balance delta, and locked, so the running balances
    // below cannot interleave with another transaction's entries for the same user. One statement:
    // a second pass over the same rows for the balance cost MariaDB about a tenth of the batch.
    const delta = new Map<string, bigint>();
    for (const e of ledger) delta.set(e.user_id, (delta.get(e.user_id) ?? 0n) + BigInt(e.amount));
    const touched = [
      ...new Set([...freshDeductions, ...freshCredits, ...freshGrants, ...freshRefunds].map((c) => c.userId)),
    ].sort(byBytes);
    const accountRows = new Array<string>(touched.length).fill('(?, ?, CURRENT_TIMESTAMP(3))').join(', ');
    await trx.raw(
      `INSERT INTO accounts (user_id, balance, changed_at) VALUES ${accountRows}
        ON DUPLICATE KEY UPDATE balance = balance + VALUES(balance), changed_at = VALUES(changed_at)`,
      touched.flatMap((userId) => [userId, (delta.get(userId) ?? 0n).toString()]),
    );

    await insertRows(
      trx,
      'consumption_records',
      RECORD_COLUMNS,
      freshDeductions.map((d) => [
        d.id,
        d.userId,
        d.requestId,
        d.service,
        recordType(d),
        d.count,
        d.free,
        d.paid,
        d.amount,
        d.unitPrice === '' ? null : d.unitPrice,
        d.period,
        mysqlUtc(d.at),
      ]),
    );

    // A refund may land before its deduction (two jobs in flight): nothing here reads the record row.
    if (freshRefunds.length > 0) {
      await trx('refunds').insert(
        freshRefunds.map((r) => ({
          refund_key: r.id,
          refund_id: r.refundId,
          user_id: r.userId,
          record_id: r.recordId,
          request_id: r.requestId,
          service_name: r.service,
          count: r.count,
          free_count: r.free,
          paid_count: r.paid,
          free_returned: r.freeReturned,
          amount: r.amount,
          period: r.period,
          created_at: mysqlTime(r.at),
        })),
      );
    }

    if (ledger.length > 0) {
      const users = [...delta.keys()];
      const running = new Map<string, bigint>(
        // A locking read of the row this transaction just updated: its balance less this batch's delta is
        // where the batch's entries start.
        (
          await selectRows<{ user_id: string; balance: string }>(
            trx,
            `SELECT user_id, balance FROM accounts WHERE user_id IN ${inList(users.length)} FOR UPDATE`,
            users,
          )
        ).map((r) => [r.user_id, BigInt(r.balance) - delta.get(r.user_id)!]),
      );
      // Entries get increasing ids in array order, so each one's balance_after follows the one before.
      const rows = ledger.map((e) => {
        const after = running.get(e.user_id)! + BigInt(e.amount);
        running.set(e.user_id, after);
        return [e.user_id, e.entry_type, e.ref_id, e.amount, e.note, e.created_at, after.toString()];
      });
      await insertRows(trx, 'ledger_entries', LEDGER_COLUMNS, rows);
    }

    await this.bookGrants(trx, freshDeductions, freshRefunds, freshGrants);

    const quotas = new Map<string, bigint[]>();
    const daily = new Map<string, bigint[]>();
    for (const d of freshDeductions) {
      if (d.free !== '0') addTo(quotas, `${d.userId}\u0000${d.period}\u0000${d.service}`, [d.free]);
      addTo(daily, `${d.userId}\u0000${d.day}\u0000${d.service}`, [d.count, d.free, d.paid, d.amount, '1', '0', '0']);
    }
    for (const r of freshRefunds) {
      // Free calls given back reduce the month's quota used (below zero for a while if the deduction lands later).
      if (r.freeReturned !== '0')
        addTo(quotas, `${r.userId}\u0000${r.period}\u0000${r.service}`, [`-${r.freeReturned}`]);
      addTo(daily, `${r.userId}\u0000${r.day}\u0000${r.service}`, ['0', '0', '0', '0', '0', r.count, r.amount]);
    }
    // Sorted keys: concurrent transactions lock rows in one order, which keeps deadlocks rare.
    const sorted = (m: Map<string, bigint[]>) => [...m.entries()].sort(([a], [b]) => byBytes(a, b));

    await insertRows(
      trx,
      'quota_usage',
      ['user_id', 'period', 'service_name', 'used'],
      sorted(quotas).map(([k, [used]]) => [...k.split('\u0000'), used.toString()]),
      ' ON DUPLICATE KEY UPDATE used = used + VALUES(used)',
    );
    await insertRows(
      trx,
      'usage_daily',
      DAILY_COLUMNS,
      sorted(daily).map(([k, sums]) => [...k.split('\u0000'), ...sums.map(String)]),
      ` ON DUPLICATE KEY UPDATE ${DAILY_COLUMNS.slice(3)
        .map((c) => `${c} = ${c} + VALUES(${c})`)
        .join(', ')}`,
    );
    return { applied, alreadyPersisted: unique.length - applied };
  }

  /**
   * The events the changes carry, in the changes' transaction (a transactional outbox: SPEC 13). An id
   * already stored (the change persisted before) is skipped, so a retried job never doubles an event.
   */
  private async insertEvents(trx: Knex.Transaction, changes: LedgerChange[]): Promise<void> {
    const rows = changes.flatMap((c) =>
      (c.events ?? []).map((e) => {
        const ev = eventOf(journalId(c), c.userId, c.at, e);
        return {
          id: ev.id,
          user_id: ev.userId,
          type: ev.type,
          data: JSON.stringify(ev.data),
          created_at: mysqlTime(ev.createdAt),
        };
      }),
    );
    if (rows.length > 0) await trx('events').insert(rows).onConflict('id').ignore();
  }

  private async withoutStored<T extends { id: string }>(
    trx: Knex.Transaction,
    table: string,
    column: string,
    items: T[],
  ): Promise<T[]> {
    if (items.length === 0) return [];
    const rows = await selectRows<Record<string, string>>(
      trx,
      `SELECT \`${column}\` AS id FROM \`${table}\` WHERE \`${column}\` IN ${inList(items.length)}`,
      items.map((i) => i.id),
    );
    const set = new Set<string>(rows.map((r) => r.id));
    return items.filter((i) => !set.has(i.id));
  }

  /** Credits not booked yet: a ledger entry is unique per (user, kind, ref), never by a joined string. */
  private async withoutStoredLedger(trx: Knex.Transaction, items: CreditChange[]): Promise<CreditChange[]> {
    const out: CreditChange[] = [];
    for (const kind of ['recharge', 'adjustment'] as const) {
      const ofKind = items.filter((i) => i.kind === kind);
      if (ofKind.length === 0) continue;
      const rows: { user_id: string; ref_id: string }[] = await trx('ledger_entries')
        .where('entry_type', kind)
        .whereIn(
          ['user_id', 'ref_id'],
          ofKind.map((i) => [i.userId, i.id]),
        )
        .select('user_id', 'ref_id');
      const stored = new Set(rows.map((r) => JSON.stringify([r.user_id, r.ref_id])));
      out.push(...ofKind.filter((i) => !stored.has(JSON.stringify([i.userId, i.id]))));
    }
    return out;
  }

  /** Grant changes not booked yet: each is one grant_entries row, unique per (user, grant, type, ref). */
  private async withoutStoredGrantEntries(
    trx: Knex.Transaction,
    items: (GrantChange | GrantEndChange)[],
  ): Promise<(GrantChange | GrantEndChange)[]> {
    if (items.length === 0) return [];
    const rows: { user_id: string; grant_id: string; entry_type: string }[] = await trx('grant_entries')
      .whereIn('entry_type', ['grant', 'grant_expired', 'grant_voided'])
      .whereIn(
        ['user_id', 'grant_id'],
        items.map((i) => [i.userId, i.id]),
      )
      .select('user_id', 'grant_id', 'entry_type');
    const stored = new Set(rows.map((r) => JSON.stringify([r.user_id, r.grant_id, r.entry_type === 'grant'])));
    return items.filter((i) => !stored.has(JSON.stringify([i.userId, i.id, i.kind === 'grant'])));
  }

  /**
   * The grants' side of a batch: one grant_entries row per grant a deduction or a refund touched, per
   * grant given and per grant ended, and each grant's remaining in credit_grants. Rows are upserted by delta, so
   * the order in which two jobs persist a grant and its spending does not matter.
   */
  private async bookGrants(
    trx: Knex.Transaction,
    deductions: DeductionChange[],
    refunds: RefundChange[],
    grants: (GrantChange | GrantEndChange)[],
  ): Promise<void> {
    const entries: {
      user_id: string;
      grant_id: string;
      entry_type: string;
      ref_id: string;
      amount: bigint;
      created_at: Date;
    }[] = [];
    for (const d of deductions) {
      for (const [grantId, part] of d.grants ?? []) {
        entries.push({
          user_id: d.userId,
          grant_id: grantId,
          entry_type: 'grant_spend',
          ref_id: d.id,
          amount: -BigInt(part),
          created_at: mysqlTime(d.at),
        });
      }
    }
    for (const r of refunds) {
      for (const [grantId, part] of r.grants ?? []) {
        entries.push({
          user_id: r.userId,
          grant_id: grantId,
          entry_type: 'grant_refund',
          ref_id: r.id,
          amount: BigInt(part),
          created_at: mysqlTime(r.at),
        });
      }
    }
    for (const g of grants) {
      entries.push({
        user_id: g.userId,
        grant_id: g.id,
        entry_type: g.kind === 'grant' ? 'grant' : `grant_${g.how}`,
        ref_id: g.id,
        amount: g.kind === 'grant' ? BigInt(g.amount) : -BigInt(g.amount),
        created_at: mysqlTime(g.at),
      });
    }
    if (entries.length === 0) return;

    const given = grants.filter((g): g is GrantChange => g.kind === 'grant');
    if (given.length > 0) {
      await trx('credit_grants')
        .insert(
          [...given]
            .sort((a, b) => byBytes(`${a.userId}\u0000${a.id}`, `${b.userId}\u0000${b.id}`))
            .map((g) => ({
              user_id: g.userId,
              grant_id: g.id,
              category: g.category,
              priority: g.priority,
              amount: g.amount,
              remaining: 0,
              expires_at: g.expiresAt === '' ? null : mysqlTime(g.expiresAt),
              note: g.note.slice(0, 255) || null,
              created_at: mysqlTime(g.at),
            })),
        )
        .onConflict(['user_id', 'grant_id'])
        .merge(['category', 'priority', 'amount', 'expires_at', 'note', 'created_at']);
    }
    const deltas = new Map<string, bigint[]>();
    for (const e of entries) addTo(deltas, `${e.user_id}\u0000${e.grant_id}`, [e.amount.toString()]);
    const sortedDeltas = [...deltas.entries()].sort(([a], [b]) => byBytes(a, b));
    // Rows not given yet (their grant is in a later job) start as placeholders the grant fills in.
    await trx('credit_grants')
      .insert(
        sortedDeltas.map(([k, [delta]]) => {
          const [user_id, grant_id] = k.split('\u0000');
          return {
            user_id,
            grant_id,
            category: '',
            priority: 0,
            amount: 0,
            remaining: delta.toString(),
            created_at: new Date(),
          };
        }),
      )
      .onConflict(['user_id', 'grant_id'])
      .merge({ remaining: trx.raw('remaining + VALUES(remaining)') });
    for (const g of grants) {
      if (g.kind === 'grant_end') {
        await trx('credit_grants')
          .where({ user_id: g.userId, grant_id: g.id })
          .update({ status: g.how, ended_at: mysqlTime(g.at) });
      }
    }
    // Each row's remaining_after: the grant's remaining now, less the rows booked after it in this batch.
    const now = new Map<string, bigint>(
      (
        await trx('credit_grants')
          .whereIn(
            ['user_id', 'grant_id'],
            sortedDeltas.map(([k]) => k.split('\u0000')),
          )
          .forUpdate()
          .select('user_id', 'grant_id', 'remaining')
      ).map((r: { user_id: string; grant_id: string; remaining: string }) => [
        `${r.user_id}\u0000${r.grant_id}`,
        BigInt(r.remaining),
      ]),
    );
    const after = new Map(now);
    const rows = entries
      .slice()
      .reverse()
      .map((e) => {
        const key = `${e.user_id}\u0000${e.grant_id}`;
        const remaining = after.get(key) ?? 0n;
        after.set(key, remaining - e.amount);
        return { ...e, amount: e.amount.toString(), remaining_after: remaining.toString() };
      })
      .reverse();
    await trx('grant_entries').insert(rows);
  }

  /** Ledger entries of a user, newest first, before entry `beforeId` when given. */
  async entries(userId: string, limit: number, beforeId?: string) {
    const q = this.db('ledger_entries').where({ user_id: userId }).orderBy('id', 'desc').limit(limit);
    if (beforeId) q.andWhere('id', '<', beforeId);
    return q.select('id', 'entry_type', 'ref_id', 'amount', 'note', 'created_at') as Promise<
      { id: string; entry_type: string; ref_id: string; amount: string; note: string | null; created_at: Date }[]
    >;
  }

  /** The user's MySQL balance and the sum of their ledger entries (SPEC 7.2 says they agree). */
  async balanceAndLedgerSum(userId: string): Promise<{ balance: bigint; ledgerSum: bigint }> {
    const row = await balancesWithLedgerSum(this.db).where('a.user_id', userId).first();
    return { balance: BigInt(row?.balance ?? 0), ledgerSum: BigInt(row?.ledger_sum ?? 0) };
  }
}
