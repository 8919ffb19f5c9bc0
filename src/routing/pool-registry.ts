import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import type { BreakerClock } from '../resilience/breakers.ts';
import type { PlannedBackend } from './route-plan.ts';
import { ServicePool } from './service-pool.ts';

/** How long a retired pool keeps its breakers for requests that were already under way. */
const RETIRED_POOL_GRACE_MS = 60_000;

export interface PoolRegistryOptions {
  readonly clock: BreakerClock;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** The latest instances a registry reported for a watch key, to seed a pool when it is created. */
  readonly snapshotOf: (registry: string, watchKey: string) => ServiceSnapshot | undefined;
}

/**
 * Every live pool, by the key its plan built. Pools outlive tables: a rebuilt table that asks for
 * the same key gets the same pool, with its health, breakers and ejections.
 */
export class PoolRegistry {
  private readonly pools = new Map<string, ServicePool>();
  /** The same pools by registry and watch key, so an update touches only its own pools. */
  private readonly byWatch = new Map<string, ServicePool[]>();

  constructor(private readonly options: PoolRegistryOptions) {}

  /** The pool for this backend: the existing one when its key is known, else a new one seeded from the registry. */
  acquire({ poolKey, spec }: PlannedBackend): ServicePool {
    const existing = this.pools.get(poolKey);
    if (existing) return existing;
    const { clock, metrics, logger } = this.options;
    const pool = new ServicePool({ name: spec.service, watchKey: spec.watchKey, datacenter: spec.datacenter, registry: spec.registry, tags: spec.tags, meta: spec.meta, circuitBreaker: spec.circuitBreaker, outlierDetection: spec.outlierDetection, clock, metrics, logger });
    const snapshot = this.options.snapshotOf(spec.registry, spec.watchKey);
    if (snapshot) pool.update(snapshot);
    this.pools.set(poolKey, pool);
    const watch = watchId(spec.registry, spec.watchKey);
    const siblings = this.byWatch.get(watch);
    if (siblings) siblings.push(pool);
    else this.byWatch.set(watch, [pool]);
    return pool;
  }

  /** A registry reported new instances for a watch key. */
  update(registry: string, watchKey: string, snapshot: ServiceSnapshot): void {
    for (const pool of this.byWatch.get(watchId(registry, watchKey)) ?? []) pool.update(snapshot);
  }

  /** Drops pools no table uses any more; their breakers stop once in-flight requests had time to end. */
  retainOnly(used: ReadonlySet<ServicePool>): void {
    for (const [key, pool] of this.pools) {
      if (used.has(pool)) continue;
      this.pools.delete(key);
      const watch = watchId(pool.registry, pool.watchKey);
      const siblings = (this.byWatch.get(watch) ?? []).filter((candidate) => candidate !== pool);
      if (siblings.length > 0) this.byWatch.set(watch, siblings);
      else this.byWatch.delete(watch);
      setTimeout(() => {
        pool.close();
        // A pool that took its place (new breaker settings, same service and subset) shares its series: put them back.
        for (const live of this.pools.values()) if (live.name === pool.name && live.subsetLabel === pool.subsetLabel) live.publishGauges();
      }, RETIRED_POOL_GRACE_MS).unref();
    }
  }

  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.byWatch.clear();
  }
}

function watchId(registry: string, watchKey: string): string {
  return `${registry}\u0000${watchKey}`;
}
