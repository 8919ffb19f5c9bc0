import { randomUUID } from 'node:crypto';
import { type IncomingMessage, METHODS, type ServerResponse } from 'node:http';
import httpProxy from '@fastify/http-proxy';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Http2SecureServer } from 'node:http2';
import type { Socket } from 'node:net';
import type { HashKeySource, ServerConfig } from '../config/types.ts';
import { GatewayError, errorBody } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { hostWithoutPort } from '../routing/match.ts';
import { normalizePath, stripPathPrefix } from '../routing/path.ts';
import type { ServicePool } from '../routing/service-pool.ts';
import type { RouteTable } from '../routing/table.ts';
import type { UpstreamTls } from './upstream-tls.ts';
import type { AccessLog } from '../observability/access-log.ts';
import type { AttemptDispatcher } from './dispatcher.ts';
import { Forwarder, type ProxyContext, shouldBufferBody } from './forwarder.ts';
import { chooseRequestId, webSocketUpstreamHeaders, withoutHopByHop } from './headers.ts';
import { hostLineCount, isValidHost } from './host.ts';
import { TlsListener } from './tls-termination.ts';
import { TrustedProxies } from './trusted-proxies.ts';

declare module 'fastify' {
  interface FastifyRequest {
    waygate: ProxyContext | null;
    startedAt: bigint;
  }
  interface FastifyInstance {
    /** Set when the public port serves HTTPS. */
    waygateTls: TlsListener | null;
  }
}

/** Links the raw response back to its Fastify request for the close listener. */
const kRequest = Symbol('waygate.request');
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT']);
/** Only reached when an instance vanished between the routing check and the upgrade: the dial fails fast. */
const NOWHERE = 'http://127.0.0.1:1';
/** nginx's code for a client that closed its connection before the response was complete. */
const CLIENT_CLOSED_REQUEST = 499;

export interface PublicServerDeps {
  readonly table: () => RouteTable;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly dispatcher: AttemptDispatcher;
  readonly server: ServerConfig;
  /** Present when accessLog.enabled. */
  readonly accessLog?: AccessLog | undefined;
  /** server.tls, already read and checked. */
  readonly certificate?: { cert: Buffer; key: Buffer } | undefined;
  readonly tlsFor: (pool: ServicePool) => UpstreamTls;
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
function hashKeyOf(request: FastifyRequest, source: HashKeySource | undefined, clientIp: () => string): string | undefined {
  if (!source) return undefined;
  if (source.kind === 'ip') return clientIp();
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

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** How a request's body travels: none, buffered so a retry can resend it, or streamed once. */
function bodyPlan(request: FastifyRequest, ctx: ProxyContext): 'none' | 'buffer' | 'stream' {
  const headers = request.headers;
  const length = headers['content-length'];
  if (length === undefined) return headers['transfer-encoding'] === undefined ? 'none' : 'stream';
  if (length === '0') return 'none';
  const { route } = ctx.entry;
  return shouldBufferBody(Number(length), route.maxRetryBodySize, route.retries, route.retryOn.length) ? 'buffer' : 'stream';
}

/** Reads a whole (small, length-announced) body; resolves undefined if the client leaves first. */
function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', () => resolve(undefined));
    request.once('close', () => { if (!request.complete) resolve(undefined); });
  });
}

/**
 * Answers what Node's parser or its timers refused, in the catalogue's JSON shape, then closes the
 * connection. Nothing is written once a response has started on that socket.
 */
function clientErrorAnswerer(metrics: GatewayMetrics) {
  return function answerClientError(error: Error & { code?: string }, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (socket.writable && (!inFlight || !inFlight.headersSent)) {
      const gatewayError = new GatewayError(
        error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : error.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST',
        { detail: error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? undefined : error.message },
      );
      // A request that was already routed is counted by its response's close listener; the rest here.
      if (!inFlight) metrics.requests.inc('(none)', 'OTHER', gatewayError.status);
      const body = errorBody(gatewayError, randomUUID());
      socket.write(`HTTP/1.1 ${gatewayError.status} ${gatewayError.code}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    }
    socket.destroy();
  };
}

/** The client-facing listener: path normalization, route matching, then the Exchange (WebSocket upgrades go to @fastify/http-proxy). */
export async function buildPublicServer(deps: PublicServerDeps): Promise<FastifyInstance> {
  const certificate = deps.certificate;
  // With TLS: HTTP/2 and HTTP/1.1 on one port, chosen by ALPN.
  const transport = certificate ? { http2: true, https: { allowHTTP1: true, ...certificate } } : {};
  const app = Fastify({
    ...(transport as object),
    loggerInstance: deps.logger.child({ component: 'proxy' }, { level: 'error' }) as FastifyBaseLogger,
    // One shared logger instead of a child per request: request-level lines are not logged anyway.
    childLoggerFactory: (logger) => logger,
    genReqId: (req) => chooseRequestId(req.headers['x-request-id'], randomUUID),
    return503OnClosing: false, // keep answering requests that arrive on open connections while draining
    // HTTP/2 sessions are closed by TlsListener (GOAWAY, then destroy at the shutdown timeout).
    forceCloseConnections: certificate ? false : 'idle',
    keepAliveTimeout: deps.server.keepAliveTimeoutMs,
    requestTimeout: deps.server.requestTimeoutMs,
    http: {
      headersTimeout: deps.server.headersTimeoutMs,
      // Host problems get the gateway's JSON 400 instead of Node's bare one.
      requireHostHeader: false,
      // Node checks header/request deadlines on this tick (30 s by default, which would stretch a 10 s headersTimeout to 40 s).
      connectionsCheckingInterval: Math.min(1_000, deps.server.headersTimeoutMs, deps.server.requestTimeoutMs),
    },
    clientErrorHandler: clientErrorAnswerer(deps.metrics),
    // Malformed URLs (bad percent-escapes) get the gateway's JSON error, not Fastify's own body.
    frameworkErrors: (error, request, reply) => {
      deps.metrics.requests.inc('(none)', KNOWN_METHODS.has(request.method) ? request.method : 'OTHER', 400);
      sendGatewayError(reply as FastifyReply, new GatewayError(error.code === 'FST_ERR_BAD_URL' ? 'INVALID_PATH' : 'BAD_REQUEST', { detail: error.message }));
    },
  });
  // Fastify routes only the methods it knows; WebDAV and the other tokens Node's parser accepts are proxied too.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true });
  }
  const tls = certificate ? new TlsListener(app.server as unknown as Http2SecureServer, deps.server.tls!, deps.logger) : undefined;
  if (tls) {
    tls.watch();
    app.addHook('preClose', (done) => { tls.goAway(); done(); });
    app.addHook('onClose', (_instance, done) => { tls.stop(); done(); });
  }
  app.decorate('waygateTls', tls ?? null);
  const accessLog = deps.accessLog;
  const forwarder = new Forwarder({ metrics: deps.metrics, dispatcher: deps.dispatcher, maxBodySize: deps.server.maxBodySize, tlsFor: deps.tlsFor });
  const trusted = new TrustedProxies(deps.server.trustedProxies);
  const maxBodySize = deps.server.maxBodySize;
  app.server.maxConnections = deps.server.maxConnections; // past it Node closes new connections at once

  // Bodies must reach the proxy as raw streams; Fastify's own text/plain parser would consume them.
  app.removeAllContentTypeParsers();
  app.decorateRequest('waygate', null);
  app.decorateRequest('startedAt', 0n);

  /** Runs once per request when the client response closes: settles an unfinished exchange, then metrics. */
  function onResponseClose(this: ServerResponse & { [kRequest]?: FastifyRequest }): void {
    const request = this[kRequest]!;
    const ctx = request.waygate;
    const exchange = ctx?.exchange;
    exchange?.clientClosed();
    const method = KNOWN_METHODS.has(request.method) ? request.method : 'OTHER';
    const route = ctx?.entry.route.name ?? '(none)';
    const status = exchange?.aborted ? CLIENT_CLOSED_REQUEST : this.statusCode;
    const seconds = Number(process.hrtime.bigint() - request.startedAt) / 1e9;
    deps.metrics.requests.inc(route, method, status);
    deps.metrics.requestDuration.observe(route, seconds);
    if (accessLog) {
      const rawUrl = request.raw.url ?? '/';
      accessLog.write({
        requestId: String(request.id),
        clientIp: ctx ? ctx.clientIp() : request.socket.remoteAddress ?? '',
        method: request.method,
        path: ctx?.originalPath ?? rawUrl.split('?', 1)[0]!,
        status,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        route: ctx?.entry.route.name ?? null,
        service: exchange?.serviceName ?? ctx?.entry.pool.name ?? null,
        instance: exchange?.lastInstanceUrl ?? null,
        attempts: exchange?.attemptCount ?? 0,
        bytesSent: ctx && exchange ? ctx.bytesSent : Number(this.getHeader('content-length') ?? 0),
      });
    }
  }

  app.addHook('onRequest', (request, reply, done) => {
    request.startedAt = process.hrtime.bigint();
    // One 'close' listener instead of an onResponse hook: Fastify hooks cost more per request.
    (reply.raw as ServerResponse & { [kRequest]?: FastifyRequest })[kRequest] = request;
    reply.raw.once('close', onResponseClose);
    // HTTP/2 carries the authority in a pseudo-header; HTTP/1.1 must carry exactly one Host line.
    const http2 = request.raw.httpVersionMajor === 2;
    const host = http2 ? headerText(request.headers[':authority']) ?? request.headers.host : request.headers.host;
    if ((!http2 && hostLineCount(request.raw.rawHeaders) !== 1) || host === undefined || !isValidHost(host)) {
      return sendGatewayError(reply, new GatewayError('BAD_REQUEST', { detail: 'the request needs exactly one valid Host header' }));
    }
    const length = request.headers['content-length'];
    if (length !== undefined && Number(length) > maxBodySize) {
      if (!http2) reply.header('connection', 'close'); // the body stays unread
      return sendGatewayError(reply, new GatewayError('PAYLOAD_TOO_LARGE', { detail: `Content-Length ${length} is over ${maxBodySize} bytes` }));
    }
    const rawUrl = request.raw.url ?? '/';
    const queryAt = rawUrl.indexOf('?');
    const rawPath = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
    const path = normalizePath(rawPath);
    if (path === undefined) return sendGatewayError(reply, new GatewayError('INVALID_PATH'));
    const entry = deps.table().find({ path, host: hostWithoutPort(host), method: request.method, headers: request.headers });
    if (!entry) return sendGatewayError(reply, new GatewayError('ROUTE_NOT_FOUND', { detail: `${request.method} ${path}` }));
    const upstreamPath = entry.route.stripPrefix ? stripPathPrefix(path, entry.route.match.pathPrefix) : path;
    const upstreamUrl = queryAt === -1 ? upstreamPath : upstreamPath + rawUrl.slice(queryAt);
    const peerIp = request.socket.remoteAddress ?? '';
    const trustedPeer = trusted.trusts(peerIp);
    const clientIp = () => (trustedPeer ? trusted.clientIp(peerIp, headerText(request.headers['x-forwarded-for'])) : peerIp);
    const ctx: ProxyContext = { entry, upstreamUrl, hashKey: hashKeyOf(request, entry.route.hashKey, clientIp), exchange: undefined, clientIp, bytesSent: 0, originalPath: rawPath };
    request.waygate = ctx;
    if (request.headers.upgrade?.toLowerCase() === 'websocket') {
      // A WebSocket picks its instance inside http-proxy; refuse here when there is none to pick.
      const selection = entry.pool.select(undefined, entry.route.panicThreshold, Date.now());
      if (selection.kind === 'no-instance') return sendGatewayError(reply, new GatewayError('NO_HEALTHY_INSTANCE', { detail: entry.pool.name, retryAfterSeconds: 1 }));
      if (selection.kind === 'circuit-open') return sendGatewayError(reply, new GatewayError('CIRCUIT_OPEN', { detail: entry.pool.name, retryAfterSeconds: selection.retryAfterSeconds }));
      request.raw.url = upstreamUrl; // http-proxy derives the upstream path from the request URL
      return done();
    }
    // Plain HTTP leaves Fastify here: the exchange writes the raw response itself.
    reply.hijack();
    const facts = { peerIp, trustedPeer, protocol: request.protocol, originalHost: host, requestId: String(request.id) };
    const plan = bodyPlan(request, ctx);
    if (plan !== 'buffer') return forwarder.forward(request.raw, reply.raw, ctx, facts, plan === 'none' ? null : 'stream');
    readBody(request.raw).then((body) => {
      if (body !== undefined) forwarder.forward(request.raw, reply.raw, ctx, facts, body);
    }, () => undefined);
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    const status = error.statusCode ?? 500;
    sendGatewayError(reply, new GatewayError(status < 500 ? 'BAD_REQUEST' : 'INTERNAL_ERROR', { detail: error.message }));
  });

  await app.register(httpProxy, {
    upstream: '',
    websocket: true,
    // Only upgrades reach a route: plain requests are hijacked in onRequest.
    httpMethods: ['GET'],
    undici: deps.dispatcher as never,
    internalRewriteLocationHeader: false,
    replyOptions: {
      getUpstream: (request: FastifyRequest) => {
        const ctx = request.waygate;
        const selection = ctx ? ctx.entry.pool.select(undefined, ctx.entry.route.panicThreshold, Date.now()) : undefined;
        const instance = selection?.kind === 'candidates' ? ctx!.entry.balancer.pick(selection.candidates, { hashKey: ctx!.hashKey }) : undefined;
        return instance?.url ?? NOWHERE;
      },
      rewriteHeaders: (headers: Record<string, unknown>) => withoutHopByHop(headers),
    },
    wsClientOptions: {
      rewriteRequestHeaders: (_headers: Record<string, unknown>, request: FastifyRequest) => {
        const peerIp = request.socket.remoteAddress ?? '';
        return webSocketUpstreamHeaders(request.raw.rawHeaders, { peerIp, trustedPeer: trusted.trusts(peerIp), protocol: request.protocol, originalHost: request.headers.host, requestId: String(request.id) });
      },
    },
  } as never);

  return app;
}
