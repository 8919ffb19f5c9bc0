/**
 * Durations in config: "250ms", "5s", "5m", "1h", Go-style compounds like "1m30s" or "1.5s",
 * or a non-negative integer meaning milliseconds. Everything resolves to whole milliseconds.
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

// One "<number><unit>" part; "ms" must be tried before "m".
const PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;

export const DURATION_HINT = 'must be a duration like 250ms, 5s or 5m';

/** Returns whole milliseconds, or undefined when the value is not a valid duration. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== 'string') return undefined;
  // Go accepts a bare "0"; any other unit-less string is ambiguous (seconds? ms?) so it is rejected.
  if (value === '0') return 0;
  if (value.length === 0) return undefined;
  PART.lastIndex = 0;
  let total = 0;
  while (PART.lastIndex < value.length) {
    const m = PART.exec(value);
    if (m === null) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  // Fractions are allowed ("1.5s") but the result must not need sub-millisecond precision.
  const ms = Math.round(total);
  if (Math.abs(ms - total) > 1e-6 || !Number.isSafeInteger(ms)) return undefined;
  return ms;
}

/** Canonical compound form that parseDuration reads back: 90000 -> "1m30s", 250 -> "250ms". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return String(ms);
  let rest = Math.round(ms);
  if (rest === 0) return '0ms';
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1_000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
