import type { AccountService } from './account.service.js';
import type { CreditService } from './credit.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { LedgerRepository } from '../repositories/ledger.repository.js';
import type { ReconciliationRepository } from '../repositories/reconciliation.repository.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { JobQueues } from '../jobs/queues.js';
import { QueueNames, type QueueName } from '../jobs/jobs.js';
import type { Logger } from '../lib/logger.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, type Micros } from '../lib/money.js';

/** Who asked for an operator action, and why: logged with it. */
export interface Audit {
  operator: string;
  reason: string;
}

export interface AdjustInput {
  userId: string;
  amount: Micros;
  reason: string;
  idempotencyKey: string;
  /** let a debit take the balance below zero (an operator's explicit decision) */
  allowNegative: boolean;
}

/** What AdminService is built from (named, so that adding one is no positional shuffle). */
export interface AdminServiceDeps {
  redis: RedisClient;
  keys: RedisKeys;
  accounts: AccountService;
  credits: CreditService;
  persistence: PersistenceService;
  ledger: LedgerRepository;
  runs: ReconciliationRepository;
  queues: JobQueues;
  logger: Logger;
}

/** What operators do instead of hand-written SQL: adjustments through the ledger, and look-ups. */
export class AdminService {
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly accounts: AccountService;
  private readonly credits: CreditService;
  private readonly persistence: PersistenceService;
  private readonly ledger: LedgerRepository;
  private readonly runs: ReconciliationRepository;
  private readonly queues: JobQueues;
  private readonly logger: Logger;

  constructor(deps: AdminServiceDeps) {
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.accounts = deps.accounts;
    this.credits = deps.credits;
    this.persistence = deps.persistence;
    this.ledger = deps.ledger;
    this.runs = deps.runs;
    this.queues = deps.queues;
    this.logger = deps.logger;
  }

  deadLetters(limit: number) {
    return this.persistence.deadLetters(limit);
  }

  /** An operator's retry of a dead letter: logged with who and why (the audit trail). */
  async retryDeadLetter(input: { userId: string; changeId: string } & Audit) {
    const retried = await this.persistence.retryDeadLetter(input.userId, input.changeId);
    if (!retried) throw new AppError('NOT_FOUND', `no dead letter ${input.changeId} for user ${input.userId}`);
    this.logger.warn({ audit: 'dead-letter-retry', ...input }, 'operator retried a dead letter');
    return { userId: input.userId, changeId: input.changeId, status: 'queued' };
  }

  /**
   * An operator's retry of a failed job. Bull Board is read-only for the money queues (SPEC 10.6), so
   * this is the one way to retry them, and it is logged with who and why. Only failed jobs retry:
   * nothing can be added or promoted this way.
   */
  async retryJob(input: { queue: string; jobId: string } & Audit) {
    if (!(QueueNames as readonly string[]).includes(input.queue)) {
      throw new AppError('NOT_FOUND', `no queue ${input.queue}`);
    }
    const job = await this.queues.byName[input.queue as QueueName].getJob(input.jobId);
    if (!job) throw new AppError('NOT_FOUND', `no job ${input.jobId} in ${input.queue}`);
    if (!(await job.isFailed()))
      throw new AppError('VALIDATION_FAILED', 'only a failed job can be retried', [
        { field: 'job_id', message: 'is not failed' },
      ]);
    await job.retry('failed');
    this.logger.warn({ audit: 'job-retry', ...input, job: job.name }, 'operator retried a job');
    return { queue: input.queue, jobId: input.jobId, job: job.name, status: 'retried' };
  }

  async adjust(input: AdjustInput) {
    if (input.amount === 0n)
      throw new AppError('VALIDATION_FAILED', 'amount must not be zero', [
        { field: 'amount', message: 'must not be zero' },
      ]);
    const r = await this.credits.credit({
      kind: 'adjustment',
      id: input.idempotencyKey,
      userId: input.userId,
      amount: input.amount,
      note: `adjustment: ${input.reason}`,
      refuseOverdraw: !input.allowNegative,
    });
    return {
      userId: input.userId,
      idempotencyKey: input.idempotencyKey,
      amount: formatMoney(input.amount),
      applied: r.applied,
      balance: formatMoney(r.balance),
    };
  }

  async ledgerOf(userId: string, pageSize: number, cursor?: string) {
    if (cursor !== undefined && !/^\d{1,20}$/.test(cursor))
      throw new AppError('VALIDATION_FAILED', 'invalid cursor', [
        { field: 'cursor', message: 'is not a cursor this service issued' },
      ]);
    const rows = await this.ledger.entries(userId, pageSize + 1, cursor);
    const page = rows.slice(0, pageSize);
    return {
      userId,
      entries: page.map((e) => ({
        id: String(e.id),
        type: e.entry_type,
        ref: e.ref_id,
        amount: formatMoney(BigInt(e.amount)),
        note: e.note,
        createdAt: new Date(e.created_at).toISOString(),
      })),
      nextCursor: rows.length > pageSize ? String(page[page.length - 1].id) : null,
    };
  }

  /** The live account, what MySQL says, and what is still on its way there. */
  async accountDetail(userId: string) {
    const [live, booked, pending] = await Promise.all([
      this.accounts.view(userId),
      this.ledger.balanceAndLedgerSum(userId),
      this.redis.hlen(this.keys.pending(userId)),
    ]);
    return {
      ...live,
      mysqlBalance: formatMoney(booked.balance),
      ledgerSum: formatMoney(booked.ledgerSum),
      unpersistedChanges: pending,
    };
  }

  /** About how many accounts MySQL holds (table statistics): a full audit's progress total. */
  accountCount(): Promise<number> {
    return this.runs.estimatedAccounts();
  }

  /** One run, or null. */
  async reconciliationRun(id: number) {
    // The newest run below id + 1 is `id` itself when it exists.
    return (await this.reconciliationRuns(1, id + 1)).find((r) => r.id === id) ?? null;
  }

  /**
   * Records a manual run and queues it, answering the run at once. One of a kind at a time: while one
   * waits or runs, asking again answers that one (BullMQ deduplication), and the run recorded for the
   * duplicate request is dropped.
   */
  async requestReconciliation(full: boolean, correlationId?: string) {
    const runId = await this.runs.startRun(full ? 'manual-full' : 'manual', new Date());
    const job = await this.queues.add(
      'reconcile',
      { trigger: 'manual', full, runId, correlationId },
      { deduplication: { id: full ? 'reconcile-full' : 'reconcile-manual' } },
    );
    const queued = await this.queues.queueOf('reconcile').getJob(job.id!);
    const runOfJob = (queued?.data as { runId?: number } | undefined)?.runId ?? runId;
    if (runOfJob !== runId) await this.runs.deleteRun(runId);
    return (await this.reconciliationRun(runOfJob))!;
  }

  async reconciliationRuns(limit: number, beforeId?: number) {
    const rows = await this.runs.listRuns(limit, beforeId);
    return rows.map((r) => ({
      id: Number(r.id),
      trigger: r.trigger_kind,
      status: r.status,
      startedAt: new Date(r.started_at).toISOString(),
      finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null,
      durationMs: r.duration_ms,
      usersChecked: r.users_checked,
      usersInFlight: r.users_in_flight,
      mismatches: r.mismatches,
      repairs: r.repairs,
      reenqueued: r.reenqueued,
      ordersChecked: r.orders_checked,
      ordersCompleted: r.orders_completed,
      ordersClosed: r.orders_closed,
      error: r.error,
    }));
  }

  async reconciliationRepairs(runId: number) {
    const rows = await this.runs.repairsOf(runId);
    return rows.map((r) => ({
      userId: r.user_id,
      kind: r.kind,
      subject: r.subject,
      before: r.before_value,
      after: r.after_value,
      repaired: !!r.repaired,
      note: r.note,
    }));
  }
}
