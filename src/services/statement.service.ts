import type { StatementRepository } from '../repositories/statement.repository.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';
import { csvRow } from './export.service.js';

/** Ledger entry types with a line of their own; any other type is listed under its own name. */
const SECTIONS = {
  recharge: 'recharges',
  refund: 'refunds',
  adjustment: 'adjustments',
} as const;

type Section = (typeof SECTIONS)[keyof typeof SECTIONS];

/** Grant entry types (grant_entries) and the line each is added into. */
const GRANT_SECTIONS: Record<string, GrantSection> = {
  grant: 'grants',
  grant_spend: 'grantSpending',
  grant_refund: 'grantRefunds',
  grant_expired: 'grantExpiries',
  grant_voided: 'grantExpiries',
};

type GrantSection = 'grants' | 'grantSpending' | 'grantRefunds' | 'grantExpiries';

export interface Figure {
  entries: number;
  amount: string;
}

export interface Statement {
  userId: string;
  month: string;
  timeZone: string;
  currency: string;
  /** the month's first instant and the next month's, in UTC (the window is [periodStart, periodEnd)) */
  periodStart: string;
  periodEnd: string;
  /** false for the current month: figures so far */
  closed: boolean;
  openingBalance: string;
  recharges: Figure;
  charges: Figure & { services: (Figure & { serviceName: string })[] };
  refunds: Figure;
  adjustments: Figure;
  /** entry types this statement has no line for, each under its own name */
  otherEntries: (Figure & { entryType: string })[];
  closingBalance: string;
  /**
   * Credit grants, from their own ledger (grant_entries): closingGrantBalance = openingGrantBalance +
   * grants + grantSpending + grantRefunds + grantExpiries (expired and voided remainders).
   */
  openingGrantBalance: string;
  grants: Figure;
  grantSpending: Figure;
  grantRefunds: Figure;
  grantExpiries: Figure;
  closingGrantBalance: string;
}

const figure = (entries: number, amount: bigint): Figure => ({ entries, amount: formatMoney(amount) });

/**
 * A user's monthly statement, computed from the ledger alone. Every figure is the signed sum of its
 * entries (charges are negative), so closing = opening + every figure, and a month's closing is the
 * next month's opening because both are the sum of every entry before the same instant.
 */
export class StatementService {
  constructor(
    private readonly statements: StatementRepository,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    private readonly currency: string,
  ) {}

  /** "2026-11" must be a real month from 1970-01 to the current one (business time zone). */
  private window(month: string): { start: Date; end: Date; closed: boolean } {
    const bad = (message: string) =>
      new AppError('VALIDATION_FAILED', `invalid month ${month}`, [{ field: 'month', message }]);
    const m = /^(\d{4})-(\d{2})$/.exec(month);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 12) throw bad('must be a month YYYY-MM');
    if (Number(m[1]) < 1970) throw bad('must not be before 1970-01');
    const current = this.calendar.monthDays(this.clock.now()).from.slice(0, 7);
    if (month > current) throw bad(`must not be after the current month (${current})`);
    const next =
      Number(m[2]) === 12 ? `${Number(m[1]) + 1}-01` : `${m[1]}-${String(Number(m[2]) + 1).padStart(2, '0')}`;
    return {
      start: this.calendar.startOfDay(`${month}-01`),
      end: this.calendar.startOfDay(`${next}-01`),
      closed: month < current,
    };
  }

  async monthly(userId: string, month: string): Promise<Statement> {
    const { start, end, closed } = this.window(month);
    const [opening, byType, byService, grantOpening, grantsByType] = await Promise.all([
      this.statements.balanceBefore(userId, start),
      this.statements.sumsByType(userId, start, end),
      this.statements.chargesByService(userId, start, end),
      this.statements.grantBalanceBefore(userId, start),
      this.statements.grantSumsByType(userId, start, end),
    ]);
    const sections: Record<Section, Figure> = {
      recharges: figure(0, 0n),
      refunds: figure(0, 0n),
      adjustments: figure(0, 0n),
    };
    const grantLines = new Map<GrantSection, { entries: number; amount: bigint }>();
    let grantClosing = grantOpening;
    for (const row of grantsByType) {
      const line = GRANT_SECTIONS[row.entry_type] ?? 'grantSpending';
      const seen = grantLines.get(line) ?? { entries: 0, amount: 0n };
      grantLines.set(line, { entries: seen.entries + Number(row.entries), amount: seen.amount + BigInt(row.amount) });
      grantClosing += BigInt(row.amount);
    }
    const grantFigure = (line: GrantSection) =>
      figure(grantLines.get(line)?.entries ?? 0, grantLines.get(line)?.amount ?? 0n);
    let charges = figure(0, 0n);
    const otherEntries: Statement['otherEntries'] = [];
    let closing = opening;
    for (const row of byType) {
      const amount = BigInt(row.amount);
      closing += amount;
      const f = figure(Number(row.entries), amount);
      if (row.entry_type === 'deduction') charges = f;
      else if (Object.hasOwn(SECTIONS, row.entry_type)) sections[SECTIONS[row.entry_type as keyof typeof SECTIONS]] = f;
      else otherEntries.push({ entryType: row.entry_type, ...f });
    }
    return {
      userId,
      month,
      timeZone: this.calendar.zone,
      currency: this.currency,
      periodStart: start.toISOString(),
      periodEnd: end.toISOString(),
      closed,
      openingBalance: formatMoney(opening),
      recharges: sections.recharges,
      charges: {
        ...charges,
        services: byService.map((s) => ({
          serviceName: s.service_name,
          ...figure(Number(s.entries), BigInt(s.amount)),
        })),
      },
      refunds: sections.refunds,
      adjustments: sections.adjustments,
      otherEntries,
      closingBalance: formatMoney(closing),
      openingGrantBalance: formatMoney(grantOpening),
      grants: grantFigure('grants'),
      grantSpending: grantFigure('grantSpending'),
      grantRefunds: grantFigure('grantRefunds'),
      grantExpiries: grantFigure('grantExpiries'),
      closingGrantBalance: formatMoney(grantClosing),
    };
  }

  /** The statement as CSV: one line per figure, `line, service_name, entries, amount`. */
  static toCsv(s: Statement): string {
    const lines = [
      csvRow(['line', 'service_name', 'entries', 'amount']),
      csvRow(['opening_balance', '', '', s.openingBalance]),
      csvRow(['recharges', '', s.recharges.entries, s.recharges.amount]),
      ...s.charges.services.map((c) => csvRow(['charges', c.serviceName, c.entries, c.amount])),
      csvRow(['charges_total', '', s.charges.entries, s.charges.amount]),
      csvRow(['refunds', '', s.refunds.entries, s.refunds.amount]),
      csvRow(['adjustments', '', s.adjustments.entries, s.adjustments.amount]),
      ...s.otherEntries.map((o) => csvRow([o.entryType, '', o.entries, o.amount])),
      csvRow(['closing_balance', '', '', s.closingBalance]),
      csvRow(['opening_grant_balance', '', '', s.openingGrantBalance]),
      csvRow(['grants', '', s.grants.entries, s.grants.amount]),
      csvRow(['grant_spending', '', s.grantSpending.entries, s.grantSpending.amount]),
      csvRow(['grant_refunds', '', s.grantRefunds.entries, s.grantRefunds.amount]),
      csvRow(['grant_expiries', '', s.grantExpiries.entries, s.grantExpiries.amount]),
      csvRow(['closing_grant_balance', '', '', s.closingGrantBalance]),
    ];
    return lines.join('');
  }
}
