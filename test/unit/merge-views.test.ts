import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeTrafficViews } from '../../src/process/merge-views.ts';
import type { PoolView, TrafficView } from '../../src/process/traffic-plane.ts';

function pool(instances: Array<Record<string, unknown>>): PoolView {
  return { service: 'svc', watchKey: 'svc', datacenter: undefined, registry: 'static', subset: '', instances };
}

function instance(id: string, fields: Record<string, unknown>): Record<string, unknown> {
  return { id, url: id, healthy: true, breaker: 'closed', ejected: false, ejectedUntil: null, inflight: 0, requestsPerSecond: 0, errorPercent: null, p99Ms: null, ...fields };
}

describe('merging the workers\' /admin/routes views', () => {
  it('an instance is open or ejected when any worker says so; in-flight and rates add up; p99 is the worst', () => {
    const a: TrafficView = { routes: [], pools: [pool([instance('i1', { breaker: 'half-open', inflight: 2, requestsPerSecond: 10, errorPercent: 10, p99Ms: 5 }), instance('i2', {})])] };
    const b: TrafficView = { routes: [], pools: [pool([instance('i1', { breaker: 'open', inflight: 1, requestsPerSecond: 30, errorPercent: 50, p99Ms: 9 }), instance('i2', { ejected: true, ejectedUntil: '2026-01-01T00:00:10.000Z' })])] };
    const merged = mergeTrafficViews([a, b]);
    assert.equal(merged.pools.length, 1);
    const [i1, i2] = merged.pools[0]!.instances;
    assert.equal(i1!.breaker, 'open');
    assert.equal(i1!.inflight, 3);
    assert.equal(i1!.requestsPerSecond, 40);
    assert.equal(i1!.errorPercent, 40); // (10×10 + 50×30) / 40
    assert.equal(i1!.p99Ms, 9);
    assert.equal(i2!.ejected, true);
    assert.equal(i2!.ejectedUntil, '2026-01-01T00:00:10.000Z');
    assert.equal(i2!.errorPercent, null);
  });

  it('pools of different registries or subsets stay apart, in first-seen order', () => {
    const one = pool([instance('x', {})]);
    const other: PoolView = { ...one, subset: 'tags=v2' };
    const merged = mergeTrafficViews([{ routes: [], pools: [one, other] }, { routes: [], pools: [other, one] }]);
    assert.deepEqual(merged.pools.map((p) => p.subset), ['', 'tags=v2']);
  });

  it('no workers answering gives an empty view', () => {
    assert.deepEqual(mergeTrafficViews([]), { routes: [], pools: [] });
  });
});
