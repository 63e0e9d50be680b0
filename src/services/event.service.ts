import type { Scripts } from '../redis/scripts.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { CatalogueService } from './catalogue.service.js';
import type { JobQueues } from '../jobs/queues.js';
import type { WebhookService } from './webhook.service.js';
import { eventOfRow, type EventRepository } from '../repositories/event.repository.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, type Micros } from '../lib/money.js';
import { eventId, eventOf, type BillingEvent, type EventType } from '../lib/events.js';
import { journalId, type LedgerChange } from '../lib/ledger-change.js';

export interface AlertDefaults {
  balanceLowThreshold: Micros;
  quotaLowPercent: number;
}

export interface AlertSettingsView {
  userId: string;
  balanceLow: string;
  quotaLowPercent: number;
  /** which of them are the configured defaults (not set for this user) */
  defaults: { balanceLow: boolean; quotaLowPercent: boolean };
}

export interface EventPage {
  events: BillingEvent[];
  nextCursor: string | null;
}

/** What EventService is built from. */
export interface EventServiceDeps {
  events: EventRepository;
  scripts: Scripts;
  catalogue: CatalogueService;
  /** queues the deliveries of an event to every endpoint that wants it */
  webhooks: Pick<WebhookService, 'enqueueDeliveries'>;
  /** where a persistence job leaves the fan-out of the events it stored (the webhooks queue) */
  queues: Pick<JobQueues, 'add'>;
  defaults: AlertDefaults;
  clock: Clock;
  logger: Logger;
}

/** Undispatched events are taken this many at a time by the re-dispatch job. */
const DISPATCH_PAGE = 500;

/** An event younger than this is its persisting job's to dispatch; the re-dispatch job leaves it. */
const DISPATCH_GRACE_MS = 10_000;

const encodeCursor = (seq: string) => Buffer.from(`e:${seq}`).toString('base64url');
function decodeCursor(cursor: string): string {
  const m = /^e:(\d{1,20})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m) throw new AppError('VALIDATION_FAILED', 'bad cursor', [{ field: 'cursor', message: 'is not a cursor' }]);
  return m[1];
}

/**
 * SPEC 13 events: per-user thresholds, the alarm state an account loads with, the stored events
 * (an outbox the persistence job writes in the changes' transaction), and their dispatch to webhooks.
 */
export class EventService {
  constructor(private readonly d: EventServiceDeps) {}

  private async thresholds(userId: string) {
    const row = await this.d.events.alertSettings(userId);
    return {
      balanceLow: row?.balance_low != null ? BigInt(row.balance_low) : this.d.defaults.balanceLowThreshold,
      quotaLowPercent: row?.quota_low_percent ?? this.d.defaults.quotaLowPercent,
      defaults: { balanceLow: row?.balance_low == null, quotaLowPercent: row?.quota_low_percent == null },
    };
  }

  /**
   * The alert fields an account is loaded with (see src/redis/commands/includes/alerts.lua): its
   * thresholds, and the alarms derived from the loaded balance and quota use, so that a reload (after
   * eviction) re-fires nothing: an alarm is raised if its condition holds. A new user (no account row:
   * `balance` null) is not armed until its balance first reaches the threshold, so a first recharge
   * fires neither balance.recovered nor balance.low. A reloaded account below its threshold counts as
   * alarmed; an empty one (new or not) as depleted, so that refusals of ids never funded record
   * nothing, until money comes in.
   */
  async loadFields(
    userId: string,
    balance: Micros | null,
    used: [string, string][],
    ownFree: Map<string, number> = new Map(),
  ) {
    const t = await this.thresholds(userId);
    const low = balance !== null && balance < t.balanceLow;
    const account: [string, string][] = [
      ['thr_bal', t.balanceLow.toString()],
      ['thr_q', String(t.quotaLowPercent)],
      ['al_bal', balance === null ? 'n' : low ? '1' : '0'],
      // An empty account has nothing to deplete: its refusals fire nothing until money comes in.
      ['al_dep', balance === null || balance <= 0n ? '0' : ''],
    ];
    const quota: [string, string][] = [];
    for (const [service, usedText] of used) {
      const free = ownFree.get(service) ?? this.d.catalogue.services.find((s) => s.name === service)?.freeQuota ?? 0;
      const n = Number(usedText);
      if (free <= 0) continue;
      const state = n >= free ? 2 : n * 100 >= free * t.quotaLowPercent ? 1 : 0;
      if (state > 0) quota.push([`!al:${service}`, String(state)]);
    }
    return { account, quota };
  }

  async getAlerts(userId: string): Promise<AlertSettingsView> {
    const t = await this.thresholds(userId);
    return { userId, balanceLow: formatMoney(t.balanceLow), quotaLowPercent: t.quotaLowPercent, defaults: t.defaults };
  }

  /** `undefined` keeps a setting, `null` returns it to the default. Takes effect from the next change. */
  async putAlerts(userId: string, balanceLow?: Micros | null, quotaLowPercent?: number | null) {
    await this.d.events.saveAlertSettings(
      userId,
      balanceLow === undefined ? undefined : balanceLow === null ? null : balanceLow.toString(),
      quotaLowPercent,
    );
    const t = await this.thresholds(userId);
    await this.d.scripts.setAlerts(userId, t.balanceLow, t.quotaLowPercent);
    return this.getAlerts(userId);
  }

  async list(q: { userId?: string; type?: EventType; cursor?: string; pageSize: number }): Promise<EventPage> {
    const beforeSeq = q.cursor ? decodeCursor(q.cursor) : undefined;
    const rows = await this.d.events.list({ userId: q.userId, type: q.type, beforeSeq }, q.pageSize + 1);
    const page = rows.slice(0, q.pageSize);
    const last = page[page.length - 1];
    return {
      events: page.map(eventOfRow),
      nextCursor: rows.length > q.pageSize && last ? encodeCursor(String(last.seq)) : null,
    };
  }

  async get(id: string): Promise<BillingEvent> {
    const row = await this.d.events.byId(id);
    if (!row) throw new AppError('NOT_FOUND', `event ${id} not found`);
    return eventOfRow(row);
  }

  /**
   * recharge.failed: no Redis counter is involved, so it is written straight to MySQL, with an id from
   * the order (a repeat stores nothing new), and dispatched at once (the re-dispatch job catches a crash).
   */
  async rechargeFailed(o: { orderId: string; userId: string; amount: Micros; reason: string }): Promise<void> {
    const at = this.d.clock.now().toISOString();
    const event = eventOf(`recharge-failed:${o.orderId}`, o.userId, at, {
      type: 'recharge.failed',
      data: { orderId: o.orderId, amount: o.amount.toString(), reason: o.reason.slice(0, 200) },
    });
    await this.d.events.insertIgnore(event);
    await this.dispatch([event.id]).catch((err: Error) =>
      this.d.logger.warn({ err: err.message }, 'recharge.failed not dispatched yet; the re-dispatch job will'),
    );
  }

  /** The ids of the events persisted changes carried. */
  eventIdsOf(changes: LedgerChange[]): string[] {
    return changes.flatMap((c) =>
      Array.isArray(c?.events) ? c.events.map((e) => eventId(c.userId, journalId(c), e.type)) : [],
    );
  }

  /**
   * Queues the deliveries of stored, undispatched events (batch jobs per endpoint, each with a
   * deterministic job id), then marks them dispatched. Returns how many events.
   */
  async dispatch(ids: string[]): Promise<number> {
    const rows = (await this.d.events.byIds(ids)).filter((r) => r.dispatched_at === null);
    if (rows.length === 0) return 0;
    await this.d.webhooks.enqueueDeliveries(rows.map(eventOfRow));
    await this.d.events.markDispatched(
      rows.map((r) => r.id),
      this.d.clock.now(),
    );
    return rows.length;
  }

  /**
   * After a persistence job's commit: queues the fan-out of the events its changes carried (job
   * dispatch-stored-events, on the webhooks queue), so that a burst of events costs the persisting
   * worker one small job, not the deliveries' jobs. A failure is logged and left to
   * dispatchLeftovers (the events are stored; only their enqueue is late).
   */
  async dispatchPersisted(changes: LedgerChange[]): Promise<void> {
    const eventIds = this.eventIdsOf(changes);
    if (eventIds.length === 0) return;
    await this.d.queues
      .add('dispatch-stored-events', { eventIds })
      .catch((err: Error) =>
        this.d.logger.warn({ err: err.message }, 'events not dispatched yet; dispatch-events will'),
      );
  }

  /** Dispatches what a crash left between the outbox commit and the enqueue (scheduled). */
  async dispatchLeftovers(): Promise<number> {
    const before = new Date(this.d.clock.now().getTime() - DISPATCH_GRACE_MS);
    let total = 0;
    for (;;) {
      const rows = await this.d.events.undispatched(before, DISPATCH_PAGE);
      if (rows.length === 0) break;
      total += await this.dispatch(rows.map((r) => r.id));
      if (rows.length < DISPATCH_PAGE) break;
    }
    if (total > 0) this.d.logger.warn({ total }, 'dispatched events left undispatched');
    return total;
  }
}
