import { Backoff, blockingTimeoutMs, type ConsulIndex, formatWait, indexChanged, nextIndex, TokenBucket } from './blocking.ts';
import { type ConsulAnswer, ConsulCallError, type ConsulFailureKind } from './client.ts';

/** How a blocking loop reports to its owner. */
export interface LoopHooks {
  /** New data (or the first answer, or a reset). Throwing here counts as a bad answer. */
  readonly onData: (body: unknown, index: ConsulIndex) => void;
  readonly onSuccess: () => void;
  readonly onError: (error: ConsulCallError) => void;
}

export interface BlockingLoopOptions {
  readonly waitMs: number;
  /** Performs one GET with the given index/wait; must honour the signal. */
  readonly call: (query: { index?: string; wait?: string }, timeoutMs: number, signal: AbortSignal) => Promise<ConsulAnswer>;
  readonly hooks: LoopHooks;
  /** Backoff after an ACL refusal: slow, so a missing permission does not turn into a flood. */
  readonly deniedBackoff?: Backoff;
  readonly errorBackoff?: Backoff;
  /** Token bucket for the loop: `burst` calls back to back, then one per `intervalMs` (default 10, 50 ms). */
  readonly rateLimit?: { readonly burst: number; readonly intervalMs: number };
  /** How the loop waits (default: `sleep`); tests pass their own to see and release each pause. */
  readonly sleep?: Sleeper;
}

/**
 * Waits `ms` unless the signal aborts first (then resolves false). `why` is 'rate-limit' for a token
 * bucket pause, else the kind of the failure being backed off from.
 */
export type Sleeper = (ms: number, signal: AbortSignal, why: 'rate-limit' | ConsulFailureKind) => Promise<boolean>;

/** A plain read (no index) should answer in milliseconds; past this Consul counts as hanging. */
export const NON_BLOCKING_TIMEOUT_MS = 5_000;

/** Sleeps, waking early (resolving false) when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One Consul blocking query, repeated forever: index/wait per CONTRACT facts 1–7, reset when the index
 * goes backwards, rate-limited by a token bucket, exponential backoff on errors, last data kept on failure.
 */
export class BlockingLoop {
  private readonly controller = new AbortController();
  private readonly bucket: TokenBucket;
  private readonly errorBackoff: Backoff;
  private readonly deniedBackoff: Backoff;
  private readonly sleep: Sleeper;
  private running: Promise<void> | undefined;
  index: ConsulIndex = 0n;

  constructor(private readonly options: BlockingLoopOptions) {
    const rate = options.rateLimit ?? { burst: 10, intervalMs: 50 };
    this.bucket = new TokenBucket(rate.burst, rate.intervalMs, Date.now());
    this.errorBackoff = options.errorBackoff ?? new Backoff(100, 1_000);
    this.deniedBackoff = options.deniedBackoff ?? new Backoff(2_000, 30_000);
    this.sleep = options.sleep ?? sleep;
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      const delay = this.bucket.take(Date.now());
      if (delay > 0 && !(await this.sleep(delay, signal, 'rate-limit'))) return;
      const sent = this.index;
      const query = sent === 0n ? {} : { index: sent.toString(), wait: formatWait(this.options.waitMs) };
      const timeoutMs = sent === 0n ? NON_BLOCKING_TIMEOUT_MS : blockingTimeoutMs(this.options.waitMs);
      try {
        const answer = await this.options.call(query, timeoutMs, signal);
        if (signal.aborted) return;
        if (answer.index === undefined) throw new ConsulCallError('bad-answer', 'Consul answer has no X-Consul-Index; blocking is not supported here');
        const next = nextIndex(sent, answer.index);
        if (indexChanged(sent, answer.index) || next === 0n) this.options.hooks.onData(answer.body, answer.index);
        this.index = next;
        this.errorBackoff.reset();
        this.deniedBackoff.reset();
        this.options.hooks.onSuccess();
      } catch (error) {
        if (signal.aborted) return;
        const failure = error instanceof ConsulCallError ? error : new ConsulCallError('bad-answer', (error as Error).message, { cause: error });
        this.options.hooks.onError(failure);
        // Ask again from scratch after a failure: the next good answer is then always treated as news.
        this.index = 0n;
        const backoff = failure.kind === 'permission-denied' ? this.deniedBackoff : this.errorBackoff;
        if (!(await this.sleep(backoff.next(), signal, failure.kind))) return;
      }
    }
  }
}
