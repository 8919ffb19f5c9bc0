import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward; every Proxy-* header counts too. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Removes hop-by-hop headers (including every Proxy-* header) and every header the Connection header names. */
export function stripHopByHop(headers: Record<string, unknown>): void {
  const connection = headers.connection;
  if (typeof connection === 'string') for (const name of connectionNames(connection)) delete headers[name];
  for (const name in headers) {
    if (isHopByHop(name)) delete headers[name];
  }
}

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

export interface ForwardingFacts {
  readonly clientIp: string;
  readonly protocol: 'http' | 'https';
  readonly originalHost: string | undefined;
  readonly requestId: string;
}

/** Adds the X-Forwarded-* family and the request id to headers going upstream. */
export function addForwardingHeaders(headers: IncomingHttpHeaders | Record<string, unknown>, facts: ForwardingFacts): void {
  const prior = headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : String(prior)}, ${facts.clientIp}` : facts.clientIp;
  headers['x-forwarded-proto'] = facts.protocol;
  if (facts.originalHost) headers['x-forwarded-host'] = facts.originalHost;
  headers['x-request-id'] = facts.requestId;
}

const REQUEST_ID = /^[\w.:@/+=-]{1,200}$/;

/** Keeps a client's x-request-id when it is a sane token, else mints a fresh one. */
export function chooseRequestId(header: string | string[] | undefined, mint: () => string): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && REQUEST_ID.test(value) ? value : mint();
}
