import { RollingCounts } from './rolling-window.ts';

/** One retry the budget allowed; give it back exactly once when that retry attempt ends. */
export interface RetrySlot {
  release(): void;
}

/**
 * Retry budget for one route: retries over a sliding window may be at most `percent` of the requests
 * seen in that window, so retries never become a storm; `minConcurrent` retries in flight are always
 * allowed so a quiet route can still retry. A burst of failures on a busy route (an instance dying)
 * fits in the budget; a service where every request fails does not.
 */
export class RetryBudget {
  /** first: requests, second: retries. */
  private readonly window: RollingCounts;
  private activeRetries = 0;

  constructor(private readonly percent: number, private readonly minConcurrent: number, windowMs = 10_000) {
    this.window = new RollingCounts(windowMs);
  }

  requestStarted(now: number): void {
    this.window.add(now, 1, 0);
  }

  /** Takes a retry slot when the budget allows one, else undefined. */
  tryAcquireRetry(now: number): RetrySlot | undefined {
    if (this.activeRetries >= this.minConcurrent) {
      const { first: requests, second: retries } = this.window.totals(now);
      if (retries + 1 > (requests * this.percent) / 100) return undefined;
    }
    this.activeRetries += 1;
    this.window.add(now, 0, 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.activeRetries -= 1;
      },
    };
  }

  /** Counts a retry that needed no permission (it never reached an instance) toward the window. */
  recordExemptRetry(now: number): void {
    this.window.add(now, 0, 1);
  }

  get retriesInFlight(): number {
    return this.activeRetries;
  }
}
