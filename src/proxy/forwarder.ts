import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import { GatewayError, errorBody } from '../errors.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { Instance } from '../registry/types.ts';
import { failureStatusPredicate } from '../resilience/retry-policy.ts';
import type { ServicePool } from '../routing/service-pool.ts';
import type { RouteEntry } from '../routing/table.ts';
import type { UpstreamTls } from './upstream-tls.ts';
import type { Attempt } from './attempt.ts';
import type { AttemptDispatcher } from './dispatcher.ts';
import { type ClientSide, Exchange, type ExchangeEnv, type UpstreamSide } from './exchange.ts';
import { clientResponseHeaders, type RequestOrigin, upstreamRequestHeaders } from './headers.ts';

/** Per-request facts the routing step found, attached to the Fastify request. */
export interface ProxyContext {
  readonly entry: RouteEntry;
  /** Path to send upstream (normalized, prefix stripped when asked), with the raw query appended. */
  readonly upstreamUrl: string;
  readonly hashKey: string | undefined;
  /** The exchange once forwarding began; its clientClosed() runs when the response closes. */
  exchange: Exchange | undefined;
  /** The client's address as the trusted-proxy rule sees it (for hashing and the access log). */
  readonly clientIp: () => string;
  /** Body bytes relayed to the client. */
  bytesSent: number;
  /** The request path as the client sent it (before normalization), for the access log. */
  readonly originalPath: string;
}

/** What the request carries: nothing, a buffer held for retries, or a stream that can be sent once. */
export type RequestBody = null | Buffer | 'stream';

export interface ForwarderDeps {
  readonly metrics: GatewayMetrics;
  readonly dispatcher: AttemptDispatcher;
  /** server.maxBodySize: a streamed body that grows past it is cut off. */
  readonly maxBodySize: number;
  /** How a pool's https:// instances are verified. */
  readonly tlsFor: (pool: ServicePool) => UpstreamTls;
  readonly random?: () => number;
}

const setTimer = (fn: () => void, ms: number): unknown => setTimeout(fn, ms);
const clearTimer = (handle: unknown): void => clearTimeout(handle as NodeJS.Timeout);

/**
 * The proxy's I/O edge: wraps the client's request and response and an undici dispatcher into the
 * two sides an Exchange drives. Everything the route needs per request (failure predicate, retry
 * counter, environment) is built once per route and shared.
 */
export class Forwarder {
  private readonly random: () => number;
  private readonly envByRoute = new WeakMap<RouteEntry, ExchangeEnv & { readonly tls: UpstreamTls }>();

  constructor(private readonly deps: ForwarderDeps) {
    this.random = deps.random ?? Math.random;
  }

  forward(req: IncomingMessage, res: ServerResponse, ctx: ProxyContext, facts: RequestOrigin, body: RequestBody): void {
    if (res.destroyed) return; // the client left while its body was being read
    const env = this.envFor(ctx.entry);
    const io = new NodeExchangeIO(req, res, ctx, facts, body, this.deps.dispatcher, this.deps.maxBodySize, env.tls, this.deps.tlsFor);
    const exchange = new Exchange(ctx.entry, { method: req.method!, hashKey: ctx.hashKey, replayable: body !== 'stream' }, io, io, env);
    io.exchange = exchange;
    ctx.exchange = exchange;
    exchange.start();
  }

  private envFor(entry: RouteEntry): ExchangeEnv & { readonly tls: UpstreamTls } {
    let env = this.envByRoute.get(entry);
    if (!env) {
      const retries = this.deps.metrics.retries.series(entry.route.name);
      env = {
        now: Date.now,
        random: this.random,
        setTimer,
        clearTimer,
        countRetry: () => retries.inc(),
        isFailureStatus: failureStatusPredicate(entry.route.circuitBreaker.failureStatuses),
        load: { inflight: 0 },
        tls: this.deps.tlsFor(entry.pool),
      };
      this.envByRoute.set(entry, env);
    }
    return env;
  }
}

/**
 * Writes a gateway error straight onto a raw response, in the catalogue's JSON shape. `close` asks
 * Node to close the connection after it, for a request whose body was left unread.
 */
export function writeGatewayError(res: ServerResponse, error: GatewayError, requestId: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(error, requestId);
  const headers = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'x-request-id', requestId];
  if (error.retryAfterSeconds !== undefined) headers.push('retry-after', String(error.retryAfterSeconds));
  if (close) headers.push('connection', 'close');
  res.writeHead(error.status, headers);
  res.end(body);
}

/** One request's client response and upstream dispatches, as the Exchange sees them. */
class NodeExchangeIO implements ClientSide, UpstreamSide {
  private readonly headers: string[];
  private stream: BodyLimit | undefined;
  exchange: Exchange | undefined;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly ctx: ProxyContext,
    private readonly facts: RequestOrigin,
    private readonly body: RequestBody,
    private readonly dispatcher: AttemptDispatcher,
    private readonly maxBodySize: number,
    private readonly tls: UpstreamTls,
    private readonly tlsFor: (pool: ServicePool) => UpstreamTls,
  ) {
    this.headers = upstreamRequestHeaders(req.rawHeaders, facts);
  }

  get gone(): boolean {
    return this.res.destroyed;
  }

  send(attempt: Attempt, instance: Instance, pool: ServicePool): void {
    const { route } = this.ctx.entry;
    const options: Dispatcher.DispatchOptions = {
      origin: instance.url,
      path: this.ctx.upstreamUrl,
      method: this.req.method as Dispatcher.HttpMethod,
      headers: this.headers,
      body: this.body === 'stream' ? this.pipeBody() : this.body,
      headersTimeout: route.timeoutMs,
      bodyTimeout: route.timeoutMs,
    };
    this.dispatcher.dispatch(route.connectTimeoutMs, pool === this.ctx.entry.pool ? this.tls : this.tlsFor(pool), options, attempt as unknown as Dispatcher.DispatchHandler);
  }

  /** undici destroys a body stream on error; a stream of our own in between keeps it off the client's socket. */
  private pipeBody(): BodyLimit {
    this.stream = new BodyLimit(this.maxBodySize, () => this.exchange?.refuse(new GatewayError('PAYLOAD_TOO_LARGE', { detail: `more than ${this.maxBodySize} bytes` })));
    this.req.pipe(this.stream);
    return this.stream;
  }

  respond(status: number, rawHeaders: Buffer[]): boolean {
    try {
      this.res.writeHead(status, clientResponseHeaders(rawHeaders, this.facts.requestId));
      return true;
    } catch {
      return false; // a header value Node refuses to write
    }
  }

  write(chunk: Buffer): boolean {
    this.ctx.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  whenDrained(fn: () => void): void {
    this.res.once('drain', fn);
  }

  end(): void {
    this.res.end();
  }

  cut(): void {
    this.res.destroy();
  }

  fail(error: GatewayError): void {
    if (this.stream) this.req.unpipe(this.stream);
    // HTTP/2 has no Connection header: an unread body is the stream's business, not the connection's.
    writeGatewayError(this.res, error, this.facts.requestId, !this.req.complete && this.req.httpVersionMajor !== 2);
  }
}

/** Passes a request body through, counting it; past `max` bytes it stops and reports once. */
class BodyLimit extends Transform {
  private seen = 0;

  constructor(private readonly max: number, private readonly onExceeded: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen <= this.max) return done(null, chunk);
    if (this.seen - chunk.length <= this.max) this.onExceeded();
    done();
  }
}

/** Whether a body of this announced size is held in memory so a retry can resend it. */
export function shouldBufferBody(contentLength: number, maxRetryBodySize: number, retries: number, retryConditions: number): boolean {
  return retries > 0 && retryConditions > 0 && Number.isFinite(contentLength) && contentLength >= 0 && contentLength <= maxRetryBodySize;
}
