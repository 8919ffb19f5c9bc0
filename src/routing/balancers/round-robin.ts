import type { Instance } from '../../registry/types.ts';
import type { Balancer, PickContext } from './types.ts';

/** Per-instance smooth-WRR score; mutated in place so picks do not allocate. */
interface Slot {
  current: number;
  /** Pick number that last saw this instance among the candidates; stale slots get pruned. */
  seen: number;
}

/** Weights that are not finite and positive count as 1 so a bad registry entry cannot stall the rotation. */
export function effectiveWeight(instance: Instance): number {
  const w = instance.weight;
  return Number.isFinite(w) && w > 0 ? w : 1;
}

/**
 * Smooth weighted round-robin (nginx): every pick adds each candidate's weight to its score,
 * takes the highest score (ties go to the earlier candidate) and subtracts the total weight from it.
 * Equal weights give an exact rotation in candidate order; unequal weights interleave (5,1,1 → a,a,b,a,c,a,a).
 * Scores are keyed by instance id: ids missing from a pick's candidates are forgotten, new ids start at 0.
 */
export class RoundRobinBalancer implements Balancer {
  readonly #slots = new Map<string, Slot>();
  #epoch = 0;

  pick(candidates: readonly Instance[], _context?: PickContext): Instance | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    const epoch = ++this.#epoch;
    let total = 0;
    let distinct = 0;
    let best: Instance | undefined;
    let bestSlot: Slot | undefined;
    for (let i = 0; i < n; i++) {
      const candidate = candidates[i]!;
      let slot = this.#slots.get(candidate.id);
      if (slot === undefined) {
        slot = { current: 0, seen: 0 };
        this.#slots.set(candidate.id, slot);
      } else if (slot.seen === epoch) {
        // A duplicated id must not collect its weight twice in one pick.
        continue;
      }
      const weight = effectiveWeight(candidate);
      slot.seen = epoch;
      slot.current += weight;
      total += weight;
      distinct++;
      if (bestSlot === undefined || slot.current > bestSlot.current) {
        best = candidate;
        bestSlot = slot;
      }
    }
    bestSlot!.current -= total;
    // Every candidate now has a slot, so any surplus belongs to instances that left.
    if (this.#slots.size > distinct) this.#prune(epoch);
    return best;
  }

  /** Number of instance ids currently tracked (for tests and diagnostics). */
  get trackedCount(): number {
    return this.#slots.size;
  }

  #prune(epoch: number): void {
    for (const [id, slot] of this.#slots) if (slot.seen !== epoch) this.#slots.delete(id);
  }
}

/** Creates an independent round-robin balancer (state is per balancer, e.g. per route). */
export function createRoundRobinBalancer(): RoundRobinBalancer {
  return new RoundRobinBalancer();
}
