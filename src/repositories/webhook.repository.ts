import type { Db } from './database.js';
import { GroupWriter } from '../lib/group-writer.js';

export interface EndpointRow {
  id: string;
  url: string;
  /** JSON list of event types, or ["*"] */
  events: string;
  description: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_until: Date | null;
  created_at: Date;
  deleted_at: Date | null;
}

export interface DeliveryRow {
  id: string;
  endpoint_id: string;
  event_id: string;
  attempt: number;
  status_code: number | null;
  latency_ms: number;
  response_excerpt: string | null;
  error: string | null;
  delivered: number;
  created_at: Date;
}

/**
 * How long an attempt's row waits for others to share its INSERT: a batch does not wait for its rows
 * between attempts, only before it ends; a single delivery job waits this much longer to finish.
 */
const ATTEMPT_ROWS_LINGER_MS = 25;

/** Webhook endpoints and every delivery attempt. */
export class WebhookRepository {
  constructor(private readonly db: Db) {}

  async insert(row: Pick<EndpointRow, 'id' | 'url' | 'events' | 'description' | 'secret'>): Promise<void> {
    await this.db('webhook_endpoints').insert(row);
  }

  async find(id: string): Promise<EndpointRow | undefined> {
    return this.db('webhook_endpoints').where({ id }).whereNull('deleted_at').first();
  }

  async active(): Promise<EndpointRow[]> {
    return this.db('webhook_endpoints').whereNull('deleted_at').orderBy('created_at').select('*');
  }

  async remove(id: string, at: Date): Promise<boolean> {
    return (await this.db('webhook_endpoints').where({ id }).whereNull('deleted_at').update({ deleted_at: at })) > 0;
  }

  async rotate(id: string, secret: string, previousUntil: Date): Promise<boolean> {
    const n = await this.db('webhook_endpoints')
      .where({ id })
      .whereNull('deleted_at')
      .update({
        previous_secret: this.db.ref('secret'),
        previous_secret_until: previousUntil,
        secret,
      });
    return n > 0;
  }

  /**
   * Delivery attempts finished meanwhile are written together (one INSERT, one commit): see GroupWriter.
   * They trickle in at the endpoints' pace, so a row waits ATTEMPT_ROWS_LINGER_MS for others.
   */
  private readonly attempts = new GroupWriter<Omit<DeliveryRow, 'id' | 'created_at'>>(
    async (rows) => {
      await this.db('webhook_deliveries').insert(rows);
    },
    500,
    ATTEMPT_ROWS_LINGER_MS,
  );

  /** Resolves once the attempt is in MySQL. */
  recordAttempt(row: Omit<DeliveryRow, 'id' | 'created_at'>): Promise<void> {
    return this.attempts.add(row);
  }

  /** Of these events, those with an attempt to the endpoint recorded: event id → whether one delivered it. */
  async attemptedEvents(endpointId: string, eventIds: string[]): Promise<Map<string, boolean>> {
    if (eventIds.length === 0) return new Map();
    const rows: { event_id: string; delivered: number | string }[] = await this.db('webhook_deliveries')
      .whereIn('event_id', eventIds)
      .andWhere({ endpoint_id: endpointId })
      .groupBy('event_id')
      .select('event_id', this.db.raw('MAX(delivered) AS delivered'));
    return new Map(rows.map((r) => [r.event_id, Number(r.delivered) === 1]));
  }

  /** Newest first; `beforeId` pages on. */
  async deliveries(endpointId: string, limit: number, beforeId?: string, eventId?: string): Promise<DeliveryRow[]> {
    const q = this.db('webhook_deliveries').where({ endpoint_id: endpointId }).orderBy('id', 'desc').limit(limit);
    if (beforeId !== undefined) q.where('id', '<', beforeId);
    if (eventId !== undefined) q.where('event_id', eventId);
    return q.select('*');
  }
}
