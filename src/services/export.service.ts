import type {
  UsageRepository,
  RecordFilter,
  RecordCursor,
  ExportRow,
  RecordTable,
  RefundedSums,
} from '../repositories/usage.repository.js';
import type { BusinessCalendar } from '../lib/clock.js';
import type { CatalogueService } from './catalogue.service.js';
import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';

/** A plain decimal number (an amount, a count): a spreadsheet reads it as a number, never a formula. */
const PLAIN_NUMBER = /^-?\d+(\.\d+)?$/;
/** What a spreadsheet takes for the start of a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV cell, spreadsheet-safe: text starting like a formula gets a leading `'` (a plain number is
 * left alone, it cannot be a formula), then RFC 4180 quoting when the text holds `,`, `"`, CR or LF.
 */
export function csvCell(value: string | number | bigint | null | undefined): string {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (FORMULA_START.test(text) && !PLAIN_NUMBER.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV line with its RFC 4180 CRLF ending. */
export function csvRow(cells: (string | number | bigint | null | undefined)[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

export interface ExportQuery {
  userId: string;
  serviceName?: string;
  from?: string;
  to?: string;
}

export interface CsvExport {
  filename: string;
  /** CSV text in chunks of one page of rows each; pulled, so a slow reader slows the reading. */
  chunks: AsyncGenerator<string>;
}

const HEADER = [
  'record_id',
  'request_id',
  'service_name',
  'type',
  'count',
  'free_count',
  'paid_count',
  'amount',
  'unit_price',
  'refunded_count',
  'refunded_amount',
  'created_at',
];

/**
 * Records past the retention horizon first (they are the older ones), then the live ones: each
 * record is in exactly one of the two tables, so each is written once.
 */
const TABLES: RecordTable[] = ['consumption_records_archive', 'consumption_records'];

/** Rows read per query: large enough for throughput, small enough that memory stays flat. */
const PAGE_ROWS = 2_000;

/** Consumption records as CSV over any range, read in keyset pages and never held whole. */
export class ExportService {
  constructor(
    private readonly usage: UsageRepository,
    private readonly catalogue: CatalogueService,
    private readonly calendar: BusinessCalendar,
    private readonly pageRows = PAGE_ROWS,
  ) {}

  /** A business day covers the whole day (`to` inclusive); a full ISO timestamp is taken as it is. */
  private instant(value: string, field: string, endOfDay: boolean): Date {
    const bad = () =>
      new AppError('VALIDATION_FAILED', `invalid ${field}`, [
        { field, message: 'must be a real date YYYY-MM-DD (1970-9999), or an ISO 8601 timestamp on one' },
      ]);
    if (!this.calendar.isValidDay(value.slice(0, 10))) throw bad();
    if (value.length === 10) return this.calendar.startOfDay(endOfDay ? this.calendar.addDays(value, 1) : value);
    const t = Date.parse(value);
    if (Number.isNaN(t)) throw bad();
    return new Date(t);
  }

  /**
   * Checks every input, then reads the first page before anything is sent: a bad request or an
   * unreachable database is still an ordinary error answer, not a truncated file.
   */
  async open(q: ExportQuery): Promise<CsvExport> {
    if (q.serviceName) this.catalogue.get(q.serviceName);
    const filter: RecordFilter = {
      userId: q.userId,
      serviceName: q.serviceName,
      from: q.from ? this.instant(q.from, 'from', false) : undefined,
      to: q.to ? this.instant(q.to, 'to', true) : undefined,
    };
    if (filter.from && filter.to && filter.from >= filter.to) {
      throw new AppError('VALIDATION_FAILED', 'from is after to', [{ field: 'from', message: 'must not be after to' }]);
    }
    const first = await this.usage.exportPage(filter, undefined, this.pageRows, TABLES[0]);
    const safeName = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '_');
    const range = [q.from, q.to]
      .map((d) => (d ? safeName(d) : ''))
      .filter(Boolean)
      .join('_to_');
    const parts = [safeName(q.userId), q.serviceName ? safeName(q.serviceName) : '', range].filter(Boolean);
    const filename = `records-${parts.join('-')}.csv`;
    return { filename, chunks: this.pages(filter, first) };
  }

  private async *pages(filter: RecordFilter, first: ExportRow[]): AsyncGenerator<string> {
    yield csvRow(HEADER);
    for (const [i, table] of TABLES.entries()) {
      let page = i === 0 ? first : await this.usage.exportPage(filter, undefined, this.pageRows, table);
      while (page.length > 0) {
        const last = page[page.length - 1];
        const after: RecordCursor = { at: new Date(last.created_at), id: String(last.id) };
        const more = page.length === this.pageRows;
        const refunded = await this.usage.refundedOf(
          filter.userId,
          page.map((r) => r.record_id),
        );
        const text = page.map((r) => toLine(r, refunded.get(r.record_id))).join('');
        // Let go of the rows before waiting for the reader: rows kept alive across a slow write would be
        // promoted to the old generation, and the process would grow until a full collection.
        page.length = 0;
        yield text;
        if (!more) break;
        page = await this.usage.exportPage(filter, after, this.pageRows, table);
      }
    }
  }
}

function toLine(r: ExportRow, refunded: RefundedSums | undefined): string {
  return csvRow([
    r.record_id,
    r.request_id,
    r.service_name,
    r.type,
    r.count,
    r.free_count,
    r.paid_count,
    formatMoney(BigInt(r.amount)),
    r.unit_price === null ? '' : formatMoney(BigInt(r.unit_price)),
    refunded?.count ?? 0,
    formatMoney(refunded?.amount ?? 0n),
    new Date(r.created_at).toISOString(),
  ]);
}
