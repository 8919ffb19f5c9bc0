import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { CircuitBreakerConfig } from '../config/types.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Settles one attempt that a breaker let through. */
export interface BreakerPermit {
  success(): void;
  failure(): void;
}

const BUCKETS = 10;

/**
 * One shared clock for every breaker's rolling window, so N breakers cost one interval instead of 2N
 * (opossum owns a bucket interval and a snapshot interval per breaker otherwise).
 */
export class BreakerClock {
  readonly controller = new EventEmitter();
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor() {
    this.controller.setMaxListeners(0);
  }

  /** Returns the controller after making sure a rotation interval for this window exists. */
  controllerFor(windowMs: number): EventEmitter {
    if (!this.timers.has(windowMs)) {
      const timer = setInterval(() => this.controller.emit(`rotate:${windowMs}`), Math.max(1, Math.floor(windowMs / BUCKETS)));
      timer.unref();
      this.timers.set(windowMs, timer);
    }
    return this.controller;
  }

  stop(): void {
    for (const timer of this.timers.values()) clearInterval(timer);
    this.timers.clear();
  }
}

/** Forwards `rotate:<window>` as the plain `rotate` event opossum listens for. */
function rotationFor(clock: BreakerClock, windowMs: number): EventEmitter {
  const shared = clock.controllerFor(windowMs);
  const local = new EventEmitter();
  const forward = () => local.emit('rotate');
  shared.on(`rotate:${windowMs}`, forward);
  (local as EventEmitter & { detach?: () => void }).detach = () => shared.off(`rotate:${windowMs}`, forward);
  return local;
}

const noop = () => {};
const ATTEMPT_FAILED = new Error('upstream attempt failed');

/**
 * An opossum circuit breaker for one instance. opossum never runs the request itself: the proxy
 * asks for a permit, does the attempt, and settles the permit, so timeouts stay in the proxy.
 */
export class InstanceBreaker {
  private readonly breaker: CircuitBreaker<[], void>;
  private readonly rotation: EventEmitter & { detach?: () => void };
  private openedAt = 0;
  /** Set synchronously by the action while fire() runs; picked up by permit(). */
  private pendingSettle: { resolve: () => void; reject: (error: Error) => void } | undefined;

  constructor(
    private readonly config: CircuitBreakerConfig,
    clock: BreakerClock,
    onStateChange: (state: BreakerState) => void,
  ) {
    this.rotation = rotationFor(clock, config.windowMs);
    this.breaker = new CircuitBreaker<[], void>(() => new Promise<void>((resolve, reject) => {
      this.pendingSettle = { resolve, reject };
    }), {
      timeout: false, // the proxy owns timeouts; opossum's would abort every in-flight call of the breaker
      resetTimeout: config.resetTimeoutMs,
      errorThresholdPercentage: config.errorThresholdPercentage,
      volumeThreshold: config.volumeThreshold,
      rollingCountTimeout: config.windowMs,
      rollingCountBuckets: BUCKETS,
      rollingPercentilesEnabled: false, // else each failure sorts every latency sample
      enableSnapshots: false,
      rotateBucketController: this.rotation,
    } as CircuitBreaker.Options);
    this.breaker.on('open', () => {
      this.openedAt = Date.now();
      onStateChange('open');
    });
    this.breaker.on('halfOpen', () => onStateChange('half-open'));
    this.breaker.on('close', () => onStateChange('closed'));
  }

  get state(): BreakerState {
    if (this.breaker.opened) return 'open';
    if (this.breaker.halfOpen) return 'half-open';
    return 'closed';
  }

  /** Open breakers take no traffic; a half-open one takes its single trial through permit(). */
  get acceptsTraffic(): boolean {
    return !this.breaker.opened;
  }

  /** When the next half-open trial becomes possible (ms since epoch), for Retry-After. */
  get nextTrialAt(): number {
    return this.openedAt + this.config.resetTimeoutMs;
  }

  /**
   * Asks to send one request. Undefined means rejected: open, or half-open with its trial taken.
   * Relies on opossum calling the action synchronously inside fire().
   */
  permit(): BreakerPermit | undefined {
    this.pendingSettle = undefined;
    this.breaker.fire().catch(noop);
    const settle = this.pendingSettle as { resolve: () => void; reject: (error: Error) => void } | undefined;
    this.pendingSettle = undefined;
    if (!settle) return undefined;
    return { success: () => settle.resolve(), failure: () => settle.reject(ATTEMPT_FAILED) };
  }

  shutdown(): void {
    this.breaker.shutdown();
    this.rotation.detach?.();
  }
}
