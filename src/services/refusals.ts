import { AppError } from '../lib/errors.js';
import { formatMoney } from '../lib/money.js';

/**
 * The error for a charging script's refusal ('reused', 'no_quota', 'no_balance'), shared by deduct
 * and reserve; null for any other status.
 */
export function refusalError(status: string, service: string, requestId: string, available: string, amount: string): AppError | null {
  switch (status) {
    case 'reused':
      return new AppError('REQUEST_ID_REUSED', `request_id ${requestId} was used before with a different payload`);
    case 'no_quota':
      return new AppError('INSUFFICIENT_QUOTA', `free quota of ${service} is used up for this month and the service is free-only`);
    case 'no_balance':
      return new AppError('INSUFFICIENT_BALANCE', `insufficient balance: ${formatMoney(BigInt(available))} available, ${formatMoney(BigInt(amount))} needed`);
    default:
      return null;
  }
}
