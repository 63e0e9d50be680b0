import type { Logger } from '../lib/logger.js';
import type { RechargeRepository } from '../repositories/recharge.repository.js';
import type { RechargeService } from './recharge.service.js';
import { AppError } from '../lib/errors.js';

export type HintOutcome = 'queued' | 'already_paid' | 'closed' | 'not_paid';

/**
 * A payment result reported without a signature over its body (the original platform's gRPC
 * RechargeCallback). It is only a hint: the payment service's GetPayment is asked before anything is
 * credited, and a paid order goes through the recharge service's one exactly-once path (the same
 * apply-payment job id as the HTTP callback's, and the order locked in MySQL when crediting).
 */
export class PaymentHintService {
  constructor(
    private readonly orders: RechargeRepository,
    private readonly recharges: RechargeService,
    private readonly logger: Logger,
  ) {}

  async confirm(orderId: string, paymentId: string): Promise<HintOutcome> {
    const order = await this.orders.find(orderId);
    if (!order) throw new AppError('ORDER_NOT_FOUND', `recharge order ${orderId} not found`);
    if (order.status === 'paid') {
      if (order.payment_id === paymentId) return 'already_paid';
      throw new AppError('DUPLICATE_RECHARGE', `order ${orderId} was already paid by another payment`);
    }
    const truth = await this.recharges.syncWithPaymentService(order);
    switch (truth) {
      case 'SUCCESS':
        return 'queued';
      case 'CLOSED':
      case 'FAILED':
        return 'closed';
      case 'MISMATCH':
        throw new AppError(
          'CALLBACK_MISMATCH',
          'the payment service reports another amount or currency; order flagged for review',
        );
      default:
        this.logger.info({ orderId, paymentId, status: truth }, 'payment hint not confirmed by the payment service');
        return 'not_paid';
    }
  }
}
