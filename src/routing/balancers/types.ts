import type { Instance } from '../../registry/types.ts';

/** Per-request facts a balancer may use. */
export interface PickContext {
  /** Key for consistent-hash balancing (header, cookie or client IP value); undefined means "no key". */
  readonly hashKey?: string | undefined;
}

/** Chooses one instance out of the candidates the caller already filtered (healthy, breaker allows, not tried). */
export interface Balancer {
  pick(candidates: readonly Instance[], context: PickContext): Instance | undefined;
}

export type BalancerName = 'round-robin' | 'random' | 'least-request' | 'consistent-hash';

/** What balancers may read from the outside world; injected so unit tests stay deterministic. */
export interface BalancerDeps {
  /** Number of requests currently in flight to the instance with this id. */
  readonly inflight: (instanceId: string) => number;
  /** Uniform random number in [0, 1). */
  readonly random: () => number;
}
