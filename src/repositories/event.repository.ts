import type { Db } from './database.js';
import type { BillingEvent, EventType } from '../lib/events.js';

export interface AlertSettingsRow {
  user_id: string;
  balance_low: string | null;
  quota_low_percent: number | null;
}

export interface EventRow {
  seq: string;
  id: string;
  user_id: string;
  type: EventType;
  data: string;
  created_at: Date;
  dispatched_at: Date | null;
}

export interface EventFilter {
  userId?: string;
  type?: EventType;
  /** the seq of the last event of the previous page: this page is older */
  beforeSeq?: string;
}

/** Events (the outbox) and per-user alert settings. */
export class EventRepository {
  constructor(private readonly db: Db) {}

  async alertSettings(userId: string): Promise<AlertSettingsRow | undefined> {
    return this.db('alert_settings').where({ user_id: userId }).first('user_id', 'balance_low', 'quota_low_percent');
  }

  /** `undefined` leaves a setting as it is; `null` returns it to the configured default. */
  async saveAlertSettings(userId: string, balanceLow?: string | null, quotaLowPercent?: number | null): Promise<void> {
    const changes: Record<string, unknown> = {};
    if (balanceLow !== undefined) changes.balance_low = balanceLow;
    if (quotaLowPercent !== undefined) changes.quota_low_percent = quotaLowPercent;
    const row = { user_id: userId, balance_low: null, quota_low_percent: null, ...changes };
    const q = this.db('alert_settings').insert(row).onConflict('user_id');
    await (Object.keys(changes).length > 0 ? q.merge(Object.keys(changes)) : q.ignore());
  }

  /** Inserts an event that no Redis change carries (recharge.failed); its id makes a repeat harmless. */
  async insertIgnore(e: BillingEvent): Promise<void> {
    await this.db('events')
      .insert({
        id: e.id,
        user_id: e.userId,
        type: e.type,
        data: JSON.stringify(e.data),
        created_at: new Date(e.createdAt),
      })
      .onConflict('id')
      .ignore();
  }

  /** Newest first, `limit` rows after the cursor (an index range on (user_id|type, seq) or the key). */
  async list(f: EventFilter, limit: number): Promise<EventRow[]> {
    const q = this.db('events').select('*').orderBy('seq', 'desc').limit(limit);
    if (f.userId !== undefined) q.where('user_id', f.userId);
    if (f.type !== undefined) q.where('type', f.type);
    if (f.beforeSeq !== undefined) q.where('seq', '<', f.beforeSeq);
    return q;
  }

  async byIds(ids: string[]): Promise<EventRow[]> {
    if (ids.length === 0) return [];
    return this.db('events').whereIn('id', ids).select('*');
  }

  async byId(id: string): Promise<EventRow | undefined> {
    return this.db('events').where({ id }).first();
  }

  /** Oldest undispatched events created before `before` (what a crash left between commit and enqueue). */
  async undispatched(before: Date, limit: number): Promise<EventRow[]> {
    return this.db('events')
      .whereNull('dispatched_at')
      .andWhere('created_at', '<', before)
      .orderBy('seq')
      .limit(limit)
      .select('*');
  }

  async markDispatched(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.db('events').whereIn('id', ids).whereNull('dispatched_at').update({ dispatched_at: at });
  }
}

export function eventOfRow(r: EventRow): BillingEvent {
  return {
    id: r.id,
    type: r.type,
    userId: r.user_id,
    createdAt: new Date(r.created_at).toISOString(),
    data: JSON.parse(r.data) as Record<string, string>,
  };
}
