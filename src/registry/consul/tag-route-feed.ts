import type { RouteConfig, RouteDefaults } from '../../config/types.ts';
import type { Logger } from '../../observability/logger.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { ConsulRegistry } from './registry.ts';
import { mergeRoutes, routesFromTags } from './tag-routes.ts';

export interface TagRouteFeedOptions {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** The YAML routes being served now (they change on reload). */
  readonly routes: () => readonly RouteConfig[];
  readonly defaults: () => RouteDefaults;
  /** The merged routes changed: serve these. */
  readonly changed: (routes: RouteConfig[]) => void;
}

/** Turns Consul's catalog tags into routes beside the YAML ones, and says when the merged set changes. */
export class TagRouteFeed {
  /** The catalog tag routes were last built from, so a reload can merge them again. */
  private catalog: ReadonlyMap<string, readonly string[]> | undefined;
  /** Identity of the last merged set handed out, so an unchanged catalog rebuilds nothing. */
  private lastKey = '';
  /** Names of the tag routes refused last time, so each refusal is logged and counted once. */
  private refusedKey = '';

  constructor(registry: ConsulRegistry, private readonly options: TagRouteFeedOptions) {
    registry.onCatalog((catalog) => this.onCatalog(catalog));
  }

  /** These YAML routes with the tag routes of the last catalog (YAML owns any path both claim). */
  merged(yaml: readonly RouteConfig[]): RouteConfig[] {
    const routes = this.catalog ? mergeRoutes(yaml, routesFromTags(this.catalog, this.options.defaults())).routes : [...yaml];
    this.lastKey = keyOf(routes);
    return routes;
  }

  private onCatalog(catalog: ReadonlyMap<string, readonly string[]>): void {
    const { logger, metrics } = this.options;
    this.catalog = catalog;
    const yaml = this.options.routes();
    const { routes, refused } = mergeRoutes(yaml, routesFromTags(catalog, this.options.defaults()));
    const refusedKey = refused.map(({ route }) => route.name).join('\n');
    if (refusedKey !== this.refusedKey) {
      this.refusedKey = refusedKey;
      if (refused.length > 0) metrics.registryRejectedEntries.inc({ registry: 'consul' }, refused.length);
      for (const { route, ownedBy } of refused) {
        logger.warn({ service: route.service, path: route.match.pathPrefix, ownedBy }, `consul: tag route ${route.match.pathPrefix} of service "${route.service}" refused: the path belongs to YAML route "${ownedBy}"`);
      }
    }
    const key = keyOf(routes);
    if (key === this.lastKey) return;
    this.lastKey = key;
    logger.info({ routes: routes.length, fromTags: routes.length - yaml.length }, 'consul: tag routes changed');
    this.options.changed(routes);
  }
}

function keyOf(routes: readonly RouteConfig[]): string {
  return routes.map((route) => `${route.name}|${route.match.pathPrefix}|${route.stripPrefix}`).join('\n');
}
