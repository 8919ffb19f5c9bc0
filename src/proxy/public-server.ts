import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import httpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { HashKeySource } from '../config/types.ts';
import { GatewayError, errorBody } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { hostWithoutPort } from '../routing/match.ts';
import { normalizePath, stripPathPrefix } from '../routing/path.ts';
import type { RouteTable } from '../routing/table.ts';
import type { AttemptDispatcher } from './dispatcher.ts';
import { Forwarder, newProxyContext, type ProxyContext, shouldBufferBody } from './forwarder.ts';
import { addForwardingHeaders, chooseRequestId, withoutHopByHop } from './headers.ts';

declare module 'fastify' {
  interface FastifyRequest {
    waygate: ProxyContext | null;
    startedAt: bigint;
  }
}

/** Links the raw response back to its Fastify request for the close listener. */
const kRequest = Symbol('waygate.request');
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT']);
/** Never contacted: HTTP attempts choose their own instance in Forwarder. */
const PLAIN_HTTP_PLACEHOLDER = 'http://127.0.0.1';
const PROXIED_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS', 'TRACE'];

export interface PublicServerDeps {
  readonly table: () => RouteTable;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly dispatcher: AttemptDispatcher;
}

/** Writes a gateway-made error in the one JSON shape clients can rely on. */
export function sendGatewayError(reply: FastifyReply, error: GatewayError): void {
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  reply.header('x-request-id', reply.request.id);
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  reply.code(error.status).header('content-type', 'application/json; charset=utf-8').send(errorBody(error, String(reply.request.id)));
}

/** Reads the consistent-hash key the route asks for. */
function hashKeyOf(request: FastifyRequest, source: HashKeySource | undefined): string | undefined {
  if (!source) return undefined;
  if (source.kind === 'ip') return request.ip;
  if (source.kind === 'header') {
    const value = request.headers[source.name];
    return Array.isArray(value) ? value[0] : value;
  }
  const cookies = request.headers.cookie;
  if (!cookies) return undefined;
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === source.name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** True when a small request body should be held in memory so a retry can resend it. */
function wantsBuffering(request: FastifyRequest, ctx: ProxyContext): boolean {
  const { route } = ctx.entry;
  const header = request.headers['content-length'];
  if (header === undefined) return false; // chunked bodies stream and are never retried
  const length = Number(header);
  const stream = request.body as { on?: unknown } | undefined;
  return Number.isFinite(length) && typeof stream?.on === 'function' && shouldBufferBody(request.method, length, route.maxRetryBodySize, route.retries);
}

async function bufferBody(request: FastifyRequest, ctx: ProxyContext): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of request.body as AsyncIterable<Buffer>) chunks.push(chunk);
  ctx.body = Buffer.concat(chunks);
}

/** The client-facing listener: path normalization, route matching, then @fastify/http-proxy with a per-request upstream. */
export async function buildPublicServer(deps: PublicServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'proxy' }, { level: 'error' }) as FastifyBaseLogger,
    // One shared logger instead of a child per request: request-level lines are not logged anyway.
    childLoggerFactory: (logger) => logger,
    genReqId: (req) => chooseRequestId(req.headers['x-request-id'], randomUUID),
    return503OnClosing: false, // keep answering requests that arrive on open connections while draining
    forceCloseConnections: 'idle',
    // Malformed URLs (bad percent-escapes) get the gateway's JSON error, not Fastify's own body.
    frameworkErrors: (error, request, reply) => {
      deps.metrics.requests.inc('(none)', KNOWN_METHODS.has(request.method) ? request.method : 'OTHER', 400);
      sendGatewayError(reply as FastifyReply, new GatewayError(error.code === 'FST_ERR_BAD_URL' ? 'INVALID_PATH' : 'BAD_REQUEST', { detail: error.message }));
    },
  });
  const forwarder = new Forwarder({ metrics: deps.metrics, dispatcher: deps.dispatcher, sendError: sendGatewayError });

  // Bodies must reach the proxy as raw streams; Fastify's own text/plain parser would consume them.
  app.removeAllContentTypeParsers();
  app.decorateRequest('waygate', null);
  app.decorateRequest('startedAt', 0n);

  /** Runs once per request when the client response closes: metrics, then the forwarder's bookkeeping. */
  function onResponseClose(this: ServerResponse & { [kRequest]?: FastifyRequest }): void {
    const request = this[kRequest]!;
    const ctx = request.waygate;
    const method = KNOWN_METHODS.has(request.method) ? request.method : 'OTHER';
    const route = ctx?.entry.route.name ?? '(none)';
    deps.metrics.requests.inc(route, method, this.statusCode);
    deps.metrics.requestDuration.observe(route, Number(process.hrtime.bigint() - request.startedAt) / 1e9);
    if (ctx?.forwarded) forwarder.finish(ctx);
  }

  app.addHook('onRequest', (request, reply, done) => {
    request.startedAt = process.hrtime.bigint();
    reply.header('x-request-id', request.id);
    // One 'close' listener instead of an onResponse hook: Fastify hooks cost more per request.
    (reply.raw as ServerResponse & { [kRequest]?: FastifyRequest })[kRequest] = request;
    reply.raw.once('close', onResponseClose);
    const rawUrl = request.raw.url ?? '/';
    const queryAt = rawUrl.indexOf('?');
    const rawPath = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
    const path = normalizePath(rawPath);
    if (path === undefined) return sendGatewayError(reply, new GatewayError('INVALID_PATH'));
    const entry = deps.table().find({ path, host: hostWithoutPort(request.headers.host), method: request.method, headers: request.headers });
    if (!entry) return sendGatewayError(reply, new GatewayError('ROUTE_NOT_FOUND', { detail: `${request.method} ${path}` }));
    if (request.headers.upgrade?.toLowerCase() === 'websocket') {
      // A WebSocket picks its instance inside http-proxy; refuse here when there is none to pick.
      const selection = entry.pool.select(undefined, entry.route.panicThreshold, Date.now());
      if (selection.kind === 'no-instance') return sendGatewayError(reply, new GatewayError('NO_HEALTHY_INSTANCE', { detail: entry.pool.name, retryAfterSeconds: 1 }));
      if (selection.kind === 'circuit-open') return sendGatewayError(reply, new GatewayError('CIRCUIT_OPEN', { detail: entry.pool.name, retryAfterSeconds: selection.retryAfterSeconds }));
    }
    const upstreamPath = entry.route.stripPrefix ? stripPathPrefix(path, entry.route.match.pathPrefix) : path;
    const upstreamUrl = queryAt === -1 ? upstreamPath : upstreamPath + rawUrl.slice(queryAt);
    // http-proxy derives the upstream path (also for WebSockets) from the request URL.
    request.raw.url = upstreamUrl;
    request.waygate = newProxyContext(entry, upstreamPath, queryAt === -1 ? '' : rawUrl.slice(queryAt + 1), hashKeyOf(request, entry.route.hashKey));
    done();
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    const status = error.statusCode ?? 500;
    sendGatewayError(reply, new GatewayError(status < 500 ? 'BAD_REQUEST' : 'INTERNAL_ERROR', { detail: error.message }));
  });

  await app.register(httpProxy, {
    upstream: '',
    websocket: true,
    httpMethods: PROXIED_METHODS,
    undici: deps.dispatcher as never,
    internalRewriteLocationHeader: false,
    replyOptions: {
      // Used by the WebSocket path only; HTTP requests choose per attempt in Forwarder.
      getUpstream: (request: FastifyRequest) => {
        const ctx = request.waygate;
        // http-proxy also calls this for plain HTTP; only a WebSocket upgrade may consume a balancer pick.
        if (!ctx || request.headers.upgrade?.toLowerCase() !== 'websocket') return PLAIN_HTTP_PLACEHOLDER;
        const selection = ctx.entry.pool.select(undefined, ctx.entry.route.panicThreshold, Date.now());
        const instance = selection.kind === 'candidates' ? ctx.entry.balancer.pick(selection.candidates, { hashKey: ctx.hashKey }) : undefined;
        return instance?.url ?? PLAIN_HTTP_PLACEHOLDER;
      },
      rewriteHeaders: (headers: Record<string, unknown>) => withoutHopByHop(headers),
    },
    wsClientOptions: {
      rewriteRequestHeaders: (headers: Record<string, unknown>, request: FastifyRequest) => {
        const out: Record<string, unknown> = { ...headers };
        if (request.headers.cookie) out.cookie = request.headers.cookie;
        if (request.headers.authorization) out.authorization = request.headers.authorization;
        addForwardingHeaders(out, { clientIp: request.ip, protocol: request.protocol, originalHost: request.headers.host, requestId: String(request.id) });
        return out;
      },
    },
    handler: (request: FastifyRequest, reply: FastifyReply, _dest: string, options: unknown) => {
      const ctx = request.waygate;
      if (!ctx) return sendGatewayError(reply, new GatewayError('ROUTE_NOT_FOUND'));
      // Plain requests go straight on; only a small body that may need resending is read first.
      if (!wantsBuffering(request, ctx)) {
        forwarder.forward(request, reply, ctx, options as never);
      } else {
        bufferBody(request, ctx).then(
          () => forwarder.forward(request, reply, ctx, options as never),
          (error: Error) => sendGatewayError(reply, new GatewayError('BAD_REQUEST', { detail: error.message })),
        );
      }
      return reply;
    },
  } as never);

  return app;
}
