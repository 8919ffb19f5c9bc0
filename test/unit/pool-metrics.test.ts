import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import type { Instance } from '../../src/registry/types.ts';
import { BreakerClock } from '../../src/resilience/breakers.ts';
import { ServicePool } from '../../src/routing/service-pool.ts';

const breaker = { failureStatuses: ['5xx' as const], errorThresholdPercentage: 0, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs: 10_000 };
const outlier = { consecutiveFailures: 5, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 };
const instance = (id: string, tags: string[]): Instance => ({ id, url: `http://127.0.0.1:${id}`, weight: 1, tags });

function pool(metrics: GatewayMetrics, tags: string[]): ServicePool {
  return new ServicePool({ name: 'api', registry: 'consul', tags, circuitBreaker: breaker, outlierDetection: outlier, clock: new BreakerClock(() => 0), metrics, logger: pino({ level: 'silent' }) as unknown as Logger });
}

async function series(metrics: GatewayMetrics, name: string): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text.split('\n').filter((line) => line.startsWith(`${name}{`)).sort();
}

test('pools of one service with different tags keep separate gauge series, and retiring a pool deletes its series', async () => {
  const metrics = new GatewayMetrics({ processMetrics: false });
  const v1 = pool(metrics, ['v1']);
  const v2 = pool(metrics, ['v2', 'canary']);
  const snapshot = { service: 'api', instances: [instance('1', ['v1']), instance('2', ['v2', 'canary']), instance('3', ['v1'])], unhealthy: [] } as never;
  v1.update(snapshot);
  v2.update(snapshot);
  v1.runtime('1')!.breaker.permit()!.failure(); // opens: threshold 0 %, volume 1
  assert.deepEqual(await series(metrics, 'waygate_instances'), [
    'waygate_instances{service="api",tags="canary,v2",state="healthy"} 1',
    'waygate_instances{service="api",tags="canary,v2",state="unhealthy"} 0',
    'waygate_instances{service="api",tags="v1",state="healthy"} 2',
    'waygate_instances{service="api",tags="v1",state="unhealthy"} 0',
  ]);
  assert.deepEqual(await series(metrics, 'waygate_circuit_breaker_open'), ['waygate_circuit_breaker_open{service="api",tags="v1",instance="1"} 1']);

  v1.update({ service: 'api', instances: [instance('3', ['v1'])], unhealthy: [] } as never);
  assert.deepEqual(await series(metrics, 'waygate_circuit_breaker_open'), [], 'a removed instance takes its breaker series along');

  v1.close();
  assert.deepEqual(await series(metrics, 'waygate_instances'), [
    'waygate_instances{service="api",tags="canary,v2",state="healthy"} 1',
    'waygate_instances{service="api",tags="canary,v2",state="unhealthy"} 0',
  ]);
  v2.close();
  assert.deepEqual(await series(metrics, 'waygate_instances'), []);
});

test('attempt and retry counters render as Prometheus counters', async () => {
  const metrics = new GatewayMetrics({ processMetrics: false });
  const success = metrics.upstreamAttempts.series('api', 'success');
  success.inc();
  success.inc();
  metrics.upstreamAttempts.series('api', 'aborted').inc();
  metrics.retries.series('r').inc();
  const text = await metrics.registry.metrics();
  assert.match(text, /^# TYPE waygate_upstream_attempts_total counter$/m);
  assert.match(text, /^waygate_upstream_attempts_total\{service="api",outcome="success"\} 2$/m);
  assert.match(text, /^waygate_upstream_attempts_total\{service="api",outcome="aborted"\} 1$/m);
  assert.match(text, /^waygate_retries_total\{route="r"\} 1$/m);
});

test('a retired pool closing later does not take the series of the pool that replaced it (same service and subset)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { PoolRegistry } = await import('../../src/routing/pool-registry.ts');
  const metrics = new GatewayMetrics({ processMetrics: false });
  const snapshot = { service: 'api', instances: [instance('1', [])], unhealthy: [] } as never;
  const pools = new PoolRegistry({ clock: new BreakerClock(() => 0), metrics, logger: pino({ level: 'silent' }) as unknown as Logger, snapshotOf: () => snapshot });
  const spec = (volumeThreshold: number) => ({ service: 'api', watchKey: 'api', registry: 'consul', tags: [], circuitBreaker: { ...breaker, volumeThreshold }, outlierDetection: outlier });
  const old = pools.acquire({ poolKey: 'old', spec: spec(1), weight: 1 });
  // A reload changes the breaker settings: a new pool with the same labels, the old one retired.
  const replacement = pools.acquire({ poolKey: 'new', spec: spec(5), weight: 1 });
  pools.retainOnly(new Set([replacement]));
  assert.notEqual(old, replacement);
  t.mock.timers.tick(60_000);
  assert.deepEqual(await series(metrics, 'waygate_instances'), [
    'waygate_instances{service="api",tags="",state="healthy"} 1',
    'waygate_instances{service="api",tags="",state="unhealthy"} 0',
  ]);
});
