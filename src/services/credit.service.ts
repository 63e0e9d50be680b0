import type { Scripts } from '../redis/scripts.js';
import type { Clock } from '../lib/clock.js';
import type { PersistenceService } from './persistence.service.js';
import type { CreditChange } from '../lib/ledger-change.js';
import { MAX_MICROS, type Micros } from '../lib/money.js';

/** How long an applied-credit marker lives: far longer than any retry of the job that applies it. */
const MARKER_TTL_MS = 30 * 86_400_000;

export interface CreditInput {
  kind: CreditChange['kind'];
  /** order id or idempotency key; one credit per (kind, id) */
  id: string;
  userId: string;
  amount: Micros;
  note: string;
  /** refuse a debit that would take the available balance below zero */
  refuseOverdraw?: boolean;
  /** when the change happened (default now); a retry passing the same instant builds the same change */
  at?: Date;
  /** 'queue' (default): a persist job books it; 'caller': the caller books it in its own transaction */
  persistBy?: 'queue' | 'caller';
}

export interface CreditResult {
  /** false when this credit had been applied before (nothing changed now) */
  applied: boolean;
  balance: Micros;
  change: CreditChange;
}

/**
 * Balance changes that are not calls. Like every counter change they are made in Redis by one script
 * that also journals them; persistence books them in MySQL (ledger unique by kind and id).
 */
export class CreditService {
  constructor(
    private readonly scripts: Scripts,
    private readonly persistence: PersistenceService,
    private readonly clock: Clock,
  ) {}

  async credit(input: CreditInput): Promise<CreditResult> {
    const now = this.clock.now();
    const change: CreditChange = {
      kind: input.kind,
      id: input.id,
      userId: input.userId,
      amount: input.amount.toString(),
      note: input.note,
      at: now.toISOString(),
    };
    const r = await this.scripts.credit({
      change,
      amount: input.amount,
      markerTtlMs: MARKER_TTL_MS,
      maxBalance: MAX_MICROS,
      refuseOverdraw: input.refuseOverdraw ?? false,
      now,
    });
    if (r.events) change.events = r.events;
    if (r.applied && input.persistBy !== 'caller') this.persistence.enqueue(change);
    return { applied: r.applied, balance: r.balance, change };
  }
}
