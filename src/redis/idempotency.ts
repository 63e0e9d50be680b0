import { hash } from 'node:crypto';

/**
 * Remembered deduct requests (see deduct-8.lua): where one lives and the id its record gets.
 *
 * A request's digest is SHA-256(user id, NUL, request id). Its first 12 bytes are the field it is
 * remembered under (a collision of two request ids of one user within one window needs ~2^48 of them),
 * its first byte picks one of SHARDS hashes, and 10 more bytes make its record id unique.
 */
export const SHARDS = 16;

export interface RequestPlace {
  /**
   * The field in the window's hash: 12 bytes, given to scripts as 24 hex digits (see requestField in
   * includes/remembered.lua): one binary argument makes ioredis encode the whole command through its
   * buffer path, which cost the deduct 4-5 us more of the API's CPU than a command of strings.
   */
  field: string;
  shard: number;
  /** this window's number: floor(now / window) */
  window: number;
}

/** sha256 of `<user id>\0<request id>`, hashed in one call (no Hash object: this runs on every deduct). */
export function requestDigest(userId: string, requestId: string): Buffer {
  return hash('sha256', `${userId}\u0000${requestId}`, 'buffer');
}

export function requestPlace(digest: Buffer, nowMs: number, windowMs: number): RequestPlace {
  return { field: fieldOf(digest), shard: digest[0] % SHARDS, window: Math.floor(nowMs / windowMs) };
}

/** A digest's first 12 bytes, the field it is remembered under, as hex (see RequestPlace). */
export function fieldOf(digest: Buffer): string {
  return digest.toString('hex', 0, 12);
}

/**
 * The record id of the call this request made in `window`: `rec_`, the window's start in ms (12 hex
 * digits: roughly time-ordered, like every other id) and 80 bits of the digest. A replay within the
 * window gets the same id again; the same request id after the window is a new call with a new id.
 */
export function recordIdOf(digest: Buffer, window: number, windowMs: number): string {
  return `rec_${(window * windowMs).toString(16).padStart(12, '0')}${digest.subarray(12, 22).toString('hex')}`;
}

/** The fingerprint a deduct of `count` calls of `service` is remembered with (refunds find the service by it). */
export function deductPrint(service: string, count: number): number {
  return payloadPrint(`${service}|${count}`);
}

/** A refund id's digest: a domain of its own, so that no refund id shares a request id's digest. */
export function refundDigest(userId: string, refundId: string): Buffer {
  return hash('sha256', `refund\u0000${userId}\u0000${refundId}`, 'buffer');
}

/**
 * The key a refund is stored under in MySQL (journal, ledger, refunds table): `rfd_`, its window's
 * start and 80 bits of its digest. A refund id is idempotent within the window; the same id after it
 * is a new refund with a new key, so nothing downstream refuses it (as request ids, SPEC 10.2).
 */
export function refundKeyOf(digest: Buffer, window: number, windowMs: number): string {
  return `rfd_${(window * windowMs).toString(16).padStart(12, '0')}${digest.subarray(12, 22).toString('hex')}`;
}

/** A 32-bit FNV-1a fingerprint of what a request asks (service and count): a reuse with another payload differs. */
export function payloadPrint(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
