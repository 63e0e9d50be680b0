import type { Knex } from 'knex';
import type { Db } from './database.js';

export type OrderStatus = 'pending' | 'paid' | 'failed' | 'closed';

export interface OrderRow {
  order_id: string;
  user_id: string;
  amount: string;
  currency: string;
  method: string;
  status: OrderStatus;
  payment_id: string | null;
  pay_url: string | null;
  pay_code: string | null;
  pay_params: string | null;
  idempotency_key: string | null;
  failure_reason: string | null;
  review_reason: string | null;
  created_at: Date;
  paid_at: Date | null;
}

export class RechargeRepository {
  constructor(private readonly db: Db) {}

  async insert(
    order: Pick<OrderRow, 'order_id' | 'user_id' | 'amount' | 'currency' | 'method' | 'idempotency_key'> & {
      created_at: Date;
    },
  ): Promise<void> {
    await this.db('recharge_orders').insert({ ...order, status: 'pending' });
  }

  async find(orderId: string, trx: Knex | Knex.Transaction = this.db): Promise<OrderRow | undefined> {
    return trx('recharge_orders').where({ order_id: orderId }).first();
  }

  async lock(trx: Knex.Transaction, orderId: string): Promise<OrderRow | undefined> {
    return trx('recharge_orders').where({ order_id: orderId }).forUpdate().first();
  }

  async findByIdempotencyKey(userId: string, key: string): Promise<OrderRow | undefined> {
    return this.db('recharge_orders').where({ user_id: userId, idempotency_key: key }).first();
  }

  async recordPayment(
    orderId: string,
    p: { payment_id: string; pay_url: string; pay_code: string; pay_params: string },
  ): Promise<void> {
    await this.db('recharge_orders').where({ order_id: orderId }).update(p);
  }

  /** pending → failed (or closed); a paid order never moves back. Returns whether it moved. */
  async finish(orderId: string, status: 'failed' | 'closed', reason: string | null): Promise<boolean> {
    const n = await this.db('recharge_orders')
      .where({ order_id: orderId })
      .whereIn('status', ['pending', 'failed'])
      .update({ status, failure_reason: reason?.slice(0, 255) ?? null });
    return n > 0;
  }

  async flagForReview(orderId: string, reason: string): Promise<void> {
    await this.db('recharge_orders')
      .where({ order_id: orderId })
      .update({ review_reason: reason.slice(0, 255) });
  }

  async markPaid(trx: Knex.Transaction, orderId: string, paymentId: string, paidAt: Date): Promise<void> {
    await trx('recharge_orders')
      .where({ order_id: orderId })
      .update({ status: 'paid', payment_id: paymentId, paid_at: paidAt, failure_reason: null });
  }

  /**
   * Orders still pending that were created before `before` and are due for a check, those never
   * checked first, then the longest waiting: an order whose check keeps failing moves to the back
   * (see `deferCheck`), so it cannot starve newer ones.
   */
  async pendingDue(before: Date, now: Date, limit: number): Promise<OrderRow[]> {
    return this.db('recharge_orders')
      .where('status', 'pending')
      .andWhere('created_at', '<', before)
      .andWhere((q) => q.whereNull('next_check_at').orWhere('next_check_at', '<=', now))
      .orderBy([
        { column: 'next_check_at', order: 'asc' },
        { column: 'created_at', order: 'asc' },
      ])
      .limit(limit);
  }

  async deferCheck(orderId: string, until: Date): Promise<void> {
    await this.db('recharge_orders').where({ order_id: orderId }).update({ next_check_at: until });
  }

  /** Records that a signed callback or GetPayment confirmed this payment of this order (idempotent). */
  async confirmPayment(orderId: string, paymentId: string, source: 'callback' | 'get_payment'): Promise<void> {
    await this.db('payment_confirmations')
      .insert({ order_id: orderId, payment_id: paymentId, source })
      .onConflict(['order_id', 'payment_id'])
      .ignore();
  }

  async isConfirmed(orderId: string, paymentId: string): Promise<boolean> {
    return !!(await this.db('payment_confirmations')
      .where({ order_id: orderId, payment_id: paymentId })
      .first('order_id'));
  }
}
