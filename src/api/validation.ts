import type Joi from 'joi';
import { AppError, type ErrorDetail } from '../lib/errors.js';
import { compileFastPath, type FastPath } from './fast-path.js';

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Accepts camelCase and snake_case field names (the protobuf JSON mapping convention) by renaming
 * camelCase to snake_case; the same field given both ways with different values is an error.
 */
export function normalizeKeys(input: unknown, details: ErrorDetail[]): unknown {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return input;
  // Most callers send snake_case only: nothing to rename, no copy made.
  if (!Object.keys(input).some((key) => CAPITAL.test(key) || key === '__proto__')) return input;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    // JSON.parse makes "__proto__" an own key; copied, it would set the copy's prototype.
    if (key === '__proto__') {
      details.push({ field: key, message: 'is not allowed' });
      continue;
    }
    const name = snake(key);
    if (name in out && JSON.stringify(out[name]) !== JSON.stringify(value)) {
      details.push({ field: name, message: `given twice (${key}) with different values` });
    }
    out[name] = value;
  }
  return out;
}

const CAPITAL = /[A-Z]/;

/**
 * Each schema with the options it is validated with, set once: options passed to every validate()
 * would be merged into the schema's preferences on every call (a tenth of joi's cost on a check).
 */
const withPrefs = { body: new WeakMap<Joi.Schema, Joi.Schema>(), query: new WeakMap<Joi.Schema, Joi.Schema>() };
function prepared<T>(schema: Joi.ObjectSchema<T>, source: 'body' | 'query'): Joi.ObjectSchema<T> {
  let ready = withPrefs[source].get(schema);
  if (!ready) {
    // Query strings carry text, so numbers are converted there; a JSON body must send the right types.
    ready = schema.prefs({ abortEarly: false, convert: source === 'query', errors: { wrap: { label: false } } });
    withPrefs[source].set(schema, ready);
  }
  return ready as Joi.ObjectSchema<T>;
}

/** Each schema's fast path, compiled on first use (null: the schema has none). */
const fastPaths = new WeakMap<Joi.Schema, FastPath | null>();
function fastPathOf(schema: Joi.ObjectSchema): FastPath | null {
  let fast = fastPaths.get(schema);
  if (fast === undefined) {
    fast = compileFastPath(schema);
    fastPaths.set(schema, fast);
  }
  return fast;
}

/** Validates body or query against a joi schema (snake_case keys). Every bad field gets a detail. */
export function validate<T>(schema: Joi.ObjectSchema<T>, input: unknown, source: 'body' | 'query' = 'body'): T {
  // A body joi would take as it is skips joi (see fast-path.ts): the gateway's calls nearly all are.
  if (source === 'body') {
    const accepted = fastPathOf(schema)?.(input);
    if (accepted) return accepted as T;
  }
  const details: ErrorDetail[] = [];
  const normalized = normalizeKeys(input === undefined ? {} : input, details);
  if (normalized === null || typeof normalized !== 'object' || Array.isArray(normalized)) {
    throw new AppError('VALIDATION_FAILED', 'the request body must be a JSON object', [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  }
  const { value, error } = prepared(schema, source).validate(normalized);
  if (error) {
    for (const d of error.details)
      details.push({ field: d.path.join('.') || String(d.context?.key ?? 'body'), message: d.message });
  }
  if (details.length > 0) throw validationError(details);
  return value as T;
}

/** Problems described in one refusal: enough to mend a request, and a bounded answer to a hostile one. */
export const REPORTED_DETAILS = 20;

/**
 * The 400 for `details`, of which it names the first REPORTED_DETAILS; `complete`: every problem was
 * looked for (a batch stops looking once it has enough).
 */
function validationError(details: ErrorDetail[], complete = true): AppError {
  const shown = details.slice(0, REPORTED_DETAILS);
  const fields = shown.map((d) => d.field).join(', ');
  const partial = !complete || shown.length < details.length;
  const note = partial ? ` (the first ${shown.length}${complete ? ` of ${details.length}` : ''} problems)` : '';
  return new AppError('VALIDATION_FAILED', `validation failed: ${fields}${note}`, shown);
}

/**
 * A batch body: its envelope first (`items` counted, nothing inside looked at), then each item as the
 * single call's body is (its fast path first). Details are named `items.<index>.<key>`; looking stops
 * once REPORTED_DETAILS problems are found, so refusing a body of bad items costs no more than that.
 * It takes what the same rules written as one schema take (gatewaySchemas' checkBatch and deductBatch,
 * which the API document shows), for snake_case items, with the same value:
 * test/unit/batch-validation.test.ts.
 */
export function validateBatch<T>(
  envelope: Joi.ObjectSchema<{ items: unknown[] }>,
  item: Joi.ObjectSchema<T>,
  body: unknown,
): T[] {
  const { items } = validate(envelope, body);
  const valid: T[] = [];
  const details: ErrorDetail[] = [];
  let i = 0;
  for (; i < items.length && details.length < REPORTED_DETAILS; i++) {
    try {
      valid.push(validate(item, items[i]));
    } catch (err) {
      if (!(err instanceof AppError) || !err.details) throw err;
      for (const d of err.details) {
        details.push({ field: d.field === 'body' ? `items.${i}` : `items.${i}.${d.field}`, message: d.message });
      }
    }
  }
  if (details.length > 0) throw validationError(details, i === items.length);
  return valid;
}

export const ok = <T>(data: T) => ({ success: true as const, data });
