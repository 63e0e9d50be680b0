import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import Joi from 'joi';
import { compileFastPath } from '../../src/api/fast-path.js';
import { gatewaySchemas } from '../../src/api/gateway.schemas.js';
import { validate } from '../../src/api/validation.js';
import { AppError } from '../../src/lib/errors.js';
import { seededRandom } from '../support/hostile-values.js';

/** Values near every edge the gateway's rules have, and of every JSON type. */
const VALUES: unknown[] = [
  'u1',
  'passport',
  'req-1',
  'a b',
  'with space ',
  ' ',
  '',
  'x'.repeat(64),
  'x'.repeat(65),
  'r'.repeat(128),
  'r'.repeat(129),
  'é',
  'tab\there',
  'line\n',
  'null\u0000byte',
  'user:a@b.c-d_e',
  '5',
  '1e3',
  0,
  1,
  -1,
  -0,
  1.5,
  2,
  999,
  1000,
  1001,
  1_000_000,
  2 ** 53,
  2 ** 53 + 2,
  1e308,
  null,
  true,
  false,
  [],
  ['u1'],
  {},
  { a: 1 },
];

/** Bodies made of a schema's own keys (some left out), stray keys, camelCase and `__proto__`. */
function bodies(keys: Record<string, { type: string }>, n: number, seed: number): unknown[] {
  const next = seededRandom(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(next() * xs.length)];
  const stray = ['extra', 'userId', 'requestId', '__proto__', 'constructor', 'COUNT'];
  const out: unknown[] = [null, [], 'text', 7, {}];
  for (let i = 0; i < n; i++) {
    const parts: string[] = [];
    for (const [key, { type }] of Object.entries(keys)) {
      if (next() < 0.1) continue;
      // Mostly values the rules accept, so that the fast path is tried on many accepted bodies too.
      const value =
        next() < 0.6 ? pick<unknown>(type === 'number' ? [1, 2, 999] : ['u1', 'passport', 'req-1']) : pick(VALUES);
      parts.push(`${JSON.stringify(key)}: ${JSON.stringify(value)}`);
    }
    if (next() < 0.15) parts.push(`${JSON.stringify(pick(stray))}: ${JSON.stringify(pick(VALUES))}`);
    // Parsed as express.json parses: "__proto__" becomes an own key.
    out.push(JSON.parse(`{${parts.join(', ')}}`));
  }
  return out;
}

/**
 * The schemas the app validates with: every object schema the *.schemas.ts export, and those their
 * `<feature>Schemas(maxCalls, maxBatchItems)` factories build.
 */
async function appSchemas(): Promise<[string, Joi.ObjectSchema][]> {
  const found: [string, Joi.ObjectSchema][] = [];
  const add = (name: string, value: unknown) => {
    if (Joi.isSchema(value) && (value as Joi.Schema).type === 'object') found.push([name, value as Joi.ObjectSchema]);
  };
  const dir = new URL('../../src/api/', import.meta.url);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.schemas.ts'))) {
    const mod = (await import(new URL(file, dir).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(mod)) {
      if (typeof value === 'function' && name.endsWith('Schemas')) {
        const built = (value as (maxCalls: number, maxBatchItems: number) => Record<string, unknown>)(1000, 1000);
        for (const [key, schema] of Object.entries(built)) add(`${name} ${key}`, schema);
      } else add(`${file} ${name}`, value);
    }
  }
  return found;
}

describe('validation fast path (a body joi takes as it is skips joi)', () => {
  it('answers, for every body it accepts, exactly what joi answers; anything else goes to joi', async () => {
    let compiled = 0;
    for (const [name, schema] of await appSchemas()) {
      const fast = compileFastPath(schema);
      if (!fast) continue;
      compiled++;
      const keys = (schema.describe() as { keys: Record<string, { type: string }> }).keys;
      const strict = schema.prefs({ abortEarly: false, convert: false });
      let accepted = 0;
      for (const body of bodies(keys, 3000, Object.keys(keys).length * 7919 + name.length)) {
        const answer = fast(body);
        if (answer === undefined) continue;
        accepted++;
        const joi = strict.validate(body);
        expect(joi.error, `${name}: ${JSON.stringify(body)} taken by the fast path, refused by joi`).to.equal(
          undefined,
        );
        expect(answer, `${name}: ${JSON.stringify(body)}`).to.deep.equal(joi.value);
      }
      // The gateway's own: not a path that never runs (a good share of the bodies were valid as they were).
      if (name.startsWith('gatewaySchemas')) expect(accepted, name).to.be.greaterThan(100);
    }
    expect(compiled).to.be.at.least(2);
  });

  it('takes the gateway bodies callers send, defaults included', () => {
    const g = gatewaySchemas(1000, 1000);
    const check = compileFastPath(g.check)!;
    const deduct = compileFastPath(g.deduct)!;
    expect(check({ user_id: 'u1', service_name: 'passport' })).to.deep.equal({
      user_id: 'u1',
      service_name: 'passport',
      count: 1,
    });
    expect(deduct({ request_id: 'r 1', user_id: 'u1', service_name: 'passport', count: 1000 })).to.deep.equal({
      request_id: 'r 1',
      user_id: 'u1',
      service_name: 'passport',
      count: 1000,
    });
    // Refusals and everything joi converts or renames go to joi.
    for (const body of [
      { request_id: 'r', user_id: 'u1', service_name: 'passport', count: 1001 },
      { request_id: 'r', user_id: 'u 1', service_name: 'passport' },
      { request_id: 'r', userId: 'u1', service_name: 'passport' },
      { request_id: 'r', user_id: 'u1', service_name: 'passport', count: '5' },
      JSON.parse('{"request_id": "r", "user_id": "u1", "service_name": "passport", "__proto__": {}}') as object,
    ])
      expect(deduct(body), JSON.stringify(body)).to.equal(undefined);
  });

  it('is not compiled for a schema with anything it does not understand', () => {
    const unsupported: Joi.ObjectSchema[] = [
      Joi.object({ a: Joi.string().trim() }),
      Joi.object({ a: Joi.string().allow('') }),
      Joi.object({ a: Joi.string().lowercase() }),
      Joi.object({ a: Joi.string().optional() }),
      Joi.object({ a: Joi.string().pattern(/x/, { invert: true }) }),
      Joi.object({ a: Joi.number().positive() }),
      Joi.object({ a: Joi.number().precision(2) }),
      Joi.object({ a: Joi.boolean() }),
      Joi.object({ a: Joi.object({ b: Joi.string() }) }),
      Joi.object({ a: Joi.string() }).unknown(true),
      Joi.object({ a: Joi.string() }).rename('b', 'a'),
      Joi.object({ a: Joi.string(), b: Joi.string().when('a', { is: 'x', then: Joi.required() }) }),
      Joi.object({ a: Joi.string().custom((v: string) => v) }),
      Joi.object({ a: Joi.number().default(() => 1) }),
      Joi.object({ a: Joi.string() }).messages({ 'any.required': 'x' }),
    ];
    for (const schema of unsupported) expect(compileFastPath(schema), JSON.stringify(schema.describe())).to.equal(null);
  });

  it('leaves the errors to joi: validate() words a refused body as before', () => {
    const { deduct } = gatewaySchemas(1000, 1000);
    const body = { request_id: 'r', user_id: 'u 1', service_name: 'passport', count: 0 };
    try {
      validate(deduct, body);
      expect.fail('accepted');
    } catch (err) {
      expect(err).to.be.instanceOf(AppError);
      expect((err as AppError).details).to.deep.equal([
        { field: 'user_id', message: 'must be 1-64 characters of A-Z a-z 0-9 _ . : @ -' },
        { field: 'count', message: 'count must be greater than or equal to 1' },
      ]);
    }
  });
});
