import type { RouteConfig } from '../config/types.ts';
import type { RetryBudget } from '../resilience/retry-budget.ts';
import type { Balancer } from './balancers/types.ts';
import type { RequestFacts } from './match.ts';
import { RouteIndex } from './route-index.ts';
import type { ServicePool } from './service-pool.ts';
import type { SplitBackend } from './split.ts';

/** A route with everything a request needs to be served by it. */
export interface RouteEntry {
  readonly route: RouteConfig;
  /** The route's pool; with a split, the first backend's (each request picks its own, see `backends`). */
  readonly pool: ServicePool;
  readonly balancer: Balancer;
  readonly budget: RetryBudget;
  /** Present for `split` and `datacenters` routes: every backend with its own pool and balancer. */
  readonly backends?: readonly SplitBackend[] | undefined;
  /** How a request picks among `backends`: by weight (split) or the first usable one (datacenter failover). */
  readonly choice?: 'weighted' | 'failover' | undefined;
}

/** An immutable, pre-sorted set of routes; rebuilt off to the side and swapped in whole. */
export class RouteTable {
  readonly entries: readonly RouteEntry[];
  private readonly index: RouteIndex<RouteConfig>;
  private readonly byRoute: Map<RouteConfig, RouteEntry>;

  constructor(entries: readonly RouteEntry[]) {
    this.byRoute = new Map(entries.map((entry) => [entry.route, entry]));
    this.index = new RouteIndex(entries.map((entry) => entry.route));
    this.entries = this.index.sorted.map((route) => this.byRoute.get(route)!);
  }

  find(request: RequestFacts): RouteEntry | undefined {
    const route = this.index.find(request);
    return route && this.byRoute.get(route);
  }
}
