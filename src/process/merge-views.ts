import type { PoolView, TrafficView } from './traffic-plane.ts';

type InstanceView = Record<string, unknown>;

const BREAKER_SEVERITY: Record<string, number> = { closed: 0, 'half-open': 1, open: 2 };

/**
 * One /admin/routes view from every worker's: an instance counts as open or ejected when it is in
 * any worker, in-flight counts and request rates add up, the error share is weighted by rate and
 * p99 is the worst worker's (a bound, since percentiles do not add).
 */
export function mergeTrafficViews(views: readonly TrafficView[]): TrafficView {
  if (views.length === 0) return { routes: [], pools: [] };
  const pools = new Map<string, { pool: PoolView; instances: Map<string, InstanceView[]> }>();
  for (const view of views) {
    for (const pool of view.pools) {
      const key = `${pool.registry}\u0000${pool.watchKey}\u0000${pool.subset}`;
      let merged = pools.get(key);
      if (!merged) pools.set(key, (merged = { pool, instances: new Map() }));
      for (const instance of pool.instances) {
        const id = String(instance.id);
        const copies = merged.instances.get(id);
        if (copies) copies.push(instance);
        else merged.instances.set(id, [instance]);
      }
    }
  }
  return {
    routes: views[0]!.routes,
    pools: [...pools.values()].map(({ pool, instances }) => ({ ...pool, instances: [...instances.values()].map(mergeInstance) })),
  };
}

function mergeInstance(copies: readonly InstanceView[]): InstanceView {
  const first = copies[0]!;
  let breaker = String(first.breaker);
  let ejectedUntil: string | null = null;
  let inflight = 0;
  let rate = 0;
  let errorWeighted = 0;
  let errorRate = 0;
  let p99: number | null = null;
  for (const copy of copies) {
    if ((BREAKER_SEVERITY[String(copy.breaker)] ?? 0) > (BREAKER_SEVERITY[breaker] ?? 0)) breaker = String(copy.breaker);
    if (typeof copy.ejectedUntil === 'string' && (ejectedUntil === null || copy.ejectedUntil > ejectedUntil)) ejectedUntil = copy.ejectedUntil;
    inflight += Number(copy.inflight) || 0;
    const copyRate = Number(copy.requestsPerSecond) || 0;
    rate += copyRate;
    if (typeof copy.errorPercent === 'number') {
      errorWeighted += copy.errorPercent * copyRate;
      errorRate += copyRate;
    }
    if (typeof copy.p99Ms === 'number') p99 = p99 === null ? copy.p99Ms : Math.max(p99, copy.p99Ms);
  }
  return {
    ...first,
    breaker,
    ejected: copies.some((copy) => copy.ejected === true),
    ejectedUntil,
    inflight,
    requestsPerSecond: Math.round(rate * 100) / 100,
    errorPercent: errorRate > 0 ? Math.round((errorWeighted / errorRate) * 100) / 100 : copies.find((copy) => typeof copy.errorPercent === 'number')?.errorPercent ?? null,
    p99Ms: p99,
  };
}
