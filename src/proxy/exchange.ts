import { GatewayError } from '../errors.ts';
import type { BreakerPermit } from '../resilience/breakers.ts';
import type { RetrySlot } from '../resilience/retry-budget.ts';
import { classifyAttemptError, retryAllowed, retryBackoffMs } from '../resilience/retry-policy.ts';
import type { Instance } from '../registry/types.ts';
import type { Balancer } from '../routing/balancers/types.ts';
import type { ServicePool } from '../routing/service-pool.ts';
import { chooseBackend, firstHealthy } from '../routing/split.ts';
import type { RouteEntry } from '../routing/table.ts';
import { Attempt, type AttemptListener } from './attempt.ts';

/** The client half of an exchange: the edge turns these calls into writes on the client's response. */
export interface ClientSide {
  /** True once the client's connection is gone. */
  readonly gone: boolean;
  /** Sends the upstream's status and headers; false when they cannot be sent as they are. */
  respond(status: number, rawHeaders: Buffer[]): boolean;
  write(chunk: Buffer): boolean;
  /** Calls `fn` once the client can take more body. */
  whenDrained(fn: () => void): void;
  end(): void;
  /** Closes the connection without a clean end, so a truncated body never looks complete. */
  cut(): void;
  /** Answers with a gateway error (the one JSON shape). */
  fail(error: GatewayError): void;
}

/** The upstream half: sends the request to one instance (of `pool`) with `attempt` as the response handler. */
export interface UpstreamSide {
  send(attempt: Attempt, instance: Instance, pool: ServicePool): void;
}

export interface ExchangeEnv {
  readonly now: () => number;
  readonly random: () => number;
  readonly setTimer: (fn: () => void, ms: number) => unknown;
  readonly clearTimer: (handle: unknown) => void;
  /** Counts one retry of this route (the waygate_retries_total series). */
  readonly countRetry: () => void;
  /** Upstream statuses that count as failures for breakers and outlier detection. */
  readonly isFailureStatus: (status: number) => boolean;
  /** The route's requests in flight, shared by its exchanges (for maxInFlight). */
  readonly load: { inflight: number };
}

export interface ExchangeRequest {
  readonly method: string;
  readonly hashKey: string | undefined;
  /** False when the body streams to the first instance and so cannot be sent again. */
  readonly replayable: boolean;
}

const NO_VERDICT: BreakerPermit = { success: () => {}, failure: () => {}, release: () => {} };

type Phase = 'forwarding' | 'streaming' | 'done';

/**
 * One client request's way through the attempts: choose an instance, send, and on failure decide
 * between another instance and an error, until exactly one response has gone to the client. The
 * phase moves only forward (forwarding → streaming → done), and `clientClosed` ends it from any phase.
 */
export class Exchange implements AttemptListener {
  private phase: Phase = 'forwarding';
  private attempts = 0;
  private tried: Set<string> | undefined;
  private current: Attempt | undefined;
  private lastFailure: GatewayError | undefined;
  private backoff: unknown;
  /** A budget slot taken for the next attempt and not yet handed to it. */
  private pendingSlot: RetrySlot | undefined;
  private failedStatus = false;
  /** True while this exchange counts in the route's in-flight number. */
  private counted = false;
  /** True when the client left before its response was complete (counted as 499). */
  aborted = false;
  /** The pool and balancer this request uses: the route's, or the split backend chosen at start. */
  private pool: ServicePool;
  private balancer: Balancer;

  constructor(
    private readonly entry: RouteEntry,
    private readonly request: ExchangeRequest,
    private readonly client: ClientSide,
    private readonly upstream: UpstreamSide,
    private readonly env: ExchangeEnv,
  ) {
    this.pool = entry.pool;
    this.balancer = entry.balancer;
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  get attemptCount(): number {
    return this.attempts;
  }

  /** The service (pool) this request used, and the instance of its last attempt, for the access log. */
  get serviceName(): string {
    return this.pool.name;
  }

  get lastInstanceUrl(): string | null {
    return this.current?.runtime.instance.url ?? null;
  }

  start(): void {
    const limit = this.entry.route.maxInFlight;
    if (limit !== undefined && this.env.load.inflight >= limit) {
      return this.fail(new GatewayError('OVERLOADED', { detail: `${this.entry.route.name} allows ${limit}`, retryAfterSeconds: 1 }));
    }
    this.env.load.inflight += 1;
    this.counted = true;
    const now = this.env.now();
    this.entry.budget.requestStarted(now);
    if (this.entry.backends) {
      const panic = this.entry.route.panicThreshold;
      // Retries stay in the chosen backend: each backend is a subset with its own breakers.
      const backend = this.entry.choice === 'failover'
        ? firstHealthy(this.entry.backends)
        : chooseBackend(this.entry.backends, this.env.random, ({ pool }) => pool.select(undefined, panic, now).kind === 'candidates');
      this.pool = backend.pool;
      this.balancer = backend.balancer;
    }
    this.next();
  }

  /** The gateway ends the exchange for a reason of its own (e.g. the body grew too large): no verdict on the instance. */
  refuse(error: GatewayError): void {
    if (this.phase === 'done') return;
    this.current?.settle('rejected');
    this.fail(error);
  }

  /** The client's connection closed. Before a complete response this is an abort: everything is cancelled. */
  clientClosed(): void {
    if (this.phase === 'done') return;
    this.aborted = true;
    this.finish();
    this.current?.settle('aborted');
  }

  private next(): void {
    const { route } = this.entry;
    const { pool, balancer } = this;
    const now = this.env.now();
    for (;;) {
      if (this.phase !== 'forwarding') return;
      const selection = pool.select(this.tried, route.panicThreshold, now);
      if (selection.kind !== 'candidates') {
        return this.fail(this.lastFailure ?? (selection.kind === 'circuit-open'
          ? new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: selection.retryAfterSeconds })
          : new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 })));
      }
      const instance = balancer.pick(selection.candidates, { hashKey: this.request.hashKey });
      const runtime = instance && pool.runtime(instance.id);
      if (!instance || !runtime) return this.fail(this.lastFailure ?? new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 }));
      this.attempts += 1;
      // Panic routing may send to an open breaker on purpose; only breakers that accept traffic gate.
      const permit = runtime.breaker.acceptsTraffic || !selection.panic ? runtime.breaker.permit() : NO_VERDICT;
      if (!permit) {
        pool.countAttempt('rejected');
        (this.tried ??= new Set()).add(instance.id);
        this.lastFailure ??= new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: Math.max(1, Math.ceil((runtime.breaker.nextTrialAt - now) / 1000)) });
        // A rejection costs nothing upstream: move on at once, without spending the retry budget.
        if (this.attempts <= route.retries + 1) continue;
        return this.fail(this.lastFailure);
      }
      const slot = this.pendingSlot;
      this.pendingSlot = undefined;
      const attempt = new Attempt(this, runtime, permit, slot, pool, this.env.now);
      this.current = attempt;
      try {
        this.upstream.send(attempt, instance, pool);
      } catch (error) {
        attempt.settle('rejected'); // the request itself cannot be sent (e.g. a header undici refuses)
        this.fail(new GatewayError('BAD_REQUEST', { detail: (error as Error).message }));
      }
      return;
    }
  }

  onAttemptHeaders(attempt: Attempt, status: number, rawHeaders: Buffer[]): boolean {
    if (status < 200 || status > 599) {
      attempt.settle('failure');
      this.fail(new GatewayError('UPSTREAM_INVALID_RESPONSE', { detail: `${this.pool.name} answered status ${status}` }));
      return false;
    }
    if (status >= 502 && status <= 504 && retryAllowed(status, this.request.method, this.entry.route.retryOn) && this.mayRetry(false)) {
      attempt.settle('failure');
      this.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${this.pool.name} answered ${status}` });
      this.retryAfter(attempt);
      return false;
    }
    if (!this.client.respond(status, rawHeaders)) {
      attempt.settle('failure');
      this.fail(new GatewayError('UPSTREAM_INVALID_RESPONSE', { detail: `${this.pool.name} sent headers that cannot be relayed` }));
      return false;
    }
    this.phase = 'streaming';
    this.failedStatus = this.env.isFailureStatus(status);
    return true;
  }

  onAttemptData(attempt: Attempt, chunk: Buffer): boolean {
    if (this.client.write(chunk)) return true;
    this.client.whenDrained(() => attempt.resume());
    return false;
  }

  onAttemptComplete(attempt: Attempt): void {
    this.finish();
    this.client.end();
    attempt.settle(this.failedStatus ? 'failure' : 'success');
  }

  onAttemptError(attempt: Attempt, error: Error): void {
    if (this.client.gone) return this.clientClosed(); // the client's side broke the request: neutral
    const failure = classifyAttemptError(error);
    const outcome = failure === 'timeout' ? 'timeout' : 'failure';
    if (this.phase === 'streaming') {
      attempt.settle(outcome);
      this.finish();
      this.client.cut();
      return;
    }
    attempt.settle(outcome);
    const service = this.pool.name;
    if (failure === 'timeout') return this.fail(new GatewayError('UPSTREAM_TIMEOUT', { detail: service, cause: error }));
    if (failure === 'invalid-response') return this.fail(new GatewayError('UPSTREAM_INVALID_RESPONSE', { detail: `${service}: ${error.message}`, cause: error }));
    this.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: service, cause: error });
    if ((failure === 'connect-failure' || failure === 'reset')
      && retryAllowed(failure, this.request.method, this.entry.route.retryOn)
      && this.mayRetry(failure === 'connect-failure')) {
      return this.retryAfter(attempt);
    }
    this.fail(this.lastFailure);
  }

  /**
   * Whether one more attempt may go. A connect failure never reached any instance, so its retry adds
   * no load anywhere and needs no budget; every other retry takes a slot for the next attempt.
   */
  private mayRetry(neverConnected: boolean): boolean {
    if (!this.request.replayable || this.attempts > this.entry.route.retries) return false;
    const now = this.env.now();
    if (neverConnected) {
      this.entry.budget.recordExemptRetry(now);
      return true;
    }
    const slot = this.entry.budget.tryAcquireRetry(now);
    if (!slot) return false;
    this.pendingSlot = slot;
    return true;
  }

  private retryAfter(failed: Attempt): void {
    (this.tried ??= new Set()).add(failed.runtime.instance.id);
    this.env.countRetry();
    const delay = retryBackoffMs(this.attempts, this.env.random);
    if (delay === 0) return this.next();
    this.backoff = this.env.setTimer(() => {
      this.backoff = undefined;
      this.next();
    }, delay);
  }

  /** Answers with a gateway error if nothing was sent yet, else cuts the connection. */
  private fail(error: GatewayError): void {
    const phase = this.phase;
    this.finish();
    if (phase === 'forwarding') this.client.fail(error);
    else if (phase === 'streaming') this.client.cut();
  }

  /** Moves to done and gives back what only the exchange holds (backoff timer, an unused budget slot). */
  private finish(): void {
    this.phase = 'done';
    if (this.counted) {
      this.counted = false;
      this.env.load.inflight -= 1;
    }
    if (this.backoff !== undefined) {
      this.env.clearTimer(this.backoff);
      this.backoff = undefined;
    }
    this.pendingSlot?.release();
    this.pendingSlot = undefined;
  }
}
