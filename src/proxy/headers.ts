/** Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward; every Proxy-* header counts too. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name) || (name.charCodeAt(0) === 112 /* p */ && name.startsWith('proxy-'));
}

/**
 * A copy of response headers without hop-by-hop ones. Copying beats deleting: `delete` on the
 * (always present) connection/keep-alive keys would push every response object into slow mode.
 */
export function withoutHopByHop(headers: Record<string, unknown>): Record<string, unknown> {
  const connection = headers.connection;
  // The usual values name no other header; skip parsing them on every response.
  const named = typeof connection === 'string' && connection !== 'keep-alive' && connection !== 'close' ? connectionNames(connection) : undefined;
  const out: Record<string, unknown> = {};
  for (const name in headers) {
    if (isHopByHop(name) || named?.includes(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

/** Header names listed in a Connection header, lower-cased. */
function connectionNames(value: string): string[] {
  return value.toLowerCase().split(',').map((name) => name.trim()).filter((name) => name !== '');
}

const REQUEST_ID = /^[\w.:@/+=-]{1,200}$/;

/** Keeps a client's x-request-id when it is a sane token, else mints a fresh one. */
export function chooseRequestId(header: string | string[] | undefined, mint: () => string): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && REQUEST_ID.test(value) ? value : mint();
}

/** Request headers never forwarded as the client sent them: the gateway sets them, or undici must not see them. */
const REPLACED_REQUEST_HEADERS = new Set(['host', 'expect', 'x-forwarded-for', 'x-request-id']);

/** Forwarding headers believed only from a trusted proxy; from anyone else they are dropped. */
const PROXY_ASSERTED_HEADERS = new Set(['x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip', 'forwarded']);

/** What the gateway knows about where a request came from. */
export interface RequestOrigin {
  /** The socket peer. */
  readonly peerIp: string;
  /** Whether the peer is in trustedProxies, so its forwarding headers are believed. */
  readonly trustedPeer: boolean;
  readonly protocol: 'http' | 'https';
  readonly originalHost: string | undefined;
  readonly requestId: string;
}

/**
 * The header list sent upstream, built from the client's raw headers (case and order kept):
 * hop-by-hop headers go, so does `expect` (Node has already answered 100-continue to the client,
 * and undici refuses it), Host becomes the instance's (undici sets it), and the request id is the
 * gateway's. From an untrusted peer every forwarding header is replaced by what the gateway saw;
 * a trusted proxy's are kept and the peer is appended to X-Forwarded-For.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], origin: RequestOrigin): string[] {
  const out: string[] = [];
  let named: string[] | undefined;
  let priorForwardedFor: string | undefined;
  let sawProto = false;
  let sawHost = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name.charCodeAt(0) === 58 /* : */) continue; // HTTP/2 pseudo-headers; upstreams speak HTTP/1.1
    if (name === 'connection') {
      named = mergeNames(named, rawHeaders[i + 1]!);
      continue;
    }
    if (isHopByHop(name) || REPLACED_REQUEST_HEADERS.has(name)) {
      if (name === 'x-forwarded-for' && origin.trustedPeer) {
        priorForwardedFor = priorForwardedFor === undefined ? rawHeaders[i + 1]! : `${priorForwardedFor}, ${rawHeaders[i + 1]!}`;
      }
      continue;
    }
    if (PROXY_ASSERTED_HEADERS.has(name)) {
      if (!origin.trustedPeer) continue;
      if (name === 'x-forwarded-proto') sawProto = true;
      else if (name === 'x-forwarded-host') sawHost = true;
    }
    out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  const list = named ? dropNamed(out, named) : out;
  list.push('x-forwarded-for', priorForwardedFor === undefined ? origin.peerIp : `${priorForwardedFor}, ${origin.peerIp}`);
  if (!sawProto) list.push('x-forwarded-proto', origin.protocol);
  if (!sawHost && origin.originalHost) list.push('x-forwarded-host', origin.originalHost);
  list.push('x-request-id', origin.requestId);
  return list;
}

/**
 * The header list relayed to the client from an upstream's raw response headers: hop-by-hop ones
 * go, and the gateway's x-request-id replaces any the upstream set, so a client can always quote it.
 */
export function clientResponseHeaders(rawHeaders: readonly Buffer[], requestId: string): string[] {
  const out: string[] = [];
  let named: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toString('latin1');
    const lower = name.toLowerCase();
    if (lower === 'connection') {
      const value = rawHeaders[i + 1]!.toString('latin1');
      if (value !== 'keep-alive' && value !== 'close') named = mergeNames(named, value);
      continue;
    }
    if (isHopByHop(lower) || lower === 'x-request-id') continue;
    out.push(name, rawHeaders[i + 1]!.toString('latin1'));
  }
  const list = named ? dropNamed(out, named) : out;
  list.push('x-request-id', requestId);
  return list;
}

function mergeNames(named: string[] | undefined, value: string): string[] {
  const names = connectionNames(value);
  return named ? named.concat(names) : names;
}

/** Removes the headers a Connection header named from a flat [name, value, …] list. */
function dropNamed(list: string[], named: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    if (!named.includes(list[i]!.toLowerCase())) out.push(list[i]!, list[i + 1]!);
  }
  return out;
}

/**
 * Headers for the upstream leg of a WebSocket: every end-to-end header of the client's handshake
 * (Origin, cookies, authorization, custom ones) under the same forwarding rules as plain requests.
 * The handshake's own Sec-WebSocket-* headers are left to the ws client, which negotiates its leg.
 */
export function webSocketUpstreamHeaders(rawHeaders: readonly string[], origin: RequestOrigin): Record<string, string> {
  const list = upstreamRequestHeaders(rawHeaders, origin);
  const out: Record<string, string> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!.toLowerCase();
    if (name.startsWith('sec-websocket-')) continue;
    const value = list[i + 1]!;
    const prior = out[name];
    out[name] = prior === undefined ? value : `${prior}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}
