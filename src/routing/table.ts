import type { RouteConfig } from '../config/types.ts';
import type { RetryBudget } from '../resilience/retry-budget.ts';
import type { Balancer } from './balancers/types.ts';
import { findRoute, type RequestFacts, sortRoutes } from './match.ts';
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
  private readonly routes: readonly RouteConfig[];
  private readonly byRoute: Map<RouteConfig, RouteEntry>;

  constructor(entries: readonly RouteEntry[]) {
    this.byRoute = new Map(entries.map((entry) => [entry.route, entry]));
    this.routes = sortRoutes(entries.map((entry) => entry.route));
    this.entries = this.routes.map((route) => this.byRoute.get(route)!);
  }

  find(request: RequestFacts): RouteEntry | undefined {
    const route = findRoute(this.routes, request);
    return route && this.byRoute.get(route);
  }
}
