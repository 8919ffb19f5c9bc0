import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Instance } from '../../src/registry/types.ts';
import type { BalancerDeps } from '../../src/routing/balancers/types.ts';
import { BALANCER_NAMES, createBalancer } from '../../src/routing/balancers/index.ts';
import { RoundRobinBalancer } from '../../src/routing/balancers/round-robin.ts';
import { RandomBalancer } from '../../src/routing/balancers/random.ts';
import { LeastRequestBalancer } from '../../src/routing/balancers/least-request.ts';
import { ConsistentHashBalancer, hashUnit } from '../../src/routing/balancers/consistent-hash.ts';

function inst(id: string, weight = 1): Instance {
  return { id, url: `http://${id}.internal:8080`, weight, tags: [] };
}

/** Small seeded PRNG so distribution tests are reproducible. */
function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function deps(seed = 1, inflight: Record<string, number> = {}): BalancerDeps {
  return { random: mulberry32(seed), inflight: (id) => inflight[id] ?? 0 };
}

function ids(seq: readonly (Instance | undefined)[]): string[] {
  return seq.map((i) => i?.id ?? '<none>');
}

function pickMany(b: { pick: RoundRobinBalancer['pick'] }, cands: readonly Instance[], n: number, key?: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(b.pick(cands, { hashKey: key })?.id ?? '<none>');
  return out;
}

function count(seq: readonly string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const s of seq) c[s] = (c[s] ?? 0) + 1;
  return c;
}

function longestRun(seq: readonly string[], id: string): number {
  let best = 0;
  let run = 0;
  for (const s of seq) {
    run = s === id ? run + 1 : 0;
    best = Math.max(best, run);
  }
  return best;
}

describe('all balancers', () => {
  it('BALANCER_NAMES lists every name and createBalancer builds each', () => {
    assert.deepEqual([...BALANCER_NAMES].sort(), ['consistent-hash', 'least-request', 'random', 'round-robin']);
    for (const name of BALANCER_NAMES) {
      const b = createBalancer(name, deps());
      assert.equal(b.pick([], {}), undefined, `${name} on empty list`);
      assert.equal(b.pick([inst('only')], { hashKey: 'k' })?.id, 'only', `${name} with one candidate`);
      assert.equal(b.pick([inst('only')], {})?.id, 'only', `${name} with one candidate, no key`);
    }
  });

  it('createBalancer returns independent state per call', () => {
    const cands = [inst('a'), inst('b')];
    const one = createBalancer('round-robin', deps());
    const two = createBalancer('round-robin', deps());
    assert.equal(one.pick(cands, {})?.id, 'a');
    assert.equal(two.pick(cands, {})?.id, 'a');
  });

  it('non-positive or non-finite weights are treated as 1, not a crash', () => {
    const cands = [inst('a', 0), inst('b', Number.NaN), inst('c', -3)];
    for (const name of BALANCER_NAMES) {
      const b = createBalancer(name, deps(7));
      for (let i = 0; i < 50; i++) assert.ok(b.pick(cands, { hashKey: `k${i}` }), name);
    }
  });
});

describe('round-robin (smooth weighted)', () => {
  it('equal weights rotate exactly in candidate order', () => {
    const rr = new RoundRobinBalancer();
    const cands = [inst('a'), inst('b'), inst('c')];
    assert.deepEqual(pickMany(rr, cands, 9), ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('weights 1,2 give the repeating pattern b,a,b: exactly 100/200 of 300 and never more than two b in a row', () => {
    const rr = new RoundRobinBalancer();
    const seq = pickMany(rr, [inst('a', 1), inst('b', 2)], 300);
    assert.deepEqual(count(seq), { a: 100, b: 200 });
    for (let i = 0; i < 300; i += 3) assert.deepEqual(seq.slice(i, i + 3), ['b', 'a', 'b'], `period at ${i}`);
    assert.equal(longestRun(seq, 'b'), 2);
    assert.equal(longestRun(seq, 'a'), 1);
  });

  it('weights 5,1,1 give the nginx sequence a,a,b,a,c,a,a, repeated', () => {
    const rr = new RoundRobinBalancer();
    const seq = pickMany(rr, [inst('a', 5), inst('b', 1), inst('c', 1)], 21);
    const period = ['a', 'a', 'b', 'a', 'c', 'a', 'a'];
    assert.deepEqual(seq, [...period, ...period, ...period]);
  });

  it('a candidate removed mid-rotation is forgotten and the rest keep rotating', () => {
    const rr = new RoundRobinBalancer();
    const a = inst('a');
    const b = inst('b');
    const c = inst('c');
    assert.deepEqual(pickMany(rr, [a, b, c], 2), ['a', 'b']);
    const after = pickMany(rr, [a, c], 1000);
    assert.equal(rr.trackedCount, 2);
    assert.ok(!after.includes('b'));
    // b's leftover score vanishes with it, so c (which was due next) goes twice before strict alternation resumes.
    assert.deepEqual(after.slice(0, 6), ['c', 'c', 'a', 'c', 'a', 'c']);
    const counts = count(after);
    assert.ok(Math.abs((counts.a ?? 0) - (counts.c ?? 0)) <= 2, JSON.stringify(counts));
    assert.ok(longestRun(after, 'a') <= 2 && longestRun(after, 'c') <= 2);
  });

  it('a candidate added later starts at 0 and gets its full share at once', () => {
    const rr = new RoundRobinBalancer();
    const a = inst('a');
    const b = inst('b');
    const c = inst('c', 2);
    pickMany(rr, [a, b], 5);
    const after = pickMany(rr, [a, b, c], 400);
    const counts = count(after);
    assert.ok(Math.abs((counts.a ?? 0) - 100) <= 1, JSON.stringify(counts));
    assert.ok(Math.abs((counts.b ?? 0) - 100) <= 1, JSON.stringify(counts));
    assert.ok(Math.abs((counts.c ?? 0) - 200) <= 1, JSON.stringify(counts));
    // Within the first period (weight total 4) the newcomer already shows up.
    assert.ok(after.slice(0, 4).includes('c'));
  });

  it('flapping subsets (as retries produce) never starve anyone', () => {
    const rr = new RoundRobinBalancer();
    const all = [inst('a'), inst('b'), inst('c')];
    const seen: string[] = [];
    for (let i = 0; i < 300; i++) {
      const first = rr.pick(all, {})!;
      seen.push(first.id);
      // A retry excludes the instance just tried.
      seen.push(rr.pick(all.filter((x) => x !== first), {})!.id);
    }
    const counts = count(seen);
    for (const id of ['a', 'b', 'c']) assert.ok((counts[id] ?? 0) >= 150, JSON.stringify(counts));
  });

  it('duplicate ids in the list do not double their weight', () => {
    const rr = new RoundRobinBalancer();
    const a = inst('a');
    const seq = pickMany(rr, [a, a, inst('b')], 100);
    assert.deepEqual(count(seq), { a: 50, b: 50 });
  });
});

describe('random (weighted)', () => {
  it('weights 1:3 over 100k seeded picks land within ±1.5 % of 25/75', () => {
    const rnd = new RandomBalancer(deps(42));
    const counts = count(pickMany(rnd, [inst('a', 1), inst('b', 3)], 100_000));
    const shareA = (counts.a ?? 0) / 100_000;
    assert.ok(Math.abs(shareA - 0.25) <= 0.015, `a share ${shareA}`);
    assert.equal((counts.a ?? 0) + (counts.b ?? 0), 100_000);
  });

  it('maps random() onto cumulative weights exactly', () => {
    let next = 0;
    const rnd = new RandomBalancer({ random: () => next });
    const cands = [inst('a', 1), inst('b', 3)];
    const at = (r: number): string | undefined => {
      next = r;
      return rnd.pick(cands, {})?.id;
    };
    assert.equal(at(0), 'a');
    assert.equal(at(0.2499), 'a');
    assert.equal(at(0.25), 'b');
    assert.equal(at(0.999999999), 'b');
    assert.equal(at(1), 'b'); // out-of-contract 1.0 still yields a candidate
  });

  it('three weights 1,3,2 map onto [0,1/6), [1/6,4/6), [4/6,1)', () => {
    let next = 0;
    const rnd = new RandomBalancer({ random: () => next });
    const cands = [inst('a', 1), inst('b', 3), inst('c', 2)];
    const at = (r: number): string | undefined => {
      next = r;
      return rnd.pick(cands, {})?.id;
    };
    assert.deepEqual([0.1, 0.17, 0.5, 0.66, 0.67, 0.99].map(at), ['a', 'b', 'b', 'b', 'c', 'c']);
  });
});

describe('least-request (power of two weighted choices)', () => {
  it('never picks the loaded instance: two distinct draws always include a less-loaded one', () => {
    const lr = new LeastRequestBalancer(deps(3, { a: 10, b: 0, c: 0 }));
    const counts = count(pickMany(lr, [inst('a'), inst('b'), inst('c')], 20_000));
    assert.equal(counts.a ?? 0, 0);
    assert.ok(Math.abs((counts.b ?? 0) / 20_000 - 0.5) <= 0.03, JSON.stringify(counts));
  });

  it('equal inflight spreads roughly evenly (±3 %)', () => {
    const lr = new LeastRequestBalancer(deps(9));
    const cands = [inst('a'), inst('b'), inst('c'), inst('d')];
    const counts = count(pickMany(lr, cands, 40_000));
    for (const c of cands) {
      const share = (counts[c.id] ?? 0) / 40_000;
      assert.ok(Math.abs(share - 0.25) <= 0.03, `${c.id} share ${share}`);
    }
  });

  it('with two candidates the less-loaded one always wins; ties go to the higher weight', () => {
    const load: Record<string, number> = { a: 0, b: 0 };
    const lr = new LeastRequestBalancer({ random: mulberry32(5), inflight: (id) => load[id] ?? 0 });
    const cands = [inst('a', 1), inst('b', 2)];
    assert.deepEqual(count(pickMany(lr, cands, 200)), { b: 200 });
    load.b = 1;
    assert.deepEqual(count(pickMany(lr, cands, 200)), { a: 200 });
  });

  it('equal load and equal weight: the first drawn wins', () => {
    const draws = [0.1, 0.9];
    let i = 0;
    const lr = new LeastRequestBalancer({ random: () => draws[i++ % 2]!, inflight: () => 0 });
    // First draw 0.1 of 3 → a; second 0.9 over {b,c} → c; tie → first drawn (a).
    assert.equal(lr.pick([inst('a'), inst('b'), inst('c')], {})?.id, 'a');
  });

  it('a single candidate is returned without drawing', () => {
    const lr = new LeastRequestBalancer({
      random: () => {
        throw new Error('should not draw');
      },
      inflight: () => 5,
    });
    assert.equal(lr.pick([inst('solo')], {})?.id, 'solo');
    assert.equal(lr.pick([], {}), undefined);
  });
});

describe('consistent-hash (weighted rendezvous)', () => {
  const five = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'].map((h) => inst(`http://${h}:8080`));
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

  function assign(cands: readonly Instance[]): Map<string, string> {
    const ch = new ConsistentHashBalancer();
    const out = new Map<string, string>();
    for (const k of keys) out.set(k, ch.pick(cands, { hashKey: k })!.id);
    return out;
  }

  it('the same key always maps to the same instance, regardless of candidate order', () => {
    const ch = new ConsistentHashBalancer();
    const first = ch.pick(five, { hashKey: 'session-abc' })!.id;
    for (let i = 0; i < 100; i++) assert.equal(ch.pick(five, { hashKey: 'session-abc' })!.id, first);
    assert.equal(new ConsistentHashBalancer().pick([...five].reverse(), { hashKey: 'session-abc' })!.id, first);
  });

  it('10k keys over 5 instances spread within ±25 % of even', () => {
    const counts = count([...assign(five).values()]);
    for (const c of five) {
      const n = counts[c.id] ?? 0;
      assert.ok(n >= 1500 && n <= 2500, `${c.id}: ${n}`);
    }
  });

  it('removing an instance moves only its own keys, and those spread over the rest', () => {
    const before = assign(five);
    const gone = five[2]!;
    const after = assign(five.filter((c) => c !== gone));
    let movedFromOthers = 0;
    const reassigned: string[] = [];
    for (const [k, was] of before) {
      const now = after.get(k)!;
      if (was === gone.id) reassigned.push(now);
      else if (now !== was) movedFromOthers++;
    }
    assert.equal(movedFromOthers, 0);
    assert.ok(reassigned.length > 0);
    const spread = count(reassigned);
    assert.equal(Object.keys(spread).length, 4);
    for (const n of Object.values(spread)) assert.ok(Math.abs(n / reassigned.length - 0.25) <= 0.1, JSON.stringify(spread));
  });

  it('adding a sixth instance moves exactly the keys that now land on it', () => {
    const before = assign(five);
    const sixth = inst('http://10.0.0.6:8080');
    const after = assign([...five, sixth]);
    let moved = 0;
    let onSixth = 0;
    for (const [k, was] of before) {
      const now = after.get(k)!;
      if (now === sixth.id) onSixth++;
      if (now !== was) {
        moved++;
        assert.equal(now, sixth.id, `key ${k} moved between old instances`);
      }
    }
    assert.equal(moved, onSixth);
    assert.ok(onSixth >= 1250 && onSixth <= 2083, `sixth got ${onSixth}`); // ~1/6 of 10k, ±25 %
  });

  it('a weight-2 instance gets about twice the keys of the others (±15 %)', () => {
    const cands = five.map((c, i) => (i === 0 ? { ...c, weight: 2 } : c));
    const counts = count([...assign(cands).values()]);
    const heavy = counts[five[0]!.id] ?? 0;
    const others = five.slice(1).map((c) => counts[c.id] ?? 0);
    const avg = others.reduce((s, n) => s + n, 0) / others.length;
    const ratio = heavy / avg;
    assert.ok(ratio >= 1.7 && ratio <= 2.3, `ratio ${ratio}`);
  });

  it('without a hashKey (undefined or empty) requests still spread across all instances', () => {
    const ch = new ConsistentHashBalancer();
    assert.deepEqual(count(pickMany(ch, five, 500)), Object.fromEntries(five.map((c) => [c.id, 100])));
    assert.deepEqual(count(pickMany(ch, five, 500, '')), Object.fromEntries(five.map((c) => [c.id, 100])));
  });

  it('key and id boundaries are not ambiguous ("ab"+"c" differs from "a"+"bc")', () => {
    assert.notEqual(hashUnit('ab', 'c'), hashUnit('a', 'bc'));
    assert.notEqual(hashUnit('', 'abc'), hashUnit('abc', ''));
    for (const [k, id] of [['k', 'i'], ['', ''], ['x'.repeat(500), 'y']] as const) {
      const u = hashUnit(k, id);
      assert.ok(u > 0 && u < 1, `u=${u}`);
      assert.equal(hashUnit(k, id), u);
    }
  });
});
