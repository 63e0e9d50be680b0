import { createHmac, timingSafeEqual } from 'node:crypto';

/** `X-Payment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` */
export function signPayload(secret: string, rawBody: string | Buffer, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.`).update(rawBody).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/** Checks the header against the raw body, and that `t` is within `toleranceMs` of `nowMs`. */
export function verifySignature(
  secret: string,
  rawBody: Buffer,
  header: string | undefined,
  nowMs: number,
  toleranceMs: number,
): SignatureCheck {
  if (!header) return { ok: false, reason: 'missing X-Payment-Signature' };
  const parts = Object.fromEntries(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!/^\d{1,12}$/.test(parts.t ?? '') || !/^[0-9a-f]{64}$/.test(parts.v1 ?? ''))
    return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(nowMs - t * 1000) > toleranceMs)
    return { ok: false, reason: 'signature timestamp outside the allowed window' };
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  if (!timingSafeEqual(expected, Buffer.from(parts.v1, 'hex'))) return { ok: false, reason: 'bad signature' };
  return { ok: true };
}
