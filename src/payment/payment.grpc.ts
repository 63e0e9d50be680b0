import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const protoFile = new URL('../../proto/payment/v1/payment.proto', import.meta.url);

/** Loads payment.proto (int64 as decimal strings: no amount passes through a double). */
export function loadPaymentProto() {
  const definition = protoLoader.loadSync(fileURLToPath(protoFile), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    payment: { v1: { Payment: grpc.ServiceClientConstructor } };
  };
  return pkg.payment.v1.Payment;
}

export type PaymentMethod = 'ALIPAY' | 'WECHATPAY';
export type PaymentStatus = 'PAYMENT_STATUS_UNSPECIFIED' | 'PENDING' | 'SUCCESS' | 'FAILED' | 'CLOSED';

export interface CreatePaymentRequest {
  order_id: string;
  user_id: string;
  /** cents, as a decimal string */
  amount: string;
  currency: string;
  method: PaymentMethod;
  subject: string;
  return_url: string;
  notify_url: string;
  client_ip: string;
}

export interface CreatePaymentReply {
  payment_id: string;
  status: PaymentStatus;
  pay_url: string;
  pay_code: string;
  pay_params: Record<string, string>;
}

export interface GetPaymentRequest {
  payment_id?: string;
  order_id?: string;
}

export interface GetPaymentReply {
  payment_id: string;
  order_id: string;
  status: PaymentStatus;
  amount: string;
  currency: string;
  paid_at: string;
}
