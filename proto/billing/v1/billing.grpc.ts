import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

export const BILLING_PROTO_PATH = fileURLToPath(new URL('./billing.proto', import.meta.url));

/** The two services' full names, as health checks and reflection know them. */
export const BILLING_SERVICES = ['billing.v1.BillingService', 'billing.v1.BillingInternalService'] as const;

/**
 * Loads billing.proto. Field names as written (camelCase, the original's), int64 as decimal strings,
 * unset fields as their proto3 defaults (so a handler sees '' and 0), except `optional` ones
 * (RefundRequest.count, CommitReservationRequest.count), which are undefined when absent.
 */
export function loadBillingDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(BILLING_PROTO_PATH, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}

export function billingServices(definition: protoLoader.PackageDefinition = loadBillingDefinition()) {
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    billing: {
      v1: { BillingService: grpc.ServiceClientConstructor; BillingInternalService: grpc.ServiceClientConstructor };
    };
  };
  return pkg.billing.v1;
}

/** The same file as protobufjs reflection types (the server checks wire types with them). */
export function loadBillingRoot(): protobuf.Root {
  const root = protobuf.loadSync(BILLING_PROTO_PATH);
  root.resolveAll();
  return root;
}
