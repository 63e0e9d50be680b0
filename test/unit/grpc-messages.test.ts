import { expect } from 'chai';
import { loadBillingDefinition } from '../../proto/billing/v1/billing.grpc.js';
import { statsReply, summaryReply } from '../../src/grpc/messages.js';

/** A reply as a client receives it: serialized with the rpc's message type, then decoded. */
function overTheWire(rpc: string, reply: unknown): Record<string, unknown> {
  const definition = loadBillingDefinition() as unknown as Record<
    string,
    Record<string, { responseSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): unknown }>
  >;
  const method = definition['billing.v1.BillingService'][rpc];
  return method.responseDeserialize(method.responseSerialize(reply)) as Record<string, unknown>;
}

describe('gRPC replies', () => {
  const BIG = 3_000_000_000; // past int32: protobufjs would send it as -1294967296

  it('caps the original int32 counts at 2^31 - 1 and sends the exact counts as int64', () => {
    const stats = { userId: 'u', serviceName: null, period: 'month', totalCost: '1.00' };
    const reply = overTheWire(
      'GetStatsMonth',
      statsReply({ ...stats, totalCount: BIG, freeCount: 5, paidCount: BIG - 5 }),
    );
    expect(reply).to.include({
      totalCount: 2_147_483_647,
      freeCount: 5,
      paidCount: 2_147_483_647,
      totalCount64: '3000000000',
      freeCount64: '5',
      paidCount64: '2999999995',
    });
    const summary = overTheWire(
      'GetStatsSummary',
      summaryReply({
        userId: 'u',
        totalCount: BIG,
        totalCost: '1.00',
        services: [{ serviceName: 'a', totalCount: BIG, freeCount: BIG, paidCount: 0, totalCost: '1.00' }],
      }),
    );
    expect(summary).to.include({ totalCount: 2_147_483_647, totalCount64: '3000000000' });
    expect((summary.services as Record<string, unknown>[])[0]).to.include({
      totalCount: 2_147_483_647,
      freeCount: 2_147_483_647,
      totalCount64: '3000000000',
      freeCount64: '3000000000',
      paidCount64: '0',
    });
  });
});
