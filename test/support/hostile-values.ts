/**
 * Hostile values for the generated suite, from a seeded generator so that a failing run can be
 * replayed (HOSTILE_SEED=<seed>). Each family has fixed members (the limits and the known attacks)
 * and random members drawn from the seed.
 */

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function runSeed(): number {
  const given = process.env.HOSTILE_SEED;
  if (given !== undefined && /^\d+$/.test(given)) return Number(given);
  return Math.floor(Math.random() * 2 ** 31);
}

/** Separators and pattern characters of Redis keys and SCAN, whitespace, NUL and non-ASCII. */
const HOSTILE_CHARS = [
  ':',
  '{',
  '}',
  '*',
  '?',
  '[',
  ']',
  ' ',
  '\t',
  '\n',
  '\u0000',
  '\\',
  '/',
  '%',
  'é',
  '用',
  '😀',
  '\u00a0',
  '\u200b',
];
const PLAIN_CHARS = 'abcXYZ019_.-@';

function pick<T>(rnd: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rnd() * xs.length)];
}

/** A random string of `length` characters mixing plain and hostile ones. */
export function randomHostileString(rnd: () => number, length: number): string {
  let s = '';
  for (let i = 0; i < length; i++)
    s += rnd() < 0.6 ? PLAIN_CHARS[Math.floor(rnd() * PLAIN_CHARS.length)] : pick(rnd, HOSTILE_CHARS);
  return s;
}

/** Tails appended to a base id: whitespace, separators, patterns, NUL, non-ASCII. */
export const HOSTILE_TAILS = [
  ' ',
  '  ',
  '\t',
  '\n',
  '\r',
  '\u0000',
  ':',
  '::x',
  '}',
  '{',
  '{x}',
  '}:holds',
  '}:q:200001',
  '}:acct',
  '}:pending',
  '*',
  '?',
  '[a]',
  '[',
  ']',
  '*?[]{}:',
  '\\',
  '/..',
  '%00',
  'é',
  '用户',
  '😀',
  '\u00a0',
  '\u200b',
  '\u007f',
];

export const USER_ID = /^[A-Za-z0-9_.:@-]{1,64}$/;
export const REQUEST_ID = /^[\x20-\x7E]{1,128}$/;
export const ADJUSTMENT_KEY = /^[\x21-\x7E]{1,64}$/;

/** User ids around `base` (a per-run tag): the fixed hostile ones, lengths at the limit, random ones. */
export function hostileUserIds(rnd: () => number, base: string): string[] {
  const ids = new Set<string>(['', ' ', `${base}-ok.@:_`, `${base}:x`, `${base}:`, `:${base}`]);
  for (const tail of HOSTILE_TAILS) ids.add(base + tail);
  for (const head of [' ', '\t', '{', '*', '\u0000', 'é']) ids.add(head + base);
  for (const length of [63, 64, 65, 128, 1000]) ids.add(base + 'u'.repeat(length - base.length));
  for (let i = 0; i < 8; i++) ids.add(base + randomHostileString(rnd, 1 + Math.floor(rnd() * 70)));
  return [...ids];
}

/** Request ids (1-128 printable ASCII): valid odd ones, and ones past every limit. */
export function hostileRequestIds(rnd: () => number): string[] {
  const ids = new Set<string>([
    '',
    ' ',
    '  ',
    'r1',
    'r1 ',
    ' r1',
    ' r1 ',
    'R1',
    'x}:holds',
    'p}:q:200001',
    '{r1}',
    'r1*',
    'r1?',
    '[r1]',
    'a:b:c',
    '*',
    '?',
    '[',
    ']',
  ]);
  for (const tail of HOSTILE_TAILS) ids.add(`rq${tail}`);
  for (const length of [127, 128, 129, 1000]) ids.add('q'.repeat(length));
  ids.add(' '.repeat(128));
  for (let i = 0; i < 8; i++) ids.add(randomHostileString(rnd, 1 + Math.floor(rnd() * 140)));
  return [...ids];
}

/** Adjustment idempotency keys (1-64 printable ASCII, no space). */
export function hostileAdjustmentKeys(rnd: () => number): string[] {
  const keys = new Set<string>([
    '',
    ' ',
    'k1',
    'k1 ',
    ' k1',
    'K1',
    'x:k1',
    'k1:',
    '{k1}',
    '*',
    '?',
    '[k]',
    'k'.repeat(64),
    'k'.repeat(65),
  ]);
  for (const tail of HOSTILE_TAILS) keys.add(`ak${tail}`);
  for (let i = 0; i < 6; i++) keys.add(randomHostileString(rnd, 1 + Math.floor(rnd() * 70)));
  return [...keys];
}

/** Path segments for ids the service issues (reservations, orders): none of these is one. */
export function hostilePathIds(rnd: () => number): string[] {
  const ids = new Set<string>([
    'x',
    'rsv_',
    'rsv_AA.202611.' + '0'.repeat(32),
    'ord_',
    '0',
    '-1',
    'x'.repeat(41),
    'x'.repeat(201),
    'x'.repeat(5000),
    '..',
    '...',
  ]);
  for (const tail of HOSTILE_TAILS) ids.add(`id${tail}`);
  for (let i = 0; i < 4; i++) ids.add(randomHostileString(rnd, 1 + Math.floor(rnd() * 60)));
  return [...ids];
}

/**
 * Integer fields as raw JSON tokens (to send exponent forms and -0 exactly as written): each with
 * the number it means, or undefined when it is not a JSON number.
 */
export function integerTokens(max: number): { token: string; value: number | undefined }[] {
  const tokens = [
    '0',
    '-0',
    '1',
    '2',
    String(max - 1),
    String(max),
    String(max + 1),
    '-1',
    '1.5',
    '0.5',
    '1.0000001',
    '1e0',
    '1e1',
    '1E2',
    '1e3',
    '1e5',
    '1e308',
    '-1e308',
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '18446744073709551616',
    '"1"',
    '" 1"',
    '"1 "',
    '"1\\n"',
    '"1e3"',
    '"0x10"',
    'null',
    'true',
    '[]',
    '[1]',
    '{}',
  ];
  return tokens.map((token) => {
    const v: unknown = JSON.parse(token);
    return { token, value: typeof v === 'number' ? v : undefined };
  });
}

/** Money strings and numbers: at and past the limits, whitespace, exponent forms, 7 decimals. */
export const MONEY_STRINGS = [
  '1.00',
  '1',
  '1.0',
  '1.000000',
  '1.0000001',
  ' 1.00',
  '1.00 ',
  '1.00\n',
  '\t1.00',
  '\n1.00',
  '1.00\u0000',
  '+1.00',
  '-1.00',
  '-0.00',
  '0',
  '0.00',
  '0.01',
  '0.009',
  '0.000001',
  '0.0000001',
  '1e2',
  '1E2',
  '1e-2',
  '0x10',
  '1,00',
  '１.00',
  '1.',
  '.5',
  '00001.00',
  '1_000',
  'NaN',
  'Infinity',
  '50000.00',
  '50000.01',
  '9007199254.740991',
  '9007199254.740992',
  '99999999999999999',
  '9'.repeat(40),
  '',
];
export const MONEY_NUMBERS = [
  '1.5',
  '100',
  '1e2',
  '1e-7',
  '0.30000000000000004',
  '50000',
  '50000.01',
  '-0.0',
  '1e21',
  '0.000001',
  '9007199254.740992',
];

const STRICT_MONEY = /^(-)?(\d{1,16})(?:\.(\d{1,6}))?$/;
const MAX_MICROS = 2n ** 53n - 1n;

/**
 * Micro-units of a money value as SPEC 2 defines it (a decimal string, or a JSON number, with at
 * most 6 fractional digits), or null. 'either' for inputs SPEC does not settle (leading zeros).
 */
export function strictMicros(value: unknown): bigint | null | 'either' {
  let text: string;
  if (typeof value === 'number') {
    text = String(value);
    if (/e/i.test(text)) return null;
  } else if (typeof value === 'string') text = value;
  else return null;
  const m = STRICT_MONEY.exec(text);
  if (!m) return null;
  if (/^-?0\d/.test(text)) return 'either';
  const micros = BigInt(m[2]) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  if (micros > MAX_MICROS) return null;
  return m[1] ? -micros : micros;
}
