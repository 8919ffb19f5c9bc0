/** Twelve 5-second slices: the last minute, rotated lazily from the time passed in. */
const SLICES = 12;
const SLICE_MS = 5_000;
/** Latency bucket upper bounds in ms; p99 is reported as the bound of the bucket it falls in. */
const BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, Infinity];

/** What the dashboard shows per instance over the last minute. */
export interface InstanceSummary {
  readonly requestsPerSecond: number;
  readonly errorPercent: number | null;
  readonly p99Ms: number | null;
}

/** Request rate, error share and latency of one instance over the last minute, in fixed memory. */
export class InstanceStats {
  private readonly stamps = new Float64Array(SLICES).fill(-1);
  private readonly counts = new Uint32Array(SLICES);
  private readonly errors = new Uint32Array(SLICES);
  private readonly histogram = new Uint32Array(SLICES * BOUNDS.length);

  private slice(now: number): number {
    const stamp = Math.floor(now / SLICE_MS);
    const index = stamp % SLICES;
    if (this.stamps[index] !== stamp) {
      this.stamps[index] = stamp;
      this.counts[index] = 0;
      this.errors[index] = 0;
      this.histogram.fill(0, index * BOUNDS.length, (index + 1) * BOUNDS.length);
    }
    return index;
  }

  record(now: number, durationMs: number, failed: boolean): void {
    const index = this.slice(now);
    this.counts[index]! += 1;
    if (failed) this.errors[index]! += 1;
    let bucket = 0;
    while (durationMs > BOUNDS[bucket]!) bucket += 1;
    this.histogram[index * BOUNDS.length + bucket]! += 1;
  }

  summary(now: number): InstanceSummary {
    const oldest = Math.floor(now / SLICE_MS) - SLICES + 1;
    let count = 0;
    let errors = 0;
    const merged = new Array<number>(BOUNDS.length).fill(0);
    for (let i = 0; i < SLICES; i++) {
      if (this.stamps[i]! < oldest) continue;
      count += this.counts[i]!;
      errors += this.errors[i]!;
      for (let b = 0; b < BOUNDS.length; b++) merged[b]! += this.histogram[i * BOUNDS.length + b]!;
    }
    if (count === 0) return { requestsPerSecond: 0, errorPercent: null, p99Ms: null };
    const rank = Math.ceil(count * 0.99);
    let seen = 0;
    let p99: number = BOUNDS[BOUNDS.length - 2]!;
    for (let b = 0; b < BOUNDS.length; b++) {
      seen += merged[b]!;
      if (seen >= rank) {
        p99 = Number.isFinite(BOUNDS[b]!) ? BOUNDS[b]! : BOUNDS[b - 1]!;
        break;
      }
    }
    return { requestsPerSecond: Math.round((count / (SLICES * SLICE_MS / 1_000)) * 100) / 100, errorPercent: Math.round((errors / count) * 1_000) / 10, p99Ms: p99 };
  }
}
