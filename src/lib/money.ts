/**
 * Money is an integer count of micro-units (1 CNY = 1,000,000) held in a bigint. No binary floating
 * point ever holds an amount: requests are parsed from their decimal text, responses are formatted
 * from the integer.
 */
export type Micros = bigint;

export const MICROS_PER_UNIT = 1_000_000n;

/**
 * The largest amount anywhere in the service. Redis Lua (5.1) has only IEEE doubles, which hold every
 * integer up to 2^53 exactly; bounding every amount below that keeps Lua's integer arithmetic exact.
 */
export const MAX_MICROS: Micros = 2n ** 53n - 1n;

const DECIMAL = /^(-)?(\d{1,16})(?:\.(\d{1,6}))?$/;

/**
 * Parses "12.34", "0.0015" or a JSON number with at most 6 fractional digits. Returns null if invalid.
 * Strict: no white space, sign '+', exponent or thousands separator (" 1.00" and "1.00\n" are refused).
 */
export function parseMoney(input: unknown): Micros | null {
  let text: string;
  if (typeof input === 'string') text = input;
  else if (typeof input === 'number' && Number.isFinite(input)) text = numberText(input);
  else return null;
  const m = DECIMAL.exec(text);
  if (!m) return null;
  const whole = BigInt(m[2]);
  const frac = BigInt((m[3] ?? '').padEnd(6, '0'));
  const micros = whole * MICROS_PER_UNIT + frac;
  if (micros > MAX_MICROS) return null;
  return m[1] ? -micros : micros;
}

/**
 * A JSON number reaches us as a double; its shortest round-trip text is what the caller wrote for any
 * amount with at most 15 significant digits, which covers every amount this service accepts.
 */
function numberText(n: number): string {
  const s = String(n);
  return /e/i.test(s) ? 'invalid' : s;
}

/** Formats micro-units as a decimal string with at least 2 and at most 6 fractional digits. */
export function formatMoney(micros: Micros): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / MICROS_PER_UNIT;
  let frac = (abs % MICROS_PER_UNIT).toString().padStart(6, '0').replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${negative ? '-' : ''}${whole}.${frac}`;
}

/** Micro-units to whole cents, the unit of the payment service; null when not a whole number of cents. */
export function microsToCents(micros: Micros): bigint | null {
  return micros % 10_000n === 0n ? micros / 10_000n : null;
}

export function centsToMicros(cents: bigint): Micros {
  return cents * 10_000n;
}
