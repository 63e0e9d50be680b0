import { randomBytes } from 'node:crypto';

/**
 * A unique, roughly time-ordered id: 12 hex digits of milliseconds and 10 random bytes. Unique without
 * coordination (80 random bits), never a bare timestamp, sortable for humans reading logs.
 */
export function newId(prefix: string, now: Date = new Date()): string {
  return `${prefix}${now.getTime().toString(16).padStart(12, '0')}${randomBytes(10).toString('hex')}`;
}
