import { expect } from 'chai';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { checkWire } from '../../src/grpc/wire-types.js';
import { tolerantDecoding, decoded } from '../../src/grpc/messages.js';
import { AppError } from '../../src/lib/errors.js';
import { BILLING_SERVICES, billingServices, loadBillingRoot } from '../../proto/billing/v1/billing.grpc.js';

const root = loadBillingRoot();
const batchType = root.lookupType('billing.v1.DeductBatchRequest');
const item = (i: number) => ({ userId: 'u1', serviceName: 'passport', count: 1, requestId: `r${i}` });
const batch = (n: number) =>
  Buffer.from(batchType.encode({ items: Array.from({ length: n }, (_, i) => item(i)) }).finish());
/** An unknown field (number 99, a string): protobufjs skips it, and so does the count. */
const unknownField = Buffer.from([0x9a, 0x06, 0x01, 0x78]);

describe('gRPC request bytes checked before decoding', () => {
  it('counts a repeated message field, however its entries are spread through the message', () => {
    expect(checkWire(batchType, batch(10), 10)).to.deep.equal({ ok: true });
    expect(checkWire(batchType, batch(11), 10)).to.deep.equal({ ok: false, tooMany: 'items' });
    // Entries split by unknown fields still add up: 6 + 5 is 11.
    const split = Buffer.concat([batch(6), unknownField, batch(5)]);
    expect(batchType.decode(split).toJSON().items).to.have.length(11);
    expect(checkWire(batchType, split, 10)).to.deep.equal({ ok: false, tooMany: 'items' });
    expect(checkWire(batchType, split, 11)).to.deep.equal({ ok: true });
    // Wrong wire types inside an entry are still refused as a mismatch.
    const numberAsUserId = Buffer.from([0x0a, 0x02, 0x08, 0x05]); // items { userId (1): varint 5 }
    expect(checkWire(batchType, numberAsUserId, 10)).to.deep.equal({ ok: false });
  });

  it('does not count repeated numbers (packed or not): one decodes to one number', () => {
    const ns = new protobuf.Root().define('t');
    const outer = new protobuf.Type('Outer')
      .add(new protobuf.Field('packed', 1, 'int32', 'repeated', undefined, { packed: true }))
      .add(new protobuf.Field('unpacked', 2, 'int32', 'repeated', undefined, { packed: false }))
      .add(new protobuf.Field('entries', 3, 'Entry', 'repeated'));
    ns.add(new protobuf.Type('Entry').add(new protobuf.Field('n', 1, 'int32'))).add(outer);
    const many = Array.from({ length: 5000 }, (_, i) => i);
    const bytes = Buffer.from(outer.encode({ packed: many, unpacked: many, entries: [{ n: 1 }, { n: 2 }] }).finish());
    expect(checkWire(outer, bytes, 2)).to.deep.equal({ ok: true });
    const three = Buffer.from(outer.encode({ entries: [{ n: 1 }, { n: 2 }, { n: 3 }] }).finish());
    expect(checkWire(outer, three, 2)).to.deep.equal({ ok: false, tooMany: 'entries' });
  });

  it('refuses too many items from the bytes: the rpc decoder is never called, and the answer is the 400', () => {
    const { BillingInternalService } = billingServices();
    const service = root.lookupService(BILLING_SERVICES[1]);
    let decodes = 0;
    const definition = Object.fromEntries(
      Object.entries(BillingInternalService.service).map(([name, method]) => [
        name,
        {
          ...method,
          requestDeserialize: (bytes: Buffer) => {
            decodes++;
            return method.requestDeserialize(bytes);
          },
        },
      ]),
    ) as grpc.ServiceDefinition;
    const tolerant = tolerantDecoding(definition, service, 10) as Record<
      string,
      { requestDeserialize(b: Buffer): Record<string, unknown> }
    >;
    const refused = tolerant.DeductBatch.requestDeserialize(batch(11));
    expect(decodes).to.equal(0);
    let error: unknown;
    try {
      decoded(refused);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(AppError);
    expect(error).to.include({ kind: 'VALIDATION_FAILED' });
    expect((error as AppError).details).to.deep.equal([{ field: 'items', message: 'must hold 1 to 10 items' }]);
    const taken = decoded(tolerant.DeductBatch.requestDeserialize(batch(10)));
    expect(decodes).to.equal(1);
    expect(taken.items).to.have.length(10);
  });
});
