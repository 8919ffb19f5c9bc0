import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import type { Instance } from '../../src/registry/types.ts';
import { BreakerClock } from '../../src/resilience/breakers.ts';
import { ServicePool } from '../../src/routing/service-pool.ts';
import { waitFor } from '../support/gateway.ts';

const instance = (id: string): Instance => ({ id, url: `http://127.0.0.1:${id}`, weight: 1, tags: [] });

function poolOf(ids: string[], resetTimeoutMs: number): { pool: ServicePool; clock: BreakerClock } {
  const clock = new BreakerClock();
  const pool = new ServicePool({
    name: 'svc',
    registry: 'static',
    tags: [],
    circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 50, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs },
    outlierDetection: { consecutiveFailures: 1000, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 },
    clock,
    metrics: new GatewayMetrics({ processMetrics: false }),
    logger: createLogger('silent'),
  });
  pool.update({ name: 'svc', instances: ids.map(instance), unhealthy: [] });
  return { pool, clock };
}

async function trip(pool: ServicePool, id: string): Promise<void> {
  pool.runtime(id)!.breaker.permit()!.failure();
  await waitFor(`breaker ${id} open`, () => pool.runtime(id)!.breaker.state === 'open');
}

test('below the panic threshold with a closed breaker left, every healthy instance is a candidate', async () => {
  const { pool, clock } = poolOf(['1', '2', '3', '4'], 60_000);
  try {
    for (const id of ['1', '2', '3']) await trip(pool, id);
    const selection = pool.select(undefined, 50, Date.now());
    assert.equal(selection.kind, 'candidates');
    assert.deepEqual(selection.kind === 'candidates' && [selection.panic, selection.candidates.map((i) => i.id)], [true, ['1', '2', '3', '4']]);
  } finally {
    pool.close();
    clock.stop();
  }
});

test('with no closed breaker left, only the half-open trial is offered: no panic routing to open instances', async () => {
  const { pool, clock } = poolOf(['1', '2', '3'], 400);
  try {
    await trip(pool, '1');
    await new Promise((resolve) => setTimeout(resolve, 250));
    await trip(pool, '2');
    await trip(pool, '3');
    await waitFor('breaker 1 half-open', () => pool.runtime('1')!.breaker.state === 'half-open');
    assert.equal(pool.runtime('2')!.breaker.state, 'open', 'the others are still open (test timing)');
    const selection = pool.select(undefined, 50, Date.now());
    assert.deepEqual(selection.kind === 'candidates' && [selection.panic, selection.candidates.map((i) => i.id)], [false, ['1']]);
    const afterTrial = pool.select(new Set(['1']), 50, Date.now());
    assert.equal(afterTrial.kind, 'circuit-open');
  } finally {
    pool.close();
    clock.stop();
  }
});

test('every breaker open: circuit-open with seconds until the next trial', async () => {
  const { pool, clock } = poolOf(['1', '2'], 5_000);
  try {
    await trip(pool, '1');
    await trip(pool, '2');
    const selection = pool.select(undefined, 50, Date.now());
    assert.deepEqual(selection, { kind: 'circuit-open', retryAfterSeconds: 5 });
  } finally {
    pool.close();
    clock.stop();
  }
});
