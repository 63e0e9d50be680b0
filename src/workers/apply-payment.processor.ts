import { UnrecoverableError, type Job } from 'bullmq';
import type { JobPayloads } from '../jobs/jobs.js';
import { UnconfirmedPaymentError, type RechargeService } from '../services/recharge.service.js';
import { isAppError } from '../lib/errors.js';

export function applyPaymentProcessor(recharges: RechargeService) {
  return async (job: Job<JobPayloads['apply-payment']>) => {
    const { orderId, paymentId, paidAt } = job.data;
    try {
      return { outcome: await recharges.applyPayment(orderId, paymentId, new Date(paidAt)) };
    } catch (err) {
      if (isAppError(err) && err.kind === 'ORDER_NOT_FOUND') throw new UnrecoverableError(err.message);
      if (err instanceof UnconfirmedPaymentError) throw new UnrecoverableError(err.message);
      throw err;
    }
  };
}
