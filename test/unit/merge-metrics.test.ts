import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type Aggregation, mergeExpositions, monotonicFamilies } from '../../src/process/merge-metrics.ts';

/** One process's registry: a counter, a histogram, a gauge every process holds the same copy of, one it alone sets. */
function processRegistry(requests: number, seconds: number[], instances: number) {
  const registry = new Registry();
  const counter = new Counter({ name: 'reqs_total', help: 'requests', labelNames: ['route'], registers: [registry] });
  counter.inc({ route: 'a b' }, requests); // a space in a label value
  const histogram = new Histogram({ name: 'dur_seconds', help: 'durations', labelNames: ['route'], buckets: [0.1, 1], registers: [registry] });
  for (const value of seconds) histogram.observe({ route: 'a' }, value);
  new Gauge({ name: 'instances', help: 'copies', aggregator: 'max', registers: [registry] }).set(instances);
  new Gauge({ name: 'started', help: 'omitted', aggregator: 'omit', registers: [registry] }).set(1);
  return registry;
}

describe('merging the processes\' /metrics', () => {
  it('counters and histogram series add up; a gauge marked max takes the largest; omit drops the family', async () => {
    const a = processRegistry(3, [0.05, 0.5], 2);
    const b = processRegistry(4, [2], 2);
    const aggregationOf = (family: string): Aggregation => ((a.getSingleMetric(family) as { aggregator?: Aggregation } | undefined)?.aggregator ?? 'sum');
    const merged = mergeExpositions([await a.metrics(), await b.metrics()], aggregationOf);
    const value = (series: string) => Number(merged.split('\n').find((line) => line.startsWith(`${series} `))?.slice(series.length + 1));
    assert.equal(value('reqs_total{route="a b"}'), 7);
    assert.equal(value('dur_seconds_bucket{le="0.1",route="a"}'), 1);
    assert.equal(value('dur_seconds_bucket{le="1",route="a"}'), 2);
    assert.equal(value('dur_seconds_bucket{le="+Inf",route="a"}'), 3);
    assert.equal(value('dur_seconds_count{route="a"}'), 3);
    assert.equal(value('dur_seconds_sum{route="a"}'), 2.55);
    assert.equal(value('instances'), 2, 'not 4');
    assert.doesNotMatch(merged, /started/);
    assert.equal(merged.split('\n').filter((line) => line === '# TYPE reqs_total counter').length, 1, 'one header per family');
    // The result is itself valid text for the same parser: merging it alone changes nothing.
    assert.equal(mergeExpositions([merged], aggregationOf), merged);
  });

  it('a series only some processes have is kept as it is', () => {
    const merged = mergeExpositions(['# HELP x x\n# TYPE x counter\nx{w="1"} 5\n', '# HELP x x\n# TYPE x counter\nx{w="2"} 7\n'], () => 'sum');
    assert.match(merged, /^x\{w="1"\} 5$/m);
    assert.match(merged, /^x\{w="2"\} 7$/m);
  });

  it('what a dead worker keeps contributing: its counters and histograms, not its gauges', async () => {
    const registry = processRegistry(5, [0.5], 3);
    const kept = monotonicFamilies(await registry.metrics());
    assert.match(kept, /^reqs_total\{route="a b"\} 5$/m);
    assert.match(kept, /^dur_seconds_count\{route="a"\} 1$/m);
    assert.doesNotMatch(kept, /^instances/m);
    assert.doesNotMatch(kept, /^started/m);
    assert.equal(monotonicFamilies('# HELP g g\n# TYPE g gauge\ng 1\n'), '');
  });

  it('+Inf and -Inf survive a merge', () => {
    const merged = mergeExpositions(['# HELP x x\n# TYPE x gauge\nx{a="1"} +Inf\nx{a="2"} -Inf\n'], () => 'max');
    assert.match(merged, /^x\{a="1"\} \+Inf$/m);
    assert.match(merged, /^x\{a="2"\} -Inf$/m);
  });
});
