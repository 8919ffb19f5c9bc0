import type { Instance } from '../types.ts';

/**
 * Pure rules for etcd keys and values: key layout `<prefix><service>/<instance id>`, and the value
 * formats registrants write (grpc-go's endpoints JSON, or a plain URL string).
 */

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The range_end that selects every key starting with `prefix` (etcd's "prefix + 1" rule). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // A prefix of only 0xff bytes (or empty): every key from it to the end of the keyspace.
  return Buffer.from([0]);
}

/** Which service and instance a key names, or why it names none. */
export function splitKey(prefix: string, key: string): { service: string; id: string } | string {
  if (!key.startsWith(prefix)) return `key ${JSON.stringify(key)} is outside the prefix`;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return `key ${JSON.stringify(key)} is not <prefix><service>/<instance id>`;
  return { service: rest.slice(0, slash), id: rest.slice(slash + 1) };
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `host:port`, `http://host:port` or `https://host:port` as an origin, or undefined. */
export function addressOrigin(address: string): string | undefined {
  const hasScheme = /^https?:\/\//i.test(address);
  if (!hasScheme) {
    const match = HOST_PORT.exec(address);
    if (!match) return undefined;
    const port = Number(match[2]);
    if (port < 1 || port > 65535) return undefined;
    return `http://${match[1]!.toLowerCase()}:${port}`;
  }
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return undefined;
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || url.pathname !== '/' || /[?#]/.test(address)) return undefined;
  if (url.hostname === '') return undefined;
  // A URL with no port gets the scheme's (URL drops default ports from origin, which is what we want).
  return url.origin;
}

/**
 * Turns one value into an instance of `service` with id `id`, or gives the reason it cannot serve.
 * JSON values follow grpc-go's naming endpoints (`Addr`, `Metadata.weight`, `Metadata.tags`; other
 * fields are ignored); any other value must be a plain http(s) URL or host:port.
 */
export function parseInstanceValue(id: string, value: string): Instance | string {
  const text = value.trim();
  if (text === '') return 'value is empty';
  if (text.startsWith('{') || text.startsWith('[') || text.startsWith('"')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return `value is not valid JSON: ${JSON.stringify(text.slice(0, 60))}`;
    }
    if (!isObject(parsed)) return 'value is JSON but not an object with "Addr"';
    return parseEndpoint(id, parsed);
  }
  const url = addressOrigin(text);
  if (url === undefined) return `value ${JSON.stringify(text.slice(0, 60))} is neither endpoint JSON nor an http(s) URL`;
  return { id, url, weight: 1, tags: [] };
}

function parseEndpoint(id: string, endpoint: Record<string, unknown>): Instance | string {
  const addr = endpoint.Addr;
  if (typeof addr !== 'string') return `"Addr" is ${addr === undefined ? 'missing' : `not a string (${JSON.stringify(addr)})`}`;
  if (addr.trim() === '') return '"Addr" is empty';
  const url = addressOrigin(addr.trim());
  if (url === undefined) return `"Addr" ${JSON.stringify(addr.slice(0, 60))} is not host:port or an http(s) URL`;
  const metadata = endpoint.Metadata;
  if (metadata !== undefined && metadata !== null && !isObject(metadata)) return '"Metadata" is not an object';
  let weight = 1;
  let tags: string[] = [];
  if (isObject(metadata)) {
    const rawWeight = metadata.weight;
    if (rawWeight !== undefined && rawWeight !== null) {
      if (typeof rawWeight !== 'number' || !Number.isInteger(rawWeight) || rawWeight < 1) return `"Metadata.weight" ${JSON.stringify(rawWeight)} is not an integer of at least 1`;
      weight = rawWeight;
    }
    const rawTags = metadata.tags;
    if (rawTags !== undefined && rawTags !== null) {
      if (!Array.isArray(rawTags) || rawTags.some((tag) => typeof tag !== 'string')) return '"Metadata.tags" is not a list of strings';
      tags = [...new Set(rawTags as string[])];
    }
  }
  return { id, url, weight, tags };
}
