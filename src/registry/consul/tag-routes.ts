import type { RouteConfig, RouteDefaults } from '../../config/types.ts';

/** Tag a service publishes to ask for a route: `waygate.route=/path` or `waygate.route=/path strip`. */
export const ROUTE_TAG_PREFIX = 'waygate.route=';

/** Routes that services publish in their Consul tags, in a stable order. Malformed tags are skipped. */
export function routesFromTags(catalog: ReadonlyMap<string, readonly string[]>, defaults: RouteDefaults): RouteConfig[] {
  const routes: RouteConfig[] = [];
  for (const [service, tags] of [...catalog].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const tag of new Set(tags)) {
      if (!tag.startsWith(ROUTE_TAG_PREFIX)) continue;
      const [path, ...flags] = tag.slice(ROUTE_TAG_PREFIX.length).trim().split(/\s+/);
      if (!path || !path.startsWith('/') || flags.some((flag) => flag !== 'strip')) continue;
      routes.push({
        ...defaults,
        name: `consul:${service}:${path}`,
        match: { pathPrefix: path },
        service,
        stripPrefix: flags.includes('strip'),
        loadBalancer: 'round-robin',
        tags: [],
        source: 'consul-tags',
      });
    }
  }
  return routes;
}

/** YAML routes first; a tag route is dropped when a YAML route (or an earlier tag route) already owns its prefix. */
export function mergeRoutes(yaml: readonly RouteConfig[], fromTags: readonly RouteConfig[]): RouteConfig[] {
  const owned = new Set(yaml.map((route) => route.match.pathPrefix));
  const merged = [...yaml];
  for (const route of fromTags) {
    if (owned.has(route.match.pathPrefix)) continue;
    owned.add(route.match.pathPrefix);
    merged.push(route);
  }
  return merged;
}
