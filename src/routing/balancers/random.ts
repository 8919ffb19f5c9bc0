import type { Instance } from '../../registry/types.ts';
import type { Balancer, BalancerDeps, PickContext } from './types.ts';
import { effectiveWeight } from './round-robin.ts';

/** Weighted random: each candidate is chosen with probability weight / total weight, using deps.random. */
export class RandomBalancer implements Balancer {
  readonly #random: () => number;

  constructor(deps: Pick<BalancerDeps, 'random'>) {
    this.#random = deps.random;
  }

  pick(candidates: readonly Instance[], _context?: PickContext): Instance | undefined {
    return weightedDraw(candidates, this.#random, undefined);
  }
}

/**
 * Draws one candidate with probability proportional to its weight, skipping `exclude` (compared by identity).
 * O(n), no allocation. Returns undefined when nothing is eligible.
 */
export function weightedDraw(
  candidates: readonly Instance[],
  random: () => number,
  exclude: Instance | undefined,
): Instance | undefined {
  const n = candidates.length;
  let total = 0;
  let last: Instance | undefined;
  for (let i = 0; i < n; i++) {
    const c = candidates[i]!;
    if (c === exclude) continue;
    total += effectiveWeight(c);
    last = c;
  }
  if (last === undefined) return undefined;
  let r = random() * total;
  for (let i = 0; i < n; i++) {
    const c = candidates[i]!;
    if (c === exclude) continue;
    r -= effectiveWeight(c);
    if (r < 0) return c;
  }
  // Float rounding (or a random() that returns ~1) can leave r >= 0; the last eligible candidate owns that edge.
  return last;
}

/** Creates a weighted random balancer. */
export function createRandomBalancer(deps: Pick<BalancerDeps, 'random'>): RandomBalancer {
  return new RandomBalancer(deps);
}
