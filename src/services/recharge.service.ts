import type { EventService } from './event.service.js';
import type { Logger } from '../lib/logger.js';
import type { Clock } from '../lib/clock.js';
import type { RechargeRepository, OrderRow } from '../repositories/recharge.repository.js';
import type { LedgerRepository } from '../repositories/ledger.repository.js';
import type { JobQueues } from '../jobs/queues.js';
import type { PaymentClient } from '../payment/payment.client.js';
import type { CreditService } from './credit.service.js';
import type { PersistenceService } from './persistence.service.js';
import type { FaultPoints } from '../lib/faults.js';
import { AppError } from '../lib/errors.js';
import { formatMoney, microsToCents, parseMoney, type Micros } from '../lib/money.js';
import { newId } from '../lib/ids.js';

export interface RechargeOptions {
  currency: string;
  minRecharge: Micros;
  maxRecharge: Micros;
  /** where the payment service posts its result (the callback route, as callers reach it) */
  notifyUrl: string;
}

export interface CreateRechargeInput {
  userId: string;
  amount: Micros;
  method: 'wechat' | 'alipay';
  currency: string;
  idempotencyKey?: string;
  clientIp: string;
}

export interface CallbackBody {
  order_id: string;
  payment_id: string;
  amount: string | number;
  currency: string;
  status: 'success' | 'failed' | 'closed';
  paid_at?: string | number;
}

export type CallbackOutcome = 'queued' | 'already_paid' | 'closed' | 'ignored';

const GRPC_METHOD = { wechat: 'WECHATPAY', alipay: 'ALIPAY' } as const;

/** What RechargeService is built from (named, so that adding one is no positional shuffle). */
export interface RechargeServiceDeps {
  orders: RechargeRepository;
  ledger: LedgerRepository;
  credits: CreditService;
  persistence: PersistenceService;
  queues: JobQueues;
  payment: PaymentClient;
  opts: RechargeOptions;
  clock: Clock;
  faults: FaultPoints;
  logger: Logger;
  /** records recharge.failed (SPEC 13) */
  events?: Pick<EventService, 'rechargeFailed' | 'dispatchPersisted'>;
}

/**
 * Recharge orders: created here, paid at the payment service, credited exactly once.
 *
 * The credit is made like every balance change: in Redis first by a script that journals it and marks
 * it applied (so a retry cannot credit Redis twice), then in MySQL in one transaction that locks the
 * order, moves it to paid and books the ledger entry (unique per order; payment_id unique per order).
 */
export class RechargeService {
  private readonly orders: RechargeRepository;
  private readonly ledger: LedgerRepository;
  private readonly credits: CreditService;
  private readonly persistence: PersistenceService;
  private readonly queues: JobQueues;
  private readonly payment: PaymentClient;
  private readonly opts: RechargeOptions;
  private readonly clock: Clock;
  private readonly faults: FaultPoints;
  private readonly logger: Logger;
  private readonly events?: Pick<EventService, 'rechargeFailed' | 'dispatchPersisted'>;

  constructor(deps: RechargeServiceDeps) {
    this.events = deps.events;
    this.orders = deps.orders;
    this.ledger = deps.ledger;
    this.credits = deps.credits;
    this.persistence = deps.persistence;
    this.queues = deps.queues;
    this.payment = deps.payment;
    this.opts = deps.opts;
    this.clock = deps.clock;
    this.faults = deps.faults;
    this.logger = deps.logger;
  }

  /** recharge.failed for an order (idempotent by order id); an event lost here never blocks the order. */
  private async failed(orderId: string, reason: string): Promise<void> {
    if (!this.events) return;
    const order = await this.orders.find(orderId);
    if (!order) return;
    await this.events
      .rechargeFailed({ orderId, userId: order.user_id, amount: BigInt(order.amount), reason })
      .catch((err: Error) => this.logger.error({ orderId, err: err.message }, 'recharge.failed not recorded'));
  }

  view(o: OrderRow) {
    const params = o.pay_params ? (JSON.parse(o.pay_params) as Record<string, string>) : undefined;
    return {
      orderId: o.order_id,
      userId: o.user_id,
      paymentId: o.payment_id,
      paymentUrl: o.pay_url,
      ...(o.pay_code ? { payCode: o.pay_code } : {}),
      ...(params && Object.keys(params).length > 0 ? { payParams: params } : {}),
      status: o.status,
      amount: formatMoney(BigInt(o.amount)),
      currency: o.currency,
      paymentMethod: o.method,
      createdAt: new Date(o.created_at).toISOString(),
      paidAt: o.paid_at ? new Date(o.paid_at).toISOString() : null,
      ...(o.failure_reason ? { failureReason: o.failure_reason } : {}),
      ...(o.review_reason ? { underReview: true } : {}),
    };
  }

  async create(input: CreateRechargeInput) {
    const cents = microsToCents(input.amount);
    const bad = (message: string) =>
      new AppError('VALIDATION_FAILED', `invalid amount: ${message}`, [{ field: 'amount', message }]);
    if (input.currency !== this.opts.currency)
      throw new AppError('VALIDATION_FAILED', 'unsupported currency', [
        { field: 'currency', message: `must be ${this.opts.currency}` },
      ]);
    if (input.amount < this.opts.minRecharge || input.amount > this.opts.maxRecharge) {
      throw bad(`must be from ${formatMoney(this.opts.minRecharge)} to ${formatMoney(this.opts.maxRecharge)}`);
    }
    if (cents === null) throw bad('must be a whole number of cents');

    if (input.idempotencyKey) {
      const existing = await this.orders.findByIdempotencyKey(input.userId, input.idempotencyKey);
      if (existing) return this.sameRequest(existing, input);
    }
    const now = this.clock.now();
    const orderId = newId('ord_', now);
    try {
      await this.orders.insert({
        order_id: orderId,
        user_id: input.userId,
        amount: input.amount.toString(),
        currency: input.currency,
        method: input.method,
        idempotency_key: input.idempotencyKey ?? null,
        created_at: now,
      });
    } catch (err) {
      // Two requests with one Idempotency-Key raced; the other one's order stands.
      if ((err as { code?: string }).code === 'ER_DUP_ENTRY' && input.idempotencyKey) {
        return this.sameRequest((await this.orders.findByIdempotencyKey(input.userId, input.idempotencyKey))!, input);
      }
      throw err;
    }

    try {
      const reply = await this.payment.createPayment({
        order_id: orderId,
        user_id: input.userId,
        amount: cents.toString(),
        currency: input.currency,
        method: GRPC_METHOD[input.method],
        subject: `Balance recharge ${formatMoney(input.amount)} ${input.currency}`,
        return_url: '',
        notify_url: this.opts.notifyUrl,
        client_ip: input.clientIp,
      });
      if (reply.status === 'FAILED' || reply.status === 'CLOSED' || !reply.payment_id)
        throw new AppError('PAYMENT_UNAVAILABLE', `payment service refused the payment (${reply.status})`);
      await this.orders.recordPayment(orderId, {
        payment_id: reply.payment_id,
        pay_url: reply.pay_url,
        pay_code: reply.pay_code,
        pay_params: JSON.stringify(reply.pay_params ?? {}),
      });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.logger.warn({ orderId, err: reason }, 'CreatePayment failed; order marked failed');
      await this.end(orderId, 'failed', reason);
      throw err instanceof AppError ? err : new AppError('PAYMENT_UNAVAILABLE', 'payment service unavailable');
    }
    return this.view((await this.orders.find(orderId))!);
  }

  private sameRequest(existing: OrderRow, input: CreateRechargeInput) {
    if (
      BigInt(existing.amount) !== input.amount ||
      existing.method !== input.method ||
      existing.currency !== input.currency
    ) {
      throw new AppError(
        'REQUEST_ID_REUSED',
        'Idempotency-Key was used before with a different amount, method or currency',
      );
    }
    return this.view(existing);
  }

  async get(orderId: string, userId: string) {
    const order = await this.orders.find(orderId);
    if (!order || order.user_id !== userId)
      throw new AppError('ORDER_NOT_FOUND', `recharge order ${orderId} not found`);
    return this.view(order);
  }

  /**
   * A payment-service callback whose signature the transport has verified: checked against the order,
   * and for a success queued durably (job id per order and payment, so duplicates collapse) before the
   * caller gets 200.
   */
  async acceptCallback(
    body: CallbackBody,
    correlationId?: string,
  ): Promise<{ orderId: string; outcome: CallbackOutcome }> {
    const order = await this.orders.find(body.order_id);
    if (!order) throw new AppError('ORDER_NOT_FOUND', `recharge order ${body.order_id} not found`);

    const amount = parseMoney(body.amount);
    if (amount === null || amount !== BigInt(order.amount) || body.currency !== order.currency) {
      const reason = `callback ${body.payment_id} says ${String(body.amount)} ${body.currency}, order is ${formatMoney(BigInt(order.amount))} ${order.currency}`;
      await this.orders.flagForReview(order.order_id, reason);
      this.logger.error(
        { orderId: order.order_id, paymentId: body.payment_id },
        `callback mismatch flagged for review: ${reason}`,
      );
      throw new AppError(
        'CALLBACK_MISMATCH',
        'callback amount or currency does not match the order; flagged for review',
      );
    }

    if (order.status === 'paid') {
      if (order.payment_id === body.payment_id) return { orderId: order.order_id, outcome: 'already_paid' };
      throw new AppError('DUPLICATE_RECHARGE', `order ${order.order_id} was already paid by another payment`);
    }
    if (body.status !== 'success') {
      await this.end(order.order_id, body.status, `payment ${body.status}`);
      return { orderId: order.order_id, outcome: 'closed' };
    }
    const paidAt =
      body.paid_at === undefined
        ? this.clock.now()
        : new Date(typeof body.paid_at === 'number' ? body.paid_at * 1000 : body.paid_at);
    await this.queueCredit(order.order_id, body.payment_id, 'callback', paidAt, correlationId);
    return { orderId: order.order_id, outcome: 'queued' };
  }

  /**
   * Records that a signed callback or GetPayment confirmed this payment (the job credits nothing else),
   * then queues the credit of the paid order, durably. The job id is per order and payment, so every
   * report of one payment (callbacks, reconciliation) collapses into one job.
   */
  private async queueCredit(
    orderId: string,
    paymentId: string,
    confirmedBy: 'callback' | 'get_payment',
    paidAt: Date,
    correlationId?: string,
  ): Promise<void> {
    await this.orders.confirmPayment(orderId, paymentId, confirmedBy);
    const data = { orderId, paymentId, paidAt: paidAt.toISOString(), correlationId };
    await this.queues.add('apply-payment', data, { jobId: `pay-${orderId}-${paymentId}` });
  }

  /** The job: credits a paid order once, whatever ran before it and however often it runs. */
  async applyPayment(
    orderId: string,
    paymentId: string,
    paidAt: Date,
  ): Promise<'credited' | 'already_paid' | 'conflict'> {
    const order = await this.orders.find(orderId);
    if (!order) throw new AppError('ORDER_NOT_FOUND', `order ${orderId} not found`);
    if (order.status === 'paid') return this.alreadyPaid(order, paymentId);
    // Only what a signed callback or the payment service confirmed is credited: a job added by other
    // means (a queue tool, a hand-written script) cannot mint money.
    if (!(await this.orders.isConfirmed(orderId, paymentId))) {
      throw new UnconfirmedPaymentError(`payment ${paymentId} of order ${orderId} was never confirmed; not credited`);
    }

    const { change } = await this.credits.credit({
      kind: 'recharge',
      id: order.order_id,
      userId: order.user_id,
      amount: BigInt(order.amount),
      at: paidAt,
      persistBy: 'caller',
      note: `recharge ${order.order_id} by ${order.method} payment ${paymentId}`,
    });
    this.faults.point('after-redis-credit');

    // The order moves to paid in the transaction that books its credit.
    const paidBefore = await this.persistence.writeThenClear(
      [change],
      () =>
        this.ledger.transaction(async (trx) => {
          const locked = (await this.orders.lock(trx, orderId))!;
          if (locked.status === 'paid') return locked;
          await this.orders.markPaid(trx, orderId, paymentId, paidAt);
          await this.ledger.applyChanges([change], trx);
          return null;
        }),
      'after-mysql-commit',
    );
    // recharge.paid (and a balance.recovered) were stored with the credit: deliver them now.
    await this.events?.dispatchPersisted([change]);
    return paidBefore ? this.alreadyPaid(paidBefore, paymentId) : 'credited';
  }

  /**
   * The order is paid in MySQL, so its credit is booked: clear it from the journal in case a run
   * before this one committed and died before doing so.
   */
  private async alreadyPaid(order: OrderRow, paymentId: string): Promise<'already_paid' | 'conflict'> {
    await this.persistence.acknowledge([{ kind: 'recharge', id: order.order_id, userId: order.user_id }]);
    if (order.payment_id === paymentId) return 'already_paid';
    await this.orders.flagForReview(
      order.order_id,
      `second payment ${paymentId} for an order paid by ${order.payment_id}`,
    );
    return 'conflict';
  }

  /**
   * Asks the payment service about an order still pending (a lost callback): a paid one is credited,
   * a closed or failed one closed. Returns the status the payment service gave.
   */
  async syncWithPaymentService(order: OrderRow): Promise<string> {
    const p = await this.payment.getPayment({ order_id: order.order_id });
    // No payment there (its CreatePayment failed): nothing was paid, the order stays as it is.
    if (p === null) return 'NOT_FOUND';
    if (p.status === 'SUCCESS') {
      const cents = microsToCents(BigInt(order.amount));
      if (cents === null || p.amount !== cents.toString() || p.currency !== order.currency) {
        await this.orders.flagForReview(order.order_id, `GetPayment says ${p.amount} cents ${p.currency}`);
        return 'MISMATCH';
      }
      // The payment service's word on when; anything no DATETIME can hold becomes "now".
      const seconds = Number(p.paid_at);
      const paidAt = seconds > 0 && seconds < 4_102_444_800 ? new Date(seconds * 1000) : this.clock.now();
      await this.queueCredit(order.order_id, p.payment_id, 'get_payment', paidAt);
    } else if (p.status === 'CLOSED' || p.status === 'FAILED') {
      await this.end(order.order_id, p.status === 'CLOSED' ? 'closed' : 'failed', `payment service says ${p.status}`);
    }
    return p.status;
  }

  /**
   * An unpaid order ends as the payment did: closed (the payer gave up) or failed (declined), and a
   * failed one fires recharge.failed. A closed order stays closed (a late "failed" report fires nothing).
   */
  private async end(orderId: string, status: 'closed' | 'failed', reason: string): Promise<void> {
    const moved = await this.orders.finish(orderId, status, reason);
    if (moved && status === 'failed') await this.failed(orderId, reason);
  }
}

/** An apply-payment job for a payment no signed callback nor GetPayment confirmed: never credited. */
export class UnconfirmedPaymentError extends Error {}
