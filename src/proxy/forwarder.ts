import type { FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../errors.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { Instance } from '../registry/types.ts';
import type { BreakerPermit } from '../resilience/breakers.ts';
import { classifyAttemptError, isIdempotent, isRetriableStatus, retryBackoffMs } from '../resilience/retry-policy.ts';
import type { InstanceRuntime } from '../routing/service-pool.ts';
import type { RouteEntry } from '../routing/table.ts';
import type { AttemptDispatcher } from './dispatcher.ts';
import { addForwardingHeaders, stripHopByHop } from './headers.ts';

/** Per-request proxy state, attached to the Fastify request by the routing hook. */
export interface ProxyContext {
  readonly entry: RouteEntry;
  /** Path to send upstream (normalized, prefix stripped when asked). */
  readonly upstreamPath: string;
  /** Raw query string without "?", passed through untouched ('' when none). */
  readonly upstreamQuery: string;
  readonly hashKey: string | undefined;
  /** Instance ids already tried by this request. */
  tried: Set<string> | undefined;
  attempts: number;
  /** Request body held in memory so a retry can resend it; undefined when streamed. */
  body: Buffer | undefined;
  /** False once the body has streamed to an instance (it cannot be sent twice). */
  retriable: boolean;
  /** Ends the attempt under way; called at most once per attempt. */
  endAttempt: ((outcome: AttemptOutcome) => void) | undefined;
  /** Gives back the in-flight slot of the instance that is (or was last) serving the request. */
  releaseInstance: (() => void) | undefined;
  lastFailure: GatewayError | undefined;
  holdsRetrySlot: boolean;
}

type AttemptOutcome = 'success' | 'failure' | 'timeout' | 'aborted';

export interface ForwarderDeps {
  readonly metrics: GatewayMetrics;
  readonly dispatcher: AttemptDispatcher;
  readonly sendError: (reply: FastifyReply, error: GatewayError) => void;
  readonly random?: () => number;
}

type ReplyFromOptions = NonNullable<Parameters<FastifyReply['from']>[1]>;

/**
 * Sends a request to one instance after another until one answers: picks with the route's balancer,
 * asks the instance's breaker for a permit, and moves to a different instance on connect failures
 * (and, for idempotent methods, on the statuses in retryOn) while retries and the budget allow.
 */
export class Forwarder {
  private readonly random: () => number;

  constructor(private readonly deps: ForwarderDeps) {
    this.random = deps.random ?? Math.random;
  }

  /** Entry point from @fastify/http-proxy's handler. */
  forward(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, baseOptions: ReplyFromOptions): void {
    ctx.entry.budget.requestStarted();
    reply.raw.once('close', () => {
      ctx.endAttempt?.('aborted');
      ctx.releaseInstance?.();
      if (ctx.holdsRetrySlot) {
        ctx.holdsRetrySlot = false;
        ctx.entry.budget.retryFinished();
      }
      ctx.entry.budget.requestFinished();
    });
    this.attempt(request, reply, ctx, baseOptions);
  }

  private attempt(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, baseOptions: ReplyFromOptions): void {
    const { entry } = ctx;
    const { route, pool } = entry;
    const now = Date.now();
    const selection = pool.select(ctx.tried, route.panicThreshold, now);
    if (selection.kind !== 'candidates') {
      if (ctx.lastFailure) return this.deps.sendError(reply, ctx.lastFailure);
      return this.deps.sendError(reply, selection.kind === 'circuit-open'
        ? new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: selection.retryAfterSeconds })
        : new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 }));
    }
    const instance = entry.balancer.pick(selection.candidates, { hashKey: ctx.hashKey });
    const runtime = instance && pool.runtime(instance.id);
    if (!instance || !runtime) {
      return this.deps.sendError(reply, ctx.lastFailure ?? new GatewayError('NO_HEALTHY_INSTANCE', { detail: pool.name, retryAfterSeconds: 1 }));
    }
    (ctx.tried ??= new Set()).add(instance.id);
    ctx.attempts += 1;

    // Panic routing may send to an open breaker on purpose; only breakers that accept traffic gate.
    const permit: BreakerPermit | undefined = runtime.breaker.acceptsTraffic || !selection.panic ? runtime.breaker.permit() : NO_BREAKER;
    if (!permit) {
      this.deps.metrics.upstreamAttempts.inc({ service: pool.name, outcome: 'rejected' });
      ctx.lastFailure ??= new GatewayError('CIRCUIT_OPEN', { detail: pool.name, retryAfterSeconds: Math.max(1, Math.ceil((runtime.breaker.nextTrialAt - now) / 1000)) });
      // A rejection costs nothing upstream: move on at once without spending the retry budget.
      if (ctx.attempts <= route.retries + 1) return this.attempt(request, reply, ctx, baseOptions);
      return this.deps.sendError(reply, ctx.lastFailure);
    }
    this.send(request, reply, ctx, baseOptions, instance, runtime, permit);
  }

  private send(
    request: FastifyRequest,
    reply: FastifyReply,
    ctx: ProxyContext,
    baseOptions: ReplyFromOptions,
    instance: Instance,
    runtime: InstanceRuntime,
    permit: BreakerPermit,
  ): void {
    const { entry } = ctx;
    const { route, pool } = entry;
    const metrics = this.deps.metrics;
    runtime.inflight += 1;
    let released = false;
    ctx.releaseInstance = () => {
      if (released) return;
      released = true;
      ctx.releaseInstance = undefined;
      runtime.inflight -= 1;
    };
    let ended = false;
    ctx.endAttempt = (outcome) => {
      if (ended) return;
      ended = true;
      ctx.endAttempt = undefined;
      if (outcome !== 'success') ctx.releaseInstance?.(); // a successful one holds its slot until the body is sent
      if (outcome === 'aborted') {
        permit.success(); // the client left; no verdict on the instance, but free a half-open trial
        return;
      }
      const failed = outcome !== 'success';
      if (failed) permit.failure();
      else permit.success();
      pool.recordOutcome(instance.id, failed, Date.now());
      metrics.upstreamAttempts.inc({ service: pool.name, outcome });
    };

    const options: ReplyFromOptions = {
      ...baseOptions,
      getUpstream: () => instance.url,
      // The query goes separately: reply-from refuses any "../" in the source, query included.
      queryString: () => ctx.upstreamQuery,
      timeout: route.timeoutMs,
      // reply-from would otherwise retry a GET answered 503 ten times against the SAME instance.
      retryDelay: () => null,
      rewriteRequestHeaders: (req, headers) => {
        stripHopByHop(headers);
        addForwardingHeaders(headers, {
          clientIp: req.ip,
          protocol: req.protocol,
          originalHost: req.headers.host,
          requestId: req.id,
        });
        return headers;
      },
      onResponse: (_req, rep, raw) => {
        const res = raw as unknown as { statusCode: number; headers: Record<string, unknown>; stream: NodeJS.ReadableStream & { resume(): void } };
        const status = res.statusCode;
        const failed = status >= 500;
        if (isRetriableStatus(request.method, status, route.retryOn) && this.canRetry(ctx)) {
          for (const name of Object.keys(res.headers)) rep.removeHeader(name);
          res.stream.resume(); // drain so the connection can be reused
          ctx.endAttempt?.('failure');
          ctx.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: `${pool.name} answered ${status}` });
          return this.retry(request, reply, ctx, baseOptions);
        }
        ctx.endAttempt?.(failed ? 'failure' : 'success');
        rep.send(res.stream);
      },
      onError: (_rep, { error }) => {
        const kind = classifyAttemptError(error);
        ctx.endAttempt?.(kind === 'timeout' ? 'timeout' : 'failure');
        if (kind === 'timeout') {
          return this.deps.sendError(reply, new GatewayError('UPSTREAM_TIMEOUT', { detail: pool.name, cause: error }));
        }
        ctx.lastFailure = new GatewayError('UPSTREAM_UNAVAILABLE', { detail: pool.name, cause: error });
        if (kind === 'connect-failure' && this.canRetry(ctx)) return this.retry(request, reply, ctx, baseOptions);
        this.deps.sendError(reply, ctx.lastFailure);
      },
    };
    if (ctx.body !== undefined) {
      options.body = ctx.body;
      options.contentType = request.headers['content-type'] ?? 'application/octet-stream';
    } else if (request.body !== undefined && request.body !== null) {
      ctx.retriable = false; // a streamed body is gone once sent
    }
    this.deps.dispatcher.next = { connectTimeoutMs: route.connectTimeoutMs };
    try {
      reply.from(ctx.upstreamPath, options);
    } catch (error) {
      this.deps.dispatcher.next = undefined;
      ctx.endAttempt?.('failure');
      this.deps.sendError(reply, new GatewayError('BAD_REQUEST', { detail: (error as Error).message }));
    }
  }

  private canRetry(ctx: ProxyContext): boolean {
    if (!ctx.retriable || ctx.attempts > ctx.entry.route.retries) return false;
    if (ctx.holdsRetrySlot) return true; // one slot covers every retry of the same request
    if (!ctx.entry.budget.tryAcquireRetry()) return false;
    ctx.holdsRetrySlot = true;
    return true;
  }

  private retry(request: FastifyRequest, reply: FastifyReply, ctx: ProxyContext, baseOptions: ReplyFromOptions): void {
    this.deps.metrics.retries.inc({ route: ctx.entry.route.name });
    const delay = retryBackoffMs(ctx.attempts, this.random);
    const go = () => {
      if (reply.raw.destroyed || reply.sent) return;
      this.attempt(request, reply, ctx, baseOptions);
    };
    if (delay === 0) go();
    else setTimeout(go, delay);
  }
}

const NO_BREAKER: BreakerPermit = { success: () => {}, failure: () => {} };

/** Whether a body of this size may be held in memory for retries. */
export function shouldBufferBody(method: string, contentLength: number | undefined, maxRetryBodySize: number, retries: number): boolean {
  if (retries <= 0 || method === 'GET' || method === 'HEAD') return false;
  return contentLength !== undefined && contentLength <= maxRetryBodySize;
}

export { isIdempotent };
