import type Joi from 'joi';
import { AppError, type ErrorDetail } from '../lib/errors.js';

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Accepts camelCase and snake_case field names (the protobuf JSON mapping convention) by renaming
 * camelCase to snake_case; the same field given both ways with different values is an error.
 */
export function normalizeKeys(input: unknown, details: ErrorDetail[]): unknown {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return input;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    const name = snake(key);
    if (name in out && JSON.stringify(out[name]) !== JSON.stringify(value)) {
      details.push({ field: name, message: `given twice (${key}) with different values` });
    }
    out[name] = value;
  }
  return out;
}

/** Validates body or query against a joi schema (snake_case keys). Every bad field gets a detail. */
export function validate<T>(schema: Joi.ObjectSchema<T>, input: unknown, source: 'body' | 'query' = 'body'): T {
  const details: ErrorDetail[] = [];
  const normalized = normalizeKeys(input === undefined ? {} : input, details);
  if (normalized === null || typeof normalized !== 'object' || Array.isArray(normalized)) {
    throw new AppError('VALIDATION_FAILED', 'the request body must be a JSON object', [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  }
  // Query strings carry text, so numbers are converted there; a JSON body must send the right types.
  const { value, error } = schema.validate(normalized, {
    abortEarly: false,
    convert: source === 'query',
    errors: { wrap: { label: false } },
  });
  if (error) {
    for (const d of error.details)
      details.push({ field: d.path.join('.') || String(d.context?.key ?? 'body'), message: d.message });
  }
  if (details.length > 0)
    throw new AppError('VALIDATION_FAILED', `validation failed: ${details.map((d) => d.field).join(', ')}`, details);
  return value as T;
}

export const ok = <T>(data: T) => ({ success: true as const, data });
