import type { Balancer, BalancerDeps, BalancerName } from './types.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import { RandomBalancer } from './random.ts';
import { LeastRequestBalancer } from './least-request.ts';
import { ConsistentHashBalancer } from './consistent-hash.ts';

export { RoundRobinBalancer } from './round-robin.ts';
export { RandomBalancer } from './random.ts';
export { LeastRequestBalancer } from './least-request.ts';
export { ConsistentHashBalancer } from './consistent-hash.ts';

const FACTORIES: Readonly<Record<BalancerName, (deps: BalancerDeps) => Balancer>> = {
  /** Smooth weighted round-robin: exact rotation for equal weights, interleaved for unequal ones. */
  'round-robin': () => new RoundRobinBalancer(),
  /** Weighted random draw using deps.random. */
  random: (deps) => new RandomBalancer(deps),
  /** Power of two (weighted) choices; the one with fewer deps.inflight requests wins. */
  'least-request': (deps) => new LeastRequestBalancer(deps),
  /** Weighted rendezvous hashing on context.hashKey; keyless requests fall back to round-robin. */
  'consistent-hash': () => new ConsistentHashBalancer(),
};

/** Every balancer name createBalancer accepts, in documentation order. */
export const BALANCER_NAMES: readonly BalancerName[] = Object.freeze(Object.keys(FACTORIES) as BalancerName[]);

/** Creates a fresh balancer; each call has its own state, so create one per route/service. */
export function createBalancer(name: BalancerName, deps: BalancerDeps): Balancer {
  const factory = FACTORIES[name];
  // Config is validated upstream, but a JS caller could still pass an unknown name.
  if (factory === undefined) throw new Error(`unknown balancer: ${String(name)}`);
  return factory(deps);
}
