import type { Instance } from '../../registry/types.ts';
import type { Balancer, BalancerDeps, PickContext } from './types.ts';
import { effectiveWeight } from './round-robin.ts';
import { weightedDraw } from './random.ts';

/**
 * Power of two choices: draws two distinct candidates, each weighted by weight (so weights still shape traffic
 * when load is equal), and returns the one with fewer in-flight requests (deps.inflight).
 * Ties prefer the higher weight, then the first drawn. A single candidate is returned as is.
 */
export class LeastRequestBalancer implements Balancer {
  readonly #random: () => number;
  readonly #inflight: (instanceId: string) => number;

  constructor(deps: BalancerDeps) {
    this.#random = deps.random;
    this.#inflight = deps.inflight;
  }

  pick(candidates: readonly Instance[], _context?: PickContext): Instance | undefined {
    if (candidates.length <= 1) return candidates[0];
    const first = weightedDraw(candidates, this.#random, undefined)!;
    // Exclusion is by object identity, so the second draw is always a different entry.
    const second = weightedDraw(candidates, this.#random, first);
    if (second === undefined) return first;
    const loadFirst = this.#inflight(first.id);
    const loadSecond = this.#inflight(second.id);
    if (loadSecond < loadFirst) return second;
    if (loadSecond > loadFirst) return first;
    return effectiveWeight(second) > effectiveWeight(first) ? second : first;
  }
}

/** Creates a power-of-two-choices least-request balancer. */
export function createLeastRequestBalancer(deps: BalancerDeps): LeastRequestBalancer {
  return new LeastRequestBalancer(deps);
}
