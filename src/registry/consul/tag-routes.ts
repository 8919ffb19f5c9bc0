import type { RouteConfig, RouteDefaults } from '../../config/types.ts';
import { prefixMatches } from '../../routing/path.ts';

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
        // Named, so the route still resolves when etcd is configured beside Consul.
        registry: 'consul',
        source: 'consul-tags',
      });
    }
  }
  return routes;
}

/** A tag route that was not taken, and the YAML route whose path it would have entered. */
export interface RefusedTagRoute {
  readonly route: RouteConfig;
  readonly ownedBy: string;
}

/**
 * YAML routes first. A tag route is refused when its prefix equals or lies under a YAML route's
 * prefix (at a segment boundary), so no service can publish its way into a path the file owns; a YAML
 * route on `/` claims nothing, or no tag route could ever exist. Among tag routes the first keeps a prefix.
 */
export function mergeRoutes(yaml: readonly RouteConfig[], fromTags: readonly RouteConfig[]): { routes: RouteConfig[]; refused: RefusedTagRoute[] } {
  const claimed = yaml.filter((route) => route.match.pathPrefix !== '/');
  const taken = new Set<string>();
  const routes = [...yaml];
  const refused: RefusedTagRoute[] = [];
  for (const route of fromTags) {
    const owner = claimed.find((yamlRoute) => prefixMatches(route.match.pathPrefix, yamlRoute.match.pathPrefix));
    if (owner) {
      refused.push({ route, ownedBy: owner.name });
      continue;
    }
    if (taken.has(route.match.pathPrefix)) continue;
    taken.add(route.match.pathPrefix);
    routes.push(route);
  }
  return { routes, refused };
}
