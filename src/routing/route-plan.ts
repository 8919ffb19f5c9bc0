import type { CircuitBreakerConfig, OutlierDetectionConfig, RouteConfig } from '../config/types.ts';
import { watchKey } from '../registry/watch-key.ts';

/** Everything that makes a pool what it is; two routes with equal specs share one pool (and its breakers). */
export interface PoolSpec {
  readonly service: string;
  /** The registry key of the instances: the service, or `name@dc`. */
  readonly watchKey: string;
  readonly datacenter?: string | undefined;
  /** Name of the registry that serves the instances (static, consul, etcd). */
  readonly registry: string;
  readonly tags: readonly string[];
  readonly meta?: Readonly<Record<string, string>> | undefined;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly outlierDetection: OutlierDetectionConfig;
}

export interface PlannedBackend {
  /** Identity of the pool: built once here, used by every process that builds the table. */
  readonly poolKey: string;
  readonly spec: PoolSpec;
  readonly weight: number;
}

/**
 * A route resolved to the pools it needs. Plain data, so a primary process can send plans to its
 * workers and each builds the same table from them.
 */
export interface RoutePlan {
  readonly route: RouteConfig;
  readonly backends: readonly PlannedBackend[];
  /** How a request picks among several backends: by weight (split) or the first usable (datacenter failover). */
  readonly choice?: 'weighted' | 'failover' | undefined;
}

/** Which registry serves a service of a route; undefined when none does. */
export type RegistryResolver = (route: RouteConfig, service: string) => string | undefined;

/** Breaker and outlier settings are part of a pool's identity: a reload that changes them gets a fresh pool. */
export function poolKeyOf(spec: PoolSpec): string {
  const meta = Object.entries(spec.meta ?? {}).map(([name, value]) => `${name}=${value}`).sort().join(',');
  return `${spec.registry}|${spec.watchKey}|${[...spec.tags].sort().join(',')}|${meta}|${JSON.stringify(spec.circuitBreaker)}|${JSON.stringify(spec.outlierDetection)}`;
}

/** Resolves each route to its pools; a route whose service no registry serves is reported and left out. */
export function planRoutes(routes: readonly RouteConfig[], registryOf: RegistryResolver, unserved: (route: RouteConfig, service: string) => void = () => undefined): RoutePlan[] {
  const plans: RoutePlan[] = [];
  for (const route of routes) {
    const backends: PlannedBackend[] = [];
    const add = (service: string, tags: readonly string[], meta: RouteConfig['meta'], weight: number, datacenter?: string) => {
      const registry = registryOf(route, service);
      if (registry === undefined) {
        unserved(route, service);
        return;
      }
      const spec: PoolSpec = { service, watchKey: watchKey(service, datacenter), datacenter, registry, tags, meta, circuitBreaker: route.circuitBreaker, outlierDetection: route.outlierDetection };
      backends.push({ poolKey: poolKeyOf(spec), spec, weight });
    };
    if (route.split) for (const backend of route.split) add(backend.service, backend.tags, backend.meta, backend.weight);
    else if (route.datacenters) for (const datacenter of route.datacenters) add(route.service, route.tags, route.meta, 1, datacenter);
    else add(route.service, route.tags, route.meta, 1);
    if (backends.length === 0) continue;
    plans.push({ route, backends, choice: route.split ? 'weighted' : route.datacenters ? 'failover' : undefined });
  }
  return plans;
}

/** The watch keys each registry must follow for these plans. */
export function watchesByRegistry(plans: readonly RoutePlan[]): Map<string, Set<string>> {
  const watches = new Map<string, Set<string>>();
  for (const plan of plans) {
    for (const { spec } of plan.backends) {
      let keys = watches.get(spec.registry);
      if (!keys) watches.set(spec.registry, (keys = new Set()));
      keys.add(spec.watchKey);
    }
  }
  return watches;
}
