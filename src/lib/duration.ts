const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "500ms", "5s", "10m", "24h", "7d" (or a bare number of milliseconds) into milliseconds. */
export function parseDuration(value: string | number): number | null {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : null;
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) return null;
  return Number(m[1]) * UNITS[m[2] ?? 'ms'];
}
