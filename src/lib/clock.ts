import { DateTime } from 'luxon';

/** The one source of "now"; tests inject a fixed or moving clock. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A safety net under every caller's own bound: no request lists more days than this. */
const MAX_LISTED_DAYS = 3_660;

/**
 * Calendar arithmetic in the business time zone: a free quota's month and a statistics day are the
 * zone's, not the server's.
 */

export class BusinessCalendar {
  /** The last day looked up, as [start, end) in ms: every call of a day hits it (the hot path). */
  private cached = { start: 0, end: 0, day: '', period: '', nextPeriodStart: 0 };

  constructor(readonly zone: string) {
    if (!DateTime.now().setZone(zone).isValid) throw new Error(`unknown time zone: ${zone}`);
  }

  private at(date: Date): DateTime {
    return DateTime.fromJSDate(date, { zone: this.zone });
  }

  private lookup(date: Date): { day: string; period: string; nextPeriodStart: number } {
    const t = date.getTime();
    if (t < this.cached.start || t >= this.cached.end) {
      const d = this.at(date).startOf('day');
      this.cached = {
        start: d.toMillis(),
        end: d.plus({ days: 1 }).toMillis(),
        day: d.toISODate()!,
        period: d.toFormat('yyyyLL'),
        nextPeriodStart: d.startOf('month').plus({ months: 1 }).toMillis(),
      };
    }
    return this.cached;
  }

  /** "202611": the quota period containing the instant. */
  period(date: Date): string {
    return this.lookup(date).period;
  }

  /** "2026-11-25": the business day containing the instant. */
  day(date: Date): string {
    return this.lookup(date).day;
  }

  /** First and last business day of the month containing the instant. */
  monthDays(date: Date): { from: string; to: string } {
    const d = this.at(date);
    return { from: d.startOf('month').toISODate()!, to: d.endOf('month').toISODate()! };
  }

  /** The UTC instant at which a business day (YYYY-MM-DD) starts. */
  startOfDay(day: string): Date {
    return DateTime.fromISO(day, { zone: this.zone }).startOf('day').toJSDate();
  }

  /** The UTC instant at which the period after the one containing `date` starts. */
  nextPeriodStart(date: Date): Date {
    return new Date(this.lookup(date).nextPeriodStart);
  }

  /** The business day `n` days after `day` (negative: before). */
  addDays(day: string, n: number): string {
    return DateTime.fromISO(day, { zone: this.zone }).plus({ days: n }).toISODate()!;
  }

  /**
   * How many days `from`..`to` spans, inclusive (0 when `from` is after `to`): arithmetic on the labels,
   * constant time, so a range can be bounded before any day of it is listed (SPEC 10.7).
   */
  spanDays(from: string, to: string): number {
    const utc = (day: string) =>
      Date.UTC(Number(day.slice(0, 4)), Number(day.slice(5, 7)) - 1, Number(day.slice(8, 10)));
    return Math.max(0, Math.round((utc(to) - utc(from)) / 86_400_000) + 1);
  }

  /** Every day from `from` to `to` inclusive; the caller bounds the span first (`spanDays`). */
  daysBetween(from: string, to: string): string[] {
    if (this.spanDays(from, to) > MAX_LISTED_DAYS) throw new RangeError(`more than ${MAX_LISTED_DAYS} days`);
    const days: string[] = [];
    let d = DateTime.fromISO(from, { zone: this.zone });
    const end = DateTime.fromISO(to, { zone: this.zone });
    while (d <= end) {
      days.push(d.toISODate()!);
      d = d.plus({ days: 1 });
    }
    return days;
  }

  /** A real calendar day (2026-02-30 is not) of the years the service can store (1970-9999). */
  isValidDay(day: string): boolean {
    return /^(19[7-9]\d|[2-9]\d{3})-\d{2}-\d{2}$/.test(day) && DateTime.fromISO(day, { zone: this.zone }).isValid;
  }
}
