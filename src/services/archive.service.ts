import type { ArchiveRepository } from '../repositories/archive.repository.js';
import type { BusinessCalendar, Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';

/** Rows moved per transaction: short transactions, no long lock on the hot tables. */
const CHUNK = 5_000;

/**
 * Keeps consumption_records and ledger_entries bounded by months (SPEC 16): rows older than the
 * retention horizon (the start of the business month `retentionMonths` before this one) move to the
 * archive tables. Statistics read usage_daily (never archived); balances stay provable from the
 * archived sum plus the ledger left. A ledger entry moves only once reconciliation has verified it.
 */
export class ArchiveService {
  constructor(
    private readonly archive: ArchiveRepository,
    private readonly calendar: BusinessCalendar,
    private readonly clock: Clock,
    private readonly retentionMonths: number,
    private readonly logger: Logger,
  ) {}

  /** The first instant that is kept. */
  horizon(now: Date = this.clock.now()): Date {
    let month = this.calendar.monthDays(now).from;
    for (let i = 0; i < this.retentionMonths; i++)
      month = this.calendar.monthDays(new Date(this.calendar.startOfDay(month).getTime() - 1)).from;
    return this.calendar.startOfDay(month);
  }

  async run(): Promise<{ horizon: string; records: number; ledgerEntries: number }> {
    const before = this.horizon();
    let records = 0;
    let ledgerEntries = 0;
    for (let moved = CHUNK; moved === CHUNK; records += moved) moved = await this.archive.moveRecords(before, CHUNK);
    for (let moved = CHUNK; moved === CHUNK; ledgerEntries += moved)
      moved = await this.archive.moveLedgerEntries(before, CHUNK);
    if (records + ledgerEntries > 0)
      this.logger.info({ horizon: before.toISOString(), records, ledgerEntries }, 'archived old rows');
    return { horizon: before.toISOString(), records, ledgerEntries };
  }
}
