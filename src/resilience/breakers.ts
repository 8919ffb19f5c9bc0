import type { CircuitBreakerConfig } from '../config/types.ts';
import { RollingCounts } from './rolling-window.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Settles one attempt that a breaker let through; the first call counts, later ones are ignored. */
export interface BreakerPermit {
  success(): void;
  failure(): void;
  /** No verdict (the client left): a half-open trial becomes available again, nothing is counted. */
  release(): void;
}

/** The time source of every breaker; tests pass their own to step time without sleeping. */
export class BreakerClock {
  constructor(readonly now: () => number = () => Date.now()) {}

  /** Kept for callers that stop clocks at shutdown; breakers own no timers. */
  stop(): void {}
}

/**
 * Circuit breaker bookkeeping for one instance, timer-free: state moves from open to half-open when
 * it is next read after resetTimeout. Opens when, over the rolling window, at least volumeThreshold
 * attempts were settled and more than errorThresholdPercentage of them failed. Half-open lets one
 * trial through: its success closes, its failure reopens, its release frees the trial again.
 */
export class InstanceBreaker {
  private current: BreakerState = 'closed';
  private openedAt = 0;
  private trialTaken = false;
  /** Bumped on every transition so a permit from an earlier state cannot move the breaker. */
  private epoch = 0;
  /** first: settled attempts, second: failures. */
  private readonly window: RollingCounts;

  constructor(
    private readonly config: CircuitBreakerConfig,
    private readonly clock: BreakerClock,
    private readonly onStateChange: (state: BreakerState) => void,
  ) {
    this.window = new RollingCounts(config.windowMs);
  }

  get state(): BreakerState {
    if (this.current === 'open' && this.clock.now() >= this.openedAt + this.config.resetTimeoutMs) {
      this.moveTo('half-open');
    }
    return this.current;
  }

  /** Open breakers take no traffic; a half-open one takes its single trial through permit(). */
  get acceptsTraffic(): boolean {
    return this.state !== 'open';
  }

  /** When the next half-open trial becomes possible (ms since epoch), for Retry-After. */
  get nextTrialAt(): number {
    return this.openedAt + this.config.resetTimeoutMs;
  }

  /** Asks to send one request. Undefined means rejected: open, or half-open with its trial taken. */
  permit(): BreakerPermit | undefined {
    const state = this.state;
    if (state === 'open') return undefined;
    if (state === 'half-open') {
      if (this.trialTaken) return undefined;
      this.trialTaken = true;
      return this.trialPermit(this.epoch);
    }
    return this.closedPermit(this.epoch);
  }

  private closedPermit(epoch: number): BreakerPermit {
    let settled = false;
    const settle = (failed: boolean): void => {
      if (settled) return;
      settled = true;
      if (epoch !== this.epoch || this.current !== 'closed') return; // the breaker moved on meanwhile
      const now = this.clock.now();
      this.window.add(now, 1, failed ? 1 : 0);
      if (failed) this.checkThreshold(now);
    };
    return { success: () => settle(false), failure: () => settle(true), release: () => { settled = true; } };
  }

  private trialPermit(epoch: number): BreakerPermit {
    let settled = false;
    const current = () => !settled && epoch === this.epoch && this.current === 'half-open';
    return {
      success: () => {
        if (current()) this.moveTo('closed');
        settled = true;
      },
      failure: () => {
        if (current()) this.open();
        settled = true;
      },
      release: () => {
        if (current()) this.trialTaken = false;
        settled = true;
      },
    };
  }

  private checkThreshold(now: number): void {
    const { first: settled, second: failures } = this.window.totals(now);
    if (settled >= this.config.volumeThreshold && (failures / settled) * 100 > this.config.errorThresholdPercentage) this.open();
  }

  private open(): void {
    this.openedAt = this.clock.now();
    this.moveTo('open');
  }

  private moveTo(state: BreakerState): void {
    this.current = state;
    this.epoch += 1;
    this.trialTaken = false;
    if (state === 'closed') this.window.clear(); // a recovered instance starts with a clean record
    this.onStateChange(state);
  }

  /** Kept so pools can retire breakers uniformly; nothing to stop. */
  shutdown(): void {}
}
