import { expect } from 'chai';
import { gatewaySchemas } from '../../src/api/gateway.schemas.js';
import { validate, validateBatch } from '../../src/api/validation.js';
import { AppError } from '../../src/lib/errors.js';
import { seededRandom } from '../support/hostile-values.js';

const outcome = (run: () => unknown) => {
  try {
    return { ok: true, value: run() };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { ok: false, value: err.kind };
  }
};

describe("batch bodies: the route checks them in two steps, with the documented schema's rules", () => {
  const MAX = 5;
  const schemas = gatewaySchemas(100, MAX);
  const next = seededRandom(20261201);
  const pick = <T>(xs: T[]) => xs[Math.floor(next() * xs.length)];
  /** Per key: values the single call takes, then values it refuses. */
  const fieldValues: Record<string, [unknown[], unknown[]]> = {
    request_id: [
      ['r1', 'r-2', 'x'.repeat(128)],
      ['', ' r', 'x'.repeat(129), 7, null],
    ],
    user_id: [
      ['u1', 'user_2'],
      ['bad user!', '', 5, null],
    ],
    service_name: [
      ['passport', 'asset'],
      ['Passport', '', 3],
    ],
    count: [
      [1, 2, 100],
      [101, 0, -1, 1.5, '1', 1e20, null],
    ],
  };
  const item = (keys: string[]) => {
    if (next() < 0.01) return pick([null, [], 'item', 3, {}]);
    const out: Record<string, unknown> = {};
    for (const key of keys) {
      if (next() < 0.02) continue;
      const [good, bad] = fieldValues[key];
      out[key] = next() < 0.97 ? pick(good) : pick(bad);
    }
    if (next() < 0.01) out.extra = 1;
    return out;
  };
  const body = (keys: string[]) => {
    if (next() < 0.05) return pick([null, [], 'text', 7, {}, { items: 'x' }, { items: {} }]);
    const n = pick([0, 1, 1, 2, 2, 3, MAX, MAX + 1, 20]);
    const out: Record<string, unknown> = { items: Array.from({ length: n }, () => item(keys)) };
    if (next() < 0.05) out.extra = true;
    return out;
  };

  for (const [name, whole, single, keys] of [
    ['deduct', schemas.deductBatch, schemas.deduct, ['request_id', 'user_id', 'service_name', 'count']],
    ['check', schemas.checkBatch, schemas.check, ['user_id', 'service_name', 'count']],
  ] as const) {
    it(`${name}: accepts exactly the bodies the whole schema accepts, with the same items`, () => {
      let accepted = 0;
      for (let i = 0; i < 5000; i++) {
        const b = body([...keys]);
        const oneSchema = outcome(() => validate(whole, b).items);
        const twoSteps = outcome(() => validateBatch(schemas.batch, single, b));
        expect(twoSteps, JSON.stringify(b)).to.deep.equal(oneSchema);
        if (oneSchema.ok) accepted++;
      }
      // Both outcomes are well represented, or the comparison says little.
      expect(accepted).to.be.within(100, 4900);
    });
  }
});
