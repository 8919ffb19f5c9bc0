/** `defaults:` and `routes:`: inheritance of the route settings and the rules across routes. */
import type { BalancerName } from '../routing/balancers/types.ts';
import { DEFAULTS } from './defaults.ts';
import { formatDuration } from './duration.ts';
import { resolveFields } from './field-kinds.ts';
import { isServiceName, MATCH_FIELDS, ROUTE_DEFAULT_FIELDS, ROUTE_FIELDS, SPLIT_BACKEND_FIELDS, TOKEN_PATTERN } from './fields.ts';
import type { Segment } from './positions.ts';
import type { ResolveContext } from './resolve-context.ts';
import type { HashKeySource, RegistryName, RouteConfig, RouteDefaults, RouteMatch, SplitBackend, StaticServiceConfig } from './types.ts';
import { asObj, asStringList, compact, isObject, type Obj, optional, setOwn, stringMap } from './values.ts';

const TOKEN = new RegExp(TOKEN_PATTERN);

/** One level of overrides (`defaults:` or a route) on top of `base`, nested mappings key by key. */
export function resolveRouteDefaults(rawValue: unknown, base: RouteDefaults, path: readonly Segment[], ctx: ResolveContext): RouteDefaults {
  const resolved: RouteDefaults = resolveFields(ROUTE_DEFAULT_FIELDS, rawValue, base);
  checkEjectionTimes(asObj(asObj(rawValue)['outlierDetection']), resolved, path, ctx);
  return resolved;
}

/** maxEjectionTime must not undercut baseEjectionTime; only the level that set one of them is blamed. */
function checkEjectionTimes(raw: Record<string, unknown>, resolved: RouteDefaults, path: readonly Segment[], ctx: ResolveContext): void {
  const { baseEjectionTimeMs: lo, maxEjectionTimeMs: hi } = resolved.outlierDetection;
  if (hi >= lo) return;
  if ('maxEjectionTime' in raw) {
    ctx.report([...path, 'outlierDetection', 'maxEjectionTime'], `must not be less than baseEjectionTime (${formatDuration(lo)})`);
  } else if ('baseEjectionTime' in raw) {
    ctx.report([...path, 'outlierDetection', 'baseEjectionTime'], `must not be greater than maxEjectionTime (${formatDuration(hi)})`);
  }
}

export function resolveRoutes(
  rawValue: unknown,
  defaults: RouteDefaults,
  services: Record<string, StaticServiceConfig>,
  dynamic: readonly RegistryName[],
  ctx: ResolveContext,
): RouteConfig[] {
  const hasConsul = dynamic.includes('consul');
  const routes: RouteConfig[] = [];
  const names = new Map<string, number>();
  (Array.isArray(rawValue) ? rawValue : []).forEach((item: unknown, i) => {
    const path: Segment[] = ['routes', i];
    const raw = asObj(item);
    const f = ROUTE_FIELDS;
    const name = f.name.read(raw['name']) ?? `#${i}`;
    if (typeof raw['name'] === 'string') {
      const first = names.get(name);
      if (first !== undefined) ctx.report([...path, 'name'], `duplicate route name "${name}" (also routes[${first}])`);
      else names.set(name, i);
    }

    const split = Array.isArray(raw['split']) ? resolveSplit(raw['split'], [...path, 'split'], ctx) : undefined;
    if (split !== undefined && raw['service'] !== undefined) ctx.report([...path, 'split'], 'use either service or split, not both');
    if (split === undefined && raw['service'] === undefined) ctx.report([...path, 'service'], 'is required');
    const service = typeof raw['service'] === 'string' ? raw['service'] : split?.[0]?.service ?? '';
    const registry = resolveRouteRegistry(raw, path, split ? split.map((backend) => backend.service) : [service], services, dynamic, ctx);
    // With a dynamic registry, services appear at runtime, so only static ones can be checked here.
    const staticOnly = registry === 'static' || (registry === undefined && dynamic.length === 0);
    const checkService = (name: string, at: readonly Segment[]) => {
      if (staticOnly && name !== '' && isServiceName(name) && !Object.hasOwn(services, name)) {
        ctx.report(at, `unknown service "${name}" (not in registry.static.services)`);
      }
    };
    if (split === undefined) checkService(service, [...path, 'service']);
    else split.forEach((backend, b) => checkService(backend.service, [...path, 'split', b, 'service']));

    const lb: BalancerName = f.loadBalancer.read(raw['loadBalancer']) ?? f.loadBalancer.default;
    const hashKey = parseHashKey(raw['hashKey']) ?? (lb === 'consistent-hash' ? { ...DEFAULTS.route.consistentHashKey } : undefined);

    routes.push(
      compact({
        name,
        match: resolveMatch(raw['match'], [...path, 'match'], ctx),
        service,
        stripPrefix: f.stripPrefix.read(raw['stripPrefix']) ?? f.stripPrefix.default,
        loadBalancer: lb,
        hashKey,
        tags: split?.[0]?.tags ? [...split[0].tags] : [...(f.tags.read(raw['tags']) ?? f.tags.default)],
        ...optional('meta', split ? split[0]?.meta : stringMap(raw['meta'])),
        ...optional('split', split),
        ...optional('datacenters', resolveDatacenters(raw['datacenters'], [...path, 'datacenters'], hasConsul && (registry === undefined || registry === 'consul'), split !== undefined, ctx)),
        ...resolveRouteDefaults(raw, defaults, path, ctx),
        source: 'yaml' as const,
        registry,
      }),
    );
  });
  return routes;
}

/**
 * The registry a route names, checked against the configured ones. With several dynamic registries a
 * route of a non-static service must name one, since its service could live in either.
 */
function resolveRouteRegistry(raw: Obj, path: readonly Segment[], serviceNames: readonly string[], services: Record<string, StaticServiceConfig>, dynamic: readonly RegistryName[], ctx: ResolveContext): RegistryName | undefined {
  const named = ROUTE_FIELDS.registry.read(raw['registry']);
  if (named !== undefined && named !== 'static' && !dynamic.includes(named)) ctx.report([...path, 'registry'], `names registry "${named}", but registry.${named} is not configured`);
  if (named === undefined && dynamic.length > 1 && serviceNames.some((name) => !Object.hasOwn(services, name))) {
    ctx.report([...path, 'registry'], `is required: both ${dynamic.join(' and ')} are configured (say which one serves this route)`, 'value', path);
  }
  return named;
}

function resolveDatacenters(value: unknown, path: readonly Segment[], hasConsul: boolean, isSplit: boolean, ctx: ResolveContext): string[] | undefined {
  const list = asStringList(value);
  if (list === undefined) return undefined;
  if (!hasConsul) ctx.report(path, 'needs registry.consul (datacenters are Consul datacenters)');
  if (isSplit) ctx.report(path, 'cannot be combined with split');
  return [...new Set(list)];
}

function resolveSplit(items: unknown[], path: readonly Segment[], ctx: ResolveContext): SplitBackend[] {
  const backends: SplitBackend[] = [];
  const f = SPLIT_BACKEND_FIELDS;
  for (const item of items) {
    const raw = asObj(item);
    if (typeof raw['service'] !== 'string') continue; // the schema reported it
    backends.push(compact({
      service: raw['service'],
      tags: [...(f.tags.read(raw['tags']) ?? [])],
      meta: stringMap(raw['meta']),
      weight: f.weight.read(raw['weight']) ?? 0,
    }));
  }
  if (backends.length > 0 && backends.every((backend) => backend.weight === 0)) ctx.report(path, 'needs at least one backend with a weight above 0');
  return backends;
}

function resolveMatch(rawValue: unknown, path: readonly Segment[], ctx: ResolveContext): RouteMatch {
  const raw = asObj(rawValue);
  let headers: Record<string, string> | undefined;
  if (isObject(raw['headers'])) {
    headers = {};
    for (const [key, value] of Object.entries(raw['headers'])) {
      const name = key.toLowerCase();
      if (!TOKEN.test(key)) ctx.report([...path, 'headers', key], 'must be a valid header name', 'key');
      else if (Object.hasOwn(headers, name)) {
        ctx.report([...path, 'headers', key], `duplicate header "${name}" (header names are case-insensitive)`, 'key');
      }
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') setOwn(headers, name, String(value));
    }
  }
  const methods = Array.isArray(raw['methods'])
    ? [...new Set(raw['methods'].filter((m): m is string => typeof m === 'string').map((m) => m.toUpperCase()))]
    : undefined;
  return compact({
    pathPrefix: MATCH_FIELDS.pathPrefix.read(raw['pathPrefix']) ?? '/',
    host: MATCH_FIELDS.host.read(raw['host'])?.toLowerCase(),
    methods,
    headers,
  });
}

function parseHashKey(value: unknown): HashKeySource | undefined {
  if (typeof value !== 'string') return undefined;
  if (value === 'ip') return { kind: 'ip' };
  const colon = value.indexOf(':');
  const kind = value.slice(0, colon);
  const name = value.slice(colon + 1);
  if (colon < 0 || !TOKEN.test(name)) return undefined; // schema reported it
  if (kind === 'header') return { kind: 'header', name: name.toLowerCase() };
  if (kind === 'cookie') return { kind: 'cookie', name };
  return undefined;
}
