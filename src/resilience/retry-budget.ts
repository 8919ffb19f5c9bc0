const BUCKETS = 10;

/**
 * Retry budget for one route: retries over a sliding window may be at most `percent` of the requests
 * seen in that window, so retries never become a storm; `minConcurrent` retries in flight are always
 * allowed so a quiet route can still retry. A burst of failures on a busy route (an instance dying)
 * fits in the budget; a service where every request fails does not.
 */
export class RetryBudget {
  private readonly requests = new Array<number>(BUCKETS).fill(0);
  private readonly retries = new Array<number>(BUCKETS).fill(0);
  private readonly stamps = new Array<number>(BUCKETS).fill(-1);
  private readonly bucketMs: number;
  private activeRetries = 0;

  constructor(private readonly percent: number, private readonly minConcurrent: number, windowMs = 10_000) {
    this.bucketMs = Math.max(1, Math.floor(windowMs / BUCKETS));
  }

  /** Index of the bucket for `now`, emptied first if it still holds an older slice of time. */
  private bucket(now: number): number {
    const slice = Math.floor(now / this.bucketMs);
    const index = slice % BUCKETS;
    if (this.stamps[index] !== slice) {
      this.stamps[index] = slice;
      this.requests[index] = 0;
      this.retries[index] = 0;
    }
    return index;
  }

  private windowTotals(now: number): { requests: number; retries: number } {
    const oldest = Math.floor(now / this.bucketMs) - BUCKETS + 1;
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.stamps[i]! >= oldest) {
        requests += this.requests[i]!;
        retries += this.retries[i]!;
      }
    }
    return { requests, retries };
  }

  requestStarted(now: number): void {
    this.requests[this.bucket(now)]! += 1;
  }

  /** Takes a retry slot when the budget allows one; the caller must call retryFinished() after. */
  tryAcquireRetry(now: number): boolean {
    if (this.activeRetries >= this.minConcurrent) {
      const { requests, retries } = this.windowTotals(now);
      if (retries + 1 > (requests * this.percent) / 100) return false;
    }
    this.activeRetries += 1;
    this.retries[this.bucket(now)]! += 1;
    return true;
  }

  /** Counts a retry that needed no permission (it never reached an instance) toward the window. */
  recordExemptRetry(now: number): void {
    this.retries[this.bucket(now)]! += 1;
  }

  retryFinished(): void {
    this.activeRetries -= 1;
  }

  get retriesInFlight(): number {
    return this.activeRetries;
  }
}
