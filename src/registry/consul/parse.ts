import type { Instance } from '../types.ts';

/** Thrown when Consul answers something that is not the documented shape. */
export class ConsulShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConsulShapeError';
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function origin(scheme: 'http' | 'https', address: string, port: number): string {
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return `${scheme}://${host}:${port}`;
}

/** An instance is dialled over TLS when it says so: Service.Meta `waygate-scheme: https` or tag `waygate.scheme=https`. */
function schemeOf(meta: unknown, tags: readonly string[]): 'http' | 'https' {
  if (isObject(meta) && meta['waygate-scheme'] === 'https') return 'https';
  return tags.includes('waygate.scheme=https') ? 'https' : 'http';
}

/** What a health/service answer gave: usable instances, and why the other entries were skipped. */
export interface ParsedService {
  readonly instances: Instance[];
  readonly rejected: string[];
}

/** Service.Meta as string pairs (Consul's are strings; anything else is ignored). */
function metaOf(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  const out: Record<string, string> = {};
  let any = false;
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') continue;
    Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    any = true;
  }
  return any ? out : undefined;
}

/** Checks one entry; returns the instance or the reason it cannot be used. */
function parseEntry(entry: unknown): Instance | string {
  if (!isObject(entry)) return 'entry is not an object';
  const svc = entry.Service;
  const node = entry.Node;
  if (!isObject(svc)) return 'entry has no Service';
  if (!isObject(node)) return 'entry has no Node';
  const label = typeof svc.ID === 'string' ? svc.ID : '(no ID)';
  if (typeof node.Node !== 'string' || node.Node === '') return `${label}: Node.Node is not a name`;
  const id = typeof svc.ID === 'string' && svc.ID !== '' ? svc.ID : typeof svc.Service === 'string' ? svc.Service : undefined;
  if (id === undefined) return `${label}: Service has neither ID nor Service name`;
  const port = svc.Port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port > 65535) return `${label}: Service.Port ${JSON.stringify(port)} is not a port from 1 to 65535`;
  const address = typeof svc.Address === 'string' && svc.Address !== '' ? svc.Address : node.Address;
  if (typeof address !== 'string' || address === '' || /[\s/@]/.test(address)) return `${label}: no usable address (${JSON.stringify(address)})`;
  if (svc.Tags !== undefined && svc.Tags !== null && !Array.isArray(svc.Tags)) return `${label}: Service.Tags is not a list`;
  if (svc.Weights !== undefined && svc.Weights !== null && !isObject(svc.Weights)) return `${label}: Service.Weights is not an object`;
  const weights = isObject(svc.Weights) ? svc.Weights : undefined;
  const passing = typeof weights?.Passing === 'number' && weights.Passing >= 1 ? Math.floor(weights.Passing) : 1;
  const tags = Array.isArray(svc.Tags) ? svc.Tags.filter((tag): tag is string => typeof tag === 'string') : [];
  const meta = metaOf(svc.Meta);
  return { id: `${node.Node}/${id}`, url: origin(schemeOf(svc.Meta, tags), address, port), weight: passing, tags, ...(meta ? { meta } : {}) };
}

/**
 * Turns a /v1/health/service/:name answer into instances (CONTRACT facts 10–12): id is Node/Service.ID,
 * address is Service.Address or Node.Address when empty, weight is Weights.Passing. A malformed entry
 * (Consul accepts Port 0, for one) is skipped with its reason; only a body that is not a list throws.
 */
export function parseHealthService(body: unknown, service: string): ParsedService {
  if (!Array.isArray(body)) throw new ConsulShapeError(`health/service/${service}: expected an array`);
  const instances: Instance[] = [];
  const rejected: string[] = [];
  const seen = new Set<string>();
  for (const entry of body) {
    const parsed = parseEntry(entry);
    if (typeof parsed === 'string') rejected.push(parsed);
    else if (seen.has(parsed.id)) rejected.push(`${parsed.id}: listed twice`);
    else {
      seen.add(parsed.id);
      instances.push(parsed);
    }
  }
  instances.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { instances, rejected };
}

/** Parses /v1/catalog/services: `{ name: [tags] }`. */
export function parseCatalogServices(body: unknown): Map<string, string[]> {
  if (!isObject(body)) throw new ConsulShapeError('catalog/services: expected an object');
  const services = new Map<string, string[]>();
  for (const [name, tags] of Object.entries(body)) {
    if (tags !== null && !Array.isArray(tags)) throw new ConsulShapeError(`catalog/services: tags of ${name} are not a list`);
    services.set(name, (tags ?? []).filter((tag): tag is string => typeof tag === 'string'));
  }
  return services;
}

/**
 * Digests a /v1/health/state/any answer per service: a change in any check of a service (or of a node
 * it runs on) changes that service's digest. Only services in `watched` are digested.
 */
export function digestHealthState(body: unknown, watched: ReadonlySet<string>): { perService: Map<string, string>; nodes: Map<string, string> } {
  if (!Array.isArray(body)) throw new ConsulShapeError('health/state: expected an array');
  const perService = new Map<string, string[]>();
  const nodes = new Map<string, string[]>();
  for (const check of body) {
    if (!isObject(check)) throw new ConsulShapeError('health/state: entry is not an object');
    const service = typeof check.ServiceName === 'string' ? check.ServiceName : '';
    const line = `${String(check.Node)}|${String(check.ServiceID)}|${String(check.CheckID)}|${String(check.Status)}`;
    if (service === '') {
      const node = String(check.Node);
      (nodes.get(node) ?? nodes.set(node, []).get(node)!).push(line);
    } else if (watched.has(service)) {
      (perService.get(service) ?? perService.set(service, []).get(service)!).push(line);
    }
  }
  const digest = (lines: string[]) => lines.sort().join(';');
  return {
    perService: new Map([...perService].map(([name, lines]) => [name, digest(lines)])),
    nodes: new Map([...nodes].map(([name, lines]) => [name, digest(lines)])),
  };
}
