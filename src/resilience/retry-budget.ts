/**
 * Envoy-style retry budget for one route: retries in flight may not exceed `percent` of the requests
 * in flight, but `minConcurrent` retries are always allowed so a quiet route can still retry.
 */
export class RetryBudget {
  private activeRequests = 0;
  private activeRetries = 0;

  constructor(private readonly percent: number, private readonly minConcurrent: number) {}

  requestStarted(): void {
    this.activeRequests += 1;
  }

  requestFinished(): void {
    this.activeRequests -= 1;
  }

  /** Takes a retry slot when the budget allows one; the caller must call retryFinished() after. */
  tryAcquireRetry(): boolean {
    const allowed = Math.max(this.minConcurrent, Math.floor((this.activeRequests * this.percent) / 100));
    if (this.activeRetries >= allowed) return false;
    this.activeRetries += 1;
    return true;
  }

  retryFinished(): void {
    this.activeRetries -= 1;
  }

  get retriesInFlight(): number {
    return this.activeRetries;
  }
}
