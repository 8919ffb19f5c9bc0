import type { RouteConfig } from '../config/types.ts';
import type { RetryBudget } from '../resilience/retry-budget.ts';
import type { Balancer } from './balancers/types.ts';
import type { RequestFacts } from './match.ts';
import { RouteIndex } from './route-index.ts';
import type { ServicePool } from './service-pool.ts';

/** A route with everything a request needs to be served by it. */
export interface RouteEntry {
  readonly route: RouteConfig;
  readonly pool: ServicePool;
  readonly balancer: Balancer;
  readonly budget: RetryBudget;
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
