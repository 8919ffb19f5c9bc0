import type { Balancer } from './balancers/types.ts';
import type { ServicePool } from './service-pool.ts';

/** One backend of a traffic split: its own pool (breakers, instances) and balancer, and its share. */
export interface SplitBackend {
  readonly pool: ServicePool;
  readonly balancer: Balancer;
  readonly weight: number;
}

/**
 * Picks a backend by weight among those that can take a request now (some instance registry-healthy
 * and not every breaker open), so a backend with nothing to offer gives its share to the others.
 * When none can, the first with a positive weight is returned and answers the error itself.
 */
export function chooseBackend(backends: readonly SplitBackend[], random: () => number, usable: (backend: SplitBackend) => boolean): SplitBackend {
  let total = 0;
  for (const backend of backends) if (backend.weight > 0 && usable(backend)) total += backend.weight;
  if (total === 0) return backends.find((backend) => backend.weight > 0) ?? backends[0]!;
  let point = random() * total;
  for (const backend of backends) {
    if (backend.weight <= 0 || !usable(backend)) continue;
    point -= backend.weight;
    if (point < 0) return backend;
  }
  // Floating-point slack: the loop can end a hair short of the total; the last usable backend takes it.
  for (let i = backends.length - 1; i >= 0; i--) if (backends[i]!.weight > 0 && usable(backends[i]!)) return backends[i]!;
  return backends[0]!;
}

/** Datacenter failover: the first backend, in order, with a healthy instance; the first when none has. */
export function firstHealthy(backends: readonly SplitBackend[]): SplitBackend {
  for (const backend of backends) if (backend.pool.healthyCount > 0) return backend;
  return backends[0]!;
}
