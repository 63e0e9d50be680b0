import type { BillingService, CheckInput, CheckResult, DeductInput, DeductResult } from './billing.service.js';
import { AppError, isAppError } from '../lib/errors.js';

/** A check's answer; `too_many_calls` when more calls are asked about than one request may carry. */
export interface CheckAnswer extends Omit<CheckResult, 'reason'> {
  reason: CheckResult['reason'] | 'too_many_calls';
}

/** One item of a batch: its answer, or the error that refused it (which changed nothing). */
export type ItemOutcome<T> = { index: number; ok: true; value: T } | { index: number; ok: false; error: AppError };

/**
 * Gateway calls shared by every transport: the capped check, and batches of checks and deducts.
 * Each batch item is exactly one check or deduct (atomic and idempotent on its own); a refused item
 * stops nothing. Items of one user run one after the other in item order, users side by side.
 */
export class BatchService {
  constructor(
    private readonly billing: BillingService,
    private readonly maxCallsPerRequest: number,
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
    return this.run(items, (item) => this.check(item));
  }

  deductBatch(items: readonly DeductInput[]): Promise<ItemOutcome<DeductResult>[]> {
    return this.run(items, (item) => this.billing.deduct(item));
  }

  /**
   * Runs each user's items in order. An AppError refuses its item alone; anything else (Redis down)
   * fails the whole batch once every item has settled: the caller retries it, and the items that
   * went through answer as duplicates.
   */
  private async run<I extends { userId: string }, R>(
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
    await Promise.all(
      [...byUser.values()].map(async (indexes) => {
        for (const index of indexes) {
          try {
            outcomes[index] = { index, ok: true, value: await one(items[index]) };
          } catch (err) {
            if (!isAppError(err)) {
              failure ??= err;
              return;
            }
            outcomes[index] = { index, ok: false, error: err };
          }
        }
      }),
    );
    if (failure) throw failure;
    return outcomes;
  }
}
