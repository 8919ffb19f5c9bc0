import type { Instance } from '../../registry/types.ts';
import type { Balancer, PickContext } from './types.ts';
import { RoundRobinBalancer, effectiveWeight } from './round-robin.ts';

/** Mixed between key and id; above 0xffff so no UTF-16 code unit can imitate it ("ab"+"c" ≠ "a"+"bc"). */
const SEPARATOR = 0x10000;
const TWO_POW_20 = 1048576;
const TWO_POW_52 = 4503599627370496;

/** Murmur3 32-bit finalizer: spreads every input bit over the whole word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Two independent 32-bit lanes so the derived uniform has 52 bits instead of 32. */
interface HashState {
  a: number;
  b: number;
}

function absorb(state: HashState, text: string): void {
  let a = state.a;
  let b = state.b;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193); // FNV-1a lane
    b = Math.imul(b ^ c, 0x5bd1e995); // murmur2-constant lane with its own shift so the lanes decorrelate
    b ^= b >>> 15;
  }
  state.a = a;
  state.b = b;
}

/**
 * Uniform in the open interval (0, 1) derived from the hash of key+id; exported for tests.
 * Built from 52 hash bits plus one half step, so it is never 0 or 1 and ln(u) is finite and negative.
 */
export function hashUnit(key: string, id: string): number {
  const state: HashState = { a: 0, b: 0 };
  seedWithKey(state, key);
  absorb(state, id);
  return unitFrom(state.a, state.b);
}

/** Resets the lanes and absorbs key plus separator; the per-instance hash continues from here. */
function seedWithKey(state: HashState, key: string): void {
  state.a = 0x811c9dc5;
  state.b = 0x9747b28c;
  absorb(state, key);
  state.a = Math.imul(state.a ^ SEPARATOR, 0x01000193);
  state.b = Math.imul(state.b ^ SEPARATOR, 0x5bd1e995);
}

function unitFrom(a: number, b: number): number {
  return (fmix32(a) * TWO_POW_20 + (fmix32(b ^ a) >>> 12) + 0.5) / TWO_POW_52;
}

/**
 * Weighted rendezvous (highest-random-weight) hashing on context.hashKey: each candidate scores
 * -weight / ln(u(key, id)) and the highest wins, so a key only moves when its winner leaves or a new
 * instance outscores it, and shares are proportional to weight.
 * Without a hashKey (undefined or empty) it delegates to an internal smooth round-robin so keyless traffic still spreads.
 */
export class ConsistentHashBalancer implements Balancer {
  readonly #fallback = new RoundRobinBalancer();
  /** Reused scratch state so a pick hashes the key once and does not allocate. */
  readonly #keyState: HashState = { a: 0, b: 0 };
  readonly #state: HashState = { a: 0, b: 0 };

  pick(candidates: readonly Instance[], context: PickContext): Instance | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    const key = context?.hashKey;
    if (key === undefined || key === '') return this.#fallback.pick(candidates, context);
    if (n === 1) return candidates[0];

    const keyState = this.#keyState;
    seedWithKey(keyState, key);

    const state = this.#state;
    let best: Instance | undefined;
    let bestScore = -Infinity;
    for (let i = 0; i < n; i++) {
      const candidate = candidates[i]!;
      state.a = keyState.a;
      state.b = keyState.b;
      absorb(state, candidate.id);
      const score = -effectiveWeight(candidate) / Math.log(unitFrom(state.a, state.b));
      // Ties (practically impossible) go to the lower id so the result does not depend on candidate order.
      if (score > bestScore || (score === bestScore && best !== undefined && candidate.id < best.id)) {
        best = candidate;
        bestScore = score;
      }
    }
    return best;
  }
}

/** Creates a weighted rendezvous-hash balancer with a round-robin fallback for keyless requests. */
export function createConsistentHashBalancer(): ConsistentHashBalancer {
  return new ConsistentHashBalancer();
}
