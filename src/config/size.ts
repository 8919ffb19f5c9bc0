/**
 * Sizes in config: integer bytes, or "<integer><unit>" with SI (KB=1000) or IEC (KiB=1024) units.
 * Units are matched case-insensitively; "kb" and "KB" both mean 1000 bytes.
 */

const UNIT_BYTES: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1_024,
  mib: 1_048_576,
  gib: 1_073_741_824,
};

const SIZE = /^(\d+)\s*([a-z]+)$/i;

export const SIZE_HINT = 'must be a size like 512B, 64KiB or 1MB';

/** Returns bytes, or undefined when the value is not a valid size. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const m = SIZE.exec(value);
  if (m === null) return undefined;
  const unit = UNIT_BYTES[(m[2] as string).toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Largest IEC unit that divides the value exactly: 65536 -> "64KiB", 1000 -> "1000B". */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [['GiB', 1_073_741_824], ['MiB', 1_048_576], ['KiB', 1_024]] as const) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
