import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../errors.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { BreakerPermit } from '../resilience/breakers.ts';
import { classifyAttemptError, failureStatusPredicate, isRetriableStatus, retryBackoffMs } from '../resilience/retry-policy.ts';
import type { InstanceRuntime } from '../routing/service-pool.ts';
import type { RouteEntry } from '../routing/table.ts';
import type { AttemptDispatcher } from './dispatcher.ts';
import { addForwardingHeaders, stripHopByHop } from './headers.ts';

type AttemptOutcome = 'success' | 'failure' | 'timeout';

/** Per-request proxy state, attached to the Fastify request by the routing hook. */
export interface ProxyContext {
  readonly entry: RouteEntry;
  /** Path to send upstream (normalized, prefix stripped when asked). */
  readonly upstreamPath: string;
  /** Raw query string without "?", passed through untouched ('' when none). */
  readonly upstreamQuery: string;
  readonly hashKey: string | undefined;
  /** Instance ids tried before the current attempt; allocated only when a request is retried. */
  tried: Set<string> | undefined;
  attempts: number;
  /** Request body held in memory so a retry can resend it; undefined when streamed. */
  body: Buffer | undefined;
  /** False once the body has streamed to an instance (it cannot be sent twice). */
  retriable: boolean;
  /** The instance of the attempt under way (or of the last one). */
  current: InstanceRuntime | undefined;
  /** Breaker permit of the attempt under way; undefined once settled. */
  permit: BreakerPermit | undefined;
  /** True while `current` counts this request in its in-flight number. */
  holdsInstance: boolean;
  lastFailure: GatewayError | undefined;
  holdsRetrySlot: boolean;
  /** Set once the forwarder owns the request (its close bookkeeping must run). */
  forwarded: boolean;
}

export function newProxyContext(entry: RouteEntry, upstreamPath: string, upstreamQuery: string, hashKey: string | undefined): ProxyContext {
  return {
    entry,
    upstreamPath,
    upstreamQuery,
    hashKey,
    tried: undefined,
    attempts: 0,
    body: undefined,
    retriable: true,
    current: undefined,
    permit: undefined,
    holdsInstance: false,
    lastFailure: undefined,
    holdsRetrySlot: false,
    forwarded: false,
  };
}

export interface ForwarderDeps {
  readonly metrics: GatewayMetrics;
  readonly dispatcher: AttemptDispatcher;
  readonly sendError: (reply: FastifyReply, error: GatewayError) => void;
  readonly random?: () => number;
}

type ReplyFromOptions = NonNullable<Parameters<FastifyReply['from']>[1]>;
type UpstreamResponse = { statusCode: number; headers: Record<string, unknown>; stream: NodeJS.ReadableStream & { resume(): void } };

const NO_BREAKER: BreakerPermit = { success: () => {}, failure: () => {} };

function contextOf(request: FastifyRequest): ProxyContext {
  return request.waygate!;
}

/**
 * Sends a request to one instance after another until one answers: picks with the route's balancer,
 * asks the instance's breaker for a permit, and moves to a different instance on connect failures
 * (and, for idempotent methods, on the statuses in retryOn) while retries and the budget allow.
 * Per-attempt state lives on the ProxyContext so the reply-from options are shared, not rebuilt per request.
 */
export class Forwarder {
  private readonly random: () => number;
  private readonly optionsByRoute = new WeakMap<RouteEntry, ReplyFromOptions>();

  constructor(private readonly deps: ForwarderDeps) {
    this.random = deps.random ?? Math.random;
  }

  /** Entry point from @fastify/http-proxy's handler. */
  forward(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, baseOptions: ReplyFromOptions): void {
    if (reply.raw.destroyed) return; // the client left while its body was being read; nothing to send
    ctx.entry.budget.requestStarted(Date.now());
    ctx.forwarded = true;
    this.attempt(request, reply, ctx, this.optionsFor(ctx.entry, baseOptions));
  }

  /** The client is answered (or gone): settle whatever is still open. Called once, when the response closes. */
  finish(ctx: ProxyContext): void {
    if (ctx.permit) {
      ctx.permit.success(); // no verdict on the instance, but a half-open trial must not stay taken
      ctx.permit = undefined;
    }
    this.releaseInstance(ctx);
    if (ctx.holdsRetrySlot) {
      ctx.holdsRetrySlot = false;
      ctx.entry.budget.retryFinished();
    }
  }

  private releaseInstance(ctx: ProxyContext): void {
    if (ctx.holdsInstance) {
      ctx.holdsInstance = false;
      ctx.current!.inflight -= 1;
    }
  }

  /** Settles the attempt under way: breaker, outlier detection, metrics. */
  private endAttempt(ctx: ProxyContext, outcome: AttemptOutcome): void {
    const permit = ctx.permit;
    if (!permit) return;
    ctx.permit = undefined;
    const failed = outcome !== 'success';
    if (failed) {
      permit.failure();
      this.releaseInstance(ctx); // a successful attempt keeps its in-flight slot until the body is sent
    } else {
      permit.success();
    }
    const { pool } = ctx.entry;
    pool.recordOutcome(ctx.current!.instance.id, failed, Date.now());
    pool.countAttempt(outcome);
  }

  private attempt(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, options: ReplyFromOptions): void {
    const { entry } = ctx;
    const { route, pool } = entry;
    const now = Date.now();
    if (ctx.current !== undefined) (ctx.tried ??= new Set()).add(ctx.current.instance.id);
    const selection = pool.select(ctx.tried, route.panicThreshold, now);
    if (selection.kind !== 'candidates') {
      if (ctx.lastFailure) return this.deps.sendError(reply, ctx.lastFailure);
      return this.deps.sendError(reply, selection.kind === 'circuit-open'
        ? new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: selection.retryAfterSeconds })
        : new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 }));
    }
    const instance = entry.balancer.pick(selection.candidates, { hashKey: ctx.hashKey });
    const runtime = instance && pool.runtime(instance.id);
    if (!runtime) {
      return this.deps.sendError(reply, ctx.lastFailure ?? new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 }));
    }
    ctx.current = runtime;
    ctx.attempts += 1;

    // Panic routing may send to an open breaker on purpose; only breakers that accept traffic gate.
    const permit = runtime.breaker.acceptsTraffic || !selection.panic ? runtime.breaker.permit() : NO_BREAKER;
    if (!permit) {
      pool.countAttempt('rejected');
      ctx.lastFailure ??= new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: Math.max(1, Math.ceil((runtime.breaker.nextTrialAt - now) / 1000)) });
      // A rejection costs nothing upstream: move on at once without spending the retry budget.
      if (ctx.attempts <= route.retries + 1) return this.attempt(request, reply, ctx, options);
      return this.deps.sendError(reply, ctx.lastFailure);
    }
    ctx.permit = permit;
    runtime.inflight += 1;
    ctx.holdsInstance = true;

    let attemptOptions = options;
    if (ctx.body !== undefined) {
      attemptOptions = { ...options, body: ctx.body, contentType: request.headers['content-type'] ?? 'application/octet-stream' };
    } else if (request.body !== undefined && request.body !== null) {
      ctx.retriable = false; // a streamed body is gone once sent
    }
    this.deps.dispatcher.next = route.connectTimeoutMs;
    try {
      reply.from(ctx.upstreamPath, attemptOptions);
    } catch (error) {
      this.deps.dispatcher.next = undefined;
      this.endAttempt(ctx, 'failure');
      this.deps.sendError(reply, new GatewayError('BAD_REQUEST', { detail: (error as Error).message }));
    }
  }

  /** reply-from options for one route, built once and shared by all its requests. */
  private optionsFor(entry: RouteEntry, baseOptions: ReplyFromOptions): ReplyFromOptions {
    let options = this.optionsByRoute.get(entry);
    if (options) return options;
    const { route, pool } = entry;
    const isFailure = failureStatusPredicate(route.circuitBreaker.failureStatuses);
    options = {
      ...baseOptions,
      getUpstream: (request) => contextOf(request as FastifyRequest).current!.instance.url,
      // The query goes separately: reply-from refuses any "../" in the source, query included.
      queryString: (_search: string, _url: string, request: FastifyRequest) => contextOf(request).upstreamQuery,
      timeout: route.timeoutMs,
      // reply-from would otherwise retry a GET answered 503 ten times against the SAME instance.
      retryDelay: () => null,
      rewriteRequestHeaders: (request, headers) => {
        stripHopByHop(headers);
        addForwardingHeaders(headers, { clientIp: request.ip, protocol: request.protocol, originalHost: request.headers.host, requestId: request.id });
        return headers;
      },
      onResponse: (request, reply, raw) => {
        const ctx = contextOf(request as FastifyRequest);
        const res = raw as unknown as UpstreamResponse;
        const status = res.statusCode;
        if (status >= 500 && isRetriableStatus(request.method, status, route.retryOn) && this.canRetry(ctx)) {
          for (const name of Object.keys(res.headers)) reply.removeHeader(name);
          res.stream.resume(); // drain so the connection can be reused
          this.endAttempt(ctx, 'failure');
          ctx.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${pool.name} answered ${status}` });
          return this.retry(request as FastifyRequest, reply as FastifyReply, ctx, options!);
        }
        this.endAttempt(ctx, isFailure(status) ? 'failure' : 'success');
        reply.send(res.stream);
      },
      onError: (reply, { error }) => {
        const ctx = contextOf(reply.request as FastifyRequest);
        const kind = classifyAttemptError(error);
        this.endAttempt(ctx, kind === 'timeout' ? 'timeout' : 'failure');
        if (kind === 'timeout') {
          return this.deps.sendError(reply as FastifyReply, new GatewayError('UPSTREAM_TIMEOUT', { detail: pool.name, cause: error }));
        }
        ctx.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: pool.name, cause: error });
        if ((kind === 'refused' || kind === 'reset') && this.canRetry(ctx, kind === 'refused')) {
          return this.retry(reply.request as FastifyRequest, reply as FastifyReply, ctx, options!);
        }
        this.deps.sendError(reply as FastifyReply, ctx.lastFailure);
      },
    } as ReplyFromOptions;
    this.optionsByRoute.set(entry, options);
    return options;
  }

  /**
   * Whether the request may move on. A refused connection never reached any instance, so retrying it
   * adds no load anywhere and is exempt from the budget; everything else spends budget.
   */
  private canRetry(ctx: ProxyContext, neverConnected = false): boolean {
    if (!ctx.retriable || ctx.attempts > ctx.entry.route.retries) return false;
    if (neverConnected) {
      ctx.entry.budget.recordExemptRetry(Date.now());
      return true;
    }
    if (ctx.holdsRetrySlot) return true; // one slot covers every retry of the same request
    if (!ctx.entry.budget.tryAcquireRetry(Date.now())) return false;
    ctx.holdsRetrySlot = true;
    return true;
  }

  private retry(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, options: ReplyFromOptions): void {
    this.deps.metrics.retries.inc({ route: ctx.entry.route.name });
    const delay = retryBackoffMs(ctx.attempts, this.random);
    const go = () => {
      if (reply.raw.destroyed || reply.sent) return;
      this.attempt(request, reply, ctx, options);
    };
    if (delay === 0) go();
    else setTimeout(go, delay);
  }
}

/** Whether a body of this size may be held in memory for retries. */
export function shouldBufferBody(method: string, contentLength: number | undefined, maxRetryBodySize: number, retries: number): boolean {
  if (retries <= 0 || method === 'GET' || method === 'HEAD') return false;
  return contentLength !== undefined && contentLength <= maxRetryBodySize;
}
