import type { BillingService, CheckInput, CheckResult, DeductInput, DeductResult } from './billing.service.js';
import { randomUUID } from 'node:crypto';
import { AppError, dependencyUnavailable, isAppError, isDependencyError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';

/** A check's answer; `too_many_calls` when more calls are asked about than one request may carry. */
export interface CheckAnswer extends Omit<CheckResult, 'reason'> {
  reason: CheckResult['reason'] | 'too_many_calls';
}

/**
 * One item of a batch: its answer, or its error: a refusal (4xx codes, 10001...), which changed nothing, or
 * 50300, an outage, after which the item may have applied: retried with the same request id, it tells.
 */
export type ItemOutcome<T> = { index: number; ok: true; value: T } | { index: number; ok: false; error: AppError };

/** What an item that met an outage is told: a deduct may have applied, a check changed nothing. */
const RETRY = { deduct: 'it may have applied: retry it with the same request id', check: 'retry it' } as const;
/** What an item after it of the same user is told: it was not sent, so that its user's order holds. */
const NOT_TRIED = 'not tried, after an earlier item of the same user met it';

/**
 * Gateway calls shared by every transport: the capped check, and batches of checks and deducts.
 * Each batch item is exactly one check or deduct (atomic and idempotent on its own); a refused item
 * stops nothing. Items of one user run one after the other in item order, users side by side.
 */
export class BatchService {
  constructor(
    private readonly billing: BillingService,
    private readonly maxCallsPerRequest: number,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /**
   * A check for more calls than the per-request cap is a plain "no" (the original platform's clients
   * ask about 1,000,000 calls and expect one), with the account's figures for a single call.
   */
  async check(input: CheckInput): Promise<CheckAnswer> {
    if (input.count <= this.maxCallsPerRequest) return this.billing.check(input);
    const figures = await this.billing.check({ ...input, count: 1 });
    return { ...figures, allowed: false, reason: 'too_many_calls' };
  }

  checkBatch(items: readonly CheckInput[]): Promise<ItemOutcome<CheckAnswer>[]> {
    return this.run('check', items, (item) => this.check(item));
  }

  deductBatch(items: readonly DeductInput[]): Promise<ItemOutcome<DeductResult>[]> {
    return this.run('deduct', items, (item) => this.billing.deduct(item));
  }

  /**
   * One deduct of a DeductStream, answered as a batch item is. `afterOutage`: an earlier message of the
   * same user met an outage and this one queued behind it, so it is answered 50300 untried (its user's
   * order holds, and a stalled node does not cost each of them a timeout). An outage answers 50300 (it
   * may have applied), logged under a correlation id the answer carries; each 50300 is counted, as in a
   * batch. Anything else (a bug) is thrown.
   */
  async streamDeduct(index: number, item: DeductInput, afterOutage: boolean): Promise<ItemOutcome<DeductResult>> {
    if (!afterOutage) {
      try {
        return { index, ok: true, value: await this.billing.deduct(item) };
      } catch (err) {
        if (isAppError(err)) return { index, ok: false, error: err };
        if (!isDependencyError(err)) throw err;
        const correlationId = randomUUID();
        const { userId } = item;
        this.logger.warn({ correlationId, err: (err as Error).message, userId }, 'a stream deduct met an outage');
        this.metrics.outcomes.inc({ op: 'deduct', outcome: 'unavailable' });
        return { index, ok: false, error: dependencyUnavailable(`${RETRY.deduct} (correlation id ${correlationId})`) };
      }
    }
    this.metrics.outcomes.inc({ op: 'deduct', outcome: 'unavailable' });
    return { index, ok: false, error: dependencyUnavailable(NOT_TRIED) };
  }

  /**
   * Runs each user's items in order. An AppError refuses its item alone. An outage on one user's keys
   * (a stalled Redis Cluster node, say) answers that item 50300, as a single call would be (it may
   * have applied: a retry with the same request id tells), and the user's later items 50300 untried,
   * so that they still apply in order when retried; the other users' items go on and are answered.
   * Only when every item met an outage does the whole batch fail, as one call would; any other error
   * (a bug) fails the whole batch once every item has settled. Retrying a batch is safe: the items
   * that went through answer as duplicates.
   */
  private async run<I extends { userId: string }, R>(
    op: 'check' | 'deduct',
    items: readonly I[],
    one: (item: I) => Promise<R>,
  ): Promise<ItemOutcome<R>[]> {
    const outcomes: ItemOutcome<R>[] = new Array(items.length);
    const byUser = new Map<string, number[]>();
    items.forEach((item, index) => {
      const list = byUser.get(item.userId);
      if (list) list.push(index);
      else byUser.set(item.userId, [index]);
    });
    let failure: unknown = null;
    let outage: unknown = null;
    let outages = 0;
    // One per batch, in its answers and its log line: what an operator looks the outage up by.
    let correlationId: string | null = null;
    await Promise.all(
      [...byUser.values()].map(async (indexes) => {
        for (const [n, index] of indexes.entries()) {
          try {
            outcomes[index] = { index, ok: true, value: await one(items[index]) };
          } catch (err) {
            if (isAppError(err)) {
              outcomes[index] = { index, ok: false, error: err };
              continue;
            }
            if (!isDependencyError(err)) {
              failure ??= err;
              return;
            }
            outage ??= err;
            outages += indexes.length - n;
            correlationId ??= randomUUID();
            const see = ` (correlation id ${correlationId})`;
            outcomes[index] = { index, ok: false, error: dependencyUnavailable(RETRY[op] + see) };
            for (const later of indexes.slice(n + 1))
              outcomes[later] = { index: later, ok: false, error: dependencyUnavailable(NOT_TRIED + see) };
            return;
          }
        }
      }),
    );
    if (failure) throw failure;
    if (outage) {
      if (outages === items.length) throw outage;
      // A batch answered 200 with some items 50300: counted here, as the 503s of single calls are by status.
      this.metrics.outcomes.inc({ op, outcome: 'unavailable' }, outages);
      const err = (outage as Error).message;
      const counts = { items: items.length, unavailable: outages };
      this.logger.warn({ correlationId, err, ...counts }, 'batch items met an outage');
    }
    return outcomes;
  }
}
