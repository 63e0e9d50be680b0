import { randomUUID } from 'node:crypto';

/**
 * A unique, roughly time-ordered id: 12 hex digits of milliseconds, then 80 random bits. Unique
 * without coordination, never a bare timestamp. randomUUID draws from a pooled entropy buffer, which
 * keeps it cheap on the hot path.
 */
export function newId(prefix: string, now: Date = new Date()): string {
  return `${prefix}${now.getTime().toString(16).padStart(12, '0')}${randomUUID().replace(/-/g, '').slice(12, 32)}`;
}
