import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { Clock } from '../lib/clock.js';
import type { AccountService } from './account.service.js';
import type { PersistenceService } from './persistence.service.js';
import { journalId, type CreditChange } from '../lib/ledger-change.js';
import { AppError } from '../lib/errors.js';
import { MAX_MICROS, formatMoney, type Micros } from '../lib/money.js';

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
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly accounts: AccountService,
    private readonly persistence: PersistenceService,
    private readonly clock: Clock,
  ) {}

  async credit(input: CreditInput): Promise<CreditResult> {
    const now = this.clock.now();
        const change: CreditChange = { kind: input.kind, id: input.id, userId: input.userId, amount: input.amount.toString(), note: input.note, at: now.toISOString() };
    const run = () =>
      this.redis.creditScript(
        this.keys.account(input.userId),
        this.keys.applied(input.userId, journalId(change)),
        this.keys.pending(input.userId),
        input.amount.toString(),
        journalId(change),
        JSON.stringify(change),
        MARKER_TTL_MS,
        MAX_MICROS.toString(),
        input.refuseOverdraw ? '1' : '0',
      );
    let r = await run();
    if (r[0] === 'init') {
      await this.accounts.load(input.userId, now);
      r = await run();
    }
    switch (r[0]) {
      case 'ok':
        if (input.persistBy !== 'caller') this.persistence.enqueue(change);
        return { applied: true, balance: BigInt(r[1]), change };
      case 'dup':
        if (r[2] !== change.amount) throw new AppError('REQUEST_ID_REUSED', `${input.kind} ${input.id} was applied before with amount ${formatMoney(BigInt(r[2]))}`);
        return { applied: false, balance: BigInt(r[1]), change };
      case 'no_balance':
        throw new AppError('INSUFFICIENT_BALANCE', `balance ${formatMoney(BigInt(r[1]))} cannot cover ${formatMoney(-input.amount)}`);
      case 'too_large':
        throw new AppError('VALIDATION_FAILED', 'the balance would exceed the largest amount the service holds', [{ field: 'amount', message: 'too large' }]);
      default:
        throw new Error(`credit script answered ${r[0]}`);
    }
  }
}
