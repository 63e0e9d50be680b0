import * as grpc from '@grpc/grpc-js';
import { AppError } from '../lib/errors.js';
import {
  loadPaymentProto,
  type CreatePaymentRequest,
  type CreatePaymentReply,
  type GetPaymentRequest,
  type GetPaymentReply,
} from './payment.grpc.js';

/**
 * The payment service over gRPC. Every call carries a deadline of `payment_service.timeout`; down,
 * slow or failing all become 503 / 10009, with the gRPC status kept as the cause for the log.
 */
export class PaymentClient {
  private readonly client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  constructor(
    address: string,
    private readonly timeoutMs: number,
  ) {
    const Service = loadPaymentProto();
    this.client = new Service(address, grpc.credentials.createInsecure()) as PaymentClient['client'];
  }

  private call<Req, Res>(method: 'CreatePayment' | 'GetPayment', request: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.timeoutMs);
      this.client[method](request, { deadline }, (err: grpc.ServiceError | null, reply: Res) => {
        if (!err) return resolve(reply);
        const what =
          err.code === grpc.status.DEADLINE_EXCEEDED
            ? `no answer within ${this.timeoutMs} ms`
            : `${grpc.status[err.code] ?? err.code}: ${err.details}`;
        reject(
          Object.assign(new AppError('PAYMENT_UNAVAILABLE', `payment service unavailable (${method}: ${what})`), {
            cause: err,
            grpcCode: err.code,
          }),
        );
      });
    });
  }

  createPayment(req: CreatePaymentRequest): Promise<CreatePaymentReply> {
    return this.call('CreatePayment', req);
  }

  /** The payment, or null when the payment service has none for it (its CreatePayment failed). */
  getPayment(req: GetPaymentRequest): Promise<GetPaymentReply | null> {
    return this.call<GetPaymentRequest, GetPaymentReply>('GetPayment', req).catch((err: unknown) => {
      if ((err as { grpcCode?: number }).grpcCode === grpc.status.NOT_FOUND) return null;
      throw err;
    });
  }

  close(): void {
    this.client.close();
  }
}
