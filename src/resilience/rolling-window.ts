const BUCKETS = 10;

/**
 * Two counters over a sliding window of ten buckets (e.g. requests and failures). Buckets rotate
 * lazily from the time passed in, so the window costs no timer and stays a pure value.
 */
export class RollingCounts {
  private readonly first = new Array<number>(BUCKETS).fill(0);
  private readonly second = new Array<number>(BUCKETS).fill(0);
  private readonly stamps = new Array<number>(BUCKETS).fill(-1);
  private readonly bucketMs: number;

  constructor(windowMs: number) {
    this.bucketMs = Math.max(1, Math.floor(windowMs / BUCKETS));
  }

  /** Index of the bucket for `now`, emptied first if it still holds an older slice of time. */
  private bucket(now: number): number {
    const slice = Math.floor(now / this.bucketMs);
    const index = slice % BUCKETS;
    if (this.stamps[index] !== slice) {
      this.stamps[index] = slice;
      this.first[index] = 0;
      this.second[index] = 0;
    }
    return index;
  }

  add(now: number, first: number, second: number): void {
    const index = this.bucket(now);
    this.first[index]! += first;
    this.second[index]! += second;
  }

  /** Sums of both counters over the window that ends at `now`. */
  totals(now: number): { first: number; second: number } {
    const oldest = Math.floor(now / this.bucketMs) - BUCKETS + 1;
    let first = 0;
    let second = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.stamps[i]! >= oldest) {
        first += this.first[i]!;
        second += this.second[i]!;
      }
    }
    return { first, second };
  }

  clear(): void {
    this.stamps.fill(-1);
  }
}
