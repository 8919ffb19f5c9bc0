import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceStats } from '../../src/observability/instance-stats.ts';

test('rate, error share and p99 cover the last minute only', () => {
  const stats = new InstanceStats();
  assert.deepEqual(stats.summary(0), { requestsPerSecond: 0, errorPercent: null, p99Ms: null });
  const start = 1_000_000;
  for (let i = 0; i < 99; i++) stats.record(start + i, 3, false); // 99 fast answers (bucket ≤ 5 ms)
  stats.record(start + 100, 700, true); // one slow failure (bucket ≤ 1000 ms)
  assert.deepEqual(stats.summary(start + 200), { requestsPerSecond: 1.67, errorPercent: 1, p99Ms: 5 });
  stats.record(start + 300, 700, true);
  assert.equal(stats.summary(start + 400).p99Ms, 1_000, 'two slow answers of 101 reach the 99th percentile');
  assert.deepEqual(stats.summary(start + 61_000), { requestsPerSecond: 0, errorPercent: null, p99Ms: null }, 'a minute later nothing is left');
});

test('pools report the stats per instance in /admin/routes form', async () => {
  const { GatewayMetrics } = await import('../../src/observability/metrics.ts');
  const { ServicePool } = await import('../../src/routing/service-pool.ts');
  const { BreakerClock } = await import('../../src/resilience/breakers.ts');
  const { pino } = await import('pino');
  const pool = new ServicePool({
    name: 'svc', registry: 'static', tags: [],
    circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 50, volumeThreshold: 10, windowMs: 10_000, resetTimeoutMs: 10_000 },
    outlierDetection: { consecutiveFailures: 5, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 },
    clock: new BreakerClock(() => 0), metrics: new GatewayMetrics({ processMetrics: false }), logger: pino({ level: 'silent' }) as never,
  });
  pool.update({ name: 'svc', instances: [{ id: 'a', url: 'http://127.0.0.1:1', weight: 1, tags: [] }], unhealthy: [] });
  pool.recordOutcome('a', false, Date.now(), 12);
  const [row] = pool.describe(Date.now()).instances;
  assert.equal(row!.p99Ms, 20);
  assert.equal(row!.errorPercent, 0);
  assert.ok((row!.requestsPerSecond as number) > 0);
});
