import { RetryBudget } from '../resilience/retry-budget.ts';
import { createBalancer } from './balancers/index.ts';
import type { PoolRegistry } from './pool-registry.ts';
import type { RoutePlan } from './route-plan.ts';
import type { ServicePool } from './service-pool.ts';
import type { SplitBackend } from './split.ts';
import { type RouteEntry, RouteTable } from './table.ts';

/** Builds a routing table from plans, taking each pool from the registry (existing pools keep their state). */
export function buildTable(plans: readonly RoutePlan[], pools: PoolRegistry, random: () => number = Math.random): RouteTable {
  const entries: RouteEntry[] = [];
  for (const { route, backends, choice } of plans) {
    const budget = new RetryBudget(route.retryBudget.percent, route.retryBudget.minConcurrent);
    const resolved: SplitBackend[] = backends.map((backend) => {
      const pool = pools.acquire(backend);
      return { pool, balancer: createBalancer(route.loadBalancer, { inflight: (id) => pool.inflight(id), random }), weight: backend.weight };
    });
    const first = resolved[0]!;
    entries.push(choice ? { route, pool: first.pool, balancer: first.balancer, budget, backends: resolved, choice } : { route, pool: first.pool, balancer: first.balancer, budget });
  }
  return new RouteTable(entries);
}

/** Every pool a table uses (the split and failover backends included). */
export function poolsOf(table: RouteTable): Set<ServicePool> {
  return new Set(table.entries.flatMap((entry) => entry.backends ? entry.backends.map((backend) => backend.pool) : [entry.pool]));
}
