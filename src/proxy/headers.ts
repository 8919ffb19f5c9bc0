import type { IncomingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy must not forward. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** Removes hop-by-hop headers (including every Proxy-* header) and every header the Connection header names. */
export function stripHopByHop(headers: Record<string, unknown>): void {
  const connection = headers.connection;
  if (typeof connection === 'string') {
    for (const name of connection.split(',')) {
      const trimmed = name.trim().toLowerCase();
      if (trimmed) delete headers[trimmed];
    }
  }
  for (const name of HOP_BY_HOP) delete headers[name];
  for (const name of Object.keys(headers)) if (name.startsWith('proxy-')) delete headers[name];
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
