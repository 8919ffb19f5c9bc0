import type { BreakerPermit } from '../resilience/breakers.ts';
import type { RetrySlot } from '../resilience/retry-budget.ts';
import type { InstanceRuntime } from '../routing/service-pool.ts';

/** How one attempt ended. Only success and failure/timeout are verdicts on the instance. */
export type AttemptOutcome = 'success' | 'failure' | 'timeout' | 'rejected' | 'aborted';

/** Where settled attempts are recorded: outlier detection and the attempts counter (the service pool). */
export interface AttemptLedger {
  /** A verdict on the instance; `durationMs` is how long the attempt took, for the last-minute stats. */
  recordOutcome(id: string, failed: boolean, now: number, durationMs?: number): void;
  countAttempt(outcome: AttemptOutcome): void;
}

/** Receives one attempt's upstream events; none arrives once the attempt has settled. */
export interface AttemptListener {
  /** Response headers arrived; return false to pause the body. */
  onAttemptHeaders(attempt: Attempt, status: number, rawHeaders: Buffer[]): boolean;
  /** A body chunk; return false to pause until `attempt.resume()` is called. */
  onAttemptData(attempt: Attempt, chunk: Buffer): boolean;
  onAttemptComplete(attempt: Attempt): void;
  onAttemptError(attempt: Attempt, error: Error): void;
}

const CANCELLED = Object.assign(new Error('attempt settled before the upstream finished'), { code: 'WAYGATE_ATTEMPT_CANCELLED' });

/**
 * One try against one instance. It holds the instance's in-flight slot, the breaker permit and, for
 * a budgeted retry, the retry slot; `settle` gives all of them back exactly once and cancels the
 * upstream request if it is still running. It is also the undici dispatch handler, so every late
 * callback (after an abort, a timeout or a verdict) is dropped here and nowhere else.
 */
export class Attempt {
  private outcome: AttemptOutcome | undefined;
  private abortUpstream: ((reason: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  /** The upstream request ended by itself (completed or errored): nothing left to cancel. */
  private upstreamEnded = false;
  /** True once response headers arrived: from then on a failure cannot be retried or answered. */
  responseStarted = false;
  private readonly startedAt: number;

  constructor(
    private readonly listener: AttemptListener,
    readonly runtime: InstanceRuntime,
    private readonly permit: BreakerPermit,
    private readonly retrySlot: RetrySlot | undefined,
    private readonly ledger: AttemptLedger,
    private readonly now: () => number,
  ) {
    runtime.inflight += 1;
    this.startedAt = now();
  }

  get settled(): boolean {
    return this.outcome !== undefined;
  }

  get settledAs(): AttemptOutcome | undefined {
    return this.outcome;
  }

  /** Ends the attempt with one outcome; later calls are ignored. Returns whether this call settled it. */
  settle(outcome: AttemptOutcome): boolean {
    if (this.outcome !== undefined) return false;
    this.outcome = outcome;
    this.runtime.inflight -= 1;
    this.retrySlot?.release();
    const id = this.runtime.instance.id;
    if (outcome === 'success') {
      this.permit.success();
      const now = this.now();
      this.ledger.recordOutcome(id, false, now, now - this.startedAt);
    } else if (outcome === 'failure' || outcome === 'timeout') {
      this.permit.failure();
      const now = this.now();
      this.ledger.recordOutcome(id, true, now, now - this.startedAt);
    } else {
      this.permit.release(); // aborted or rejected: no verdict on the instance
    }
    this.ledger.countAttempt(outcome);
    if (!this.upstreamEnded) this.abortUpstream?.(CANCELLED);
    return true;
  }

  /** Continues a paused upstream body. */
  resume(): void {
    if (this.outcome === undefined) this.resumeUpstream?.();
  }

  // ── undici dispatch handler ──

  onConnect(abort: (reason: Error) => void): void {
    if (this.outcome !== undefined) abort(CANCELLED); // settled before undici got a socket
    else this.abortUpstream = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.outcome !== undefined) return false;
    if (statusCode >= 100 && statusCode < 200) return true; // informational (103 Early Hints): the answer follows
    this.responseStarted = true;
    this.resumeUpstream = resume;
    return this.listener.onAttemptHeaders(this, statusCode, rawHeaders);
  }

  onData(chunk: Buffer): boolean {
    if (this.outcome !== undefined) return false;
    return this.listener.onAttemptData(this, chunk);
  }

  onComplete(): void {
    this.upstreamEnded = true;
    if (this.outcome === undefined) this.listener.onAttemptComplete(this);
  }

  onError(error: Error): void {
    this.upstreamEnded = true;
    if (this.outcome === undefined) this.listener.onAttemptError(this, error);
  }
}
