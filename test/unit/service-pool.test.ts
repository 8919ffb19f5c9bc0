import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import type { Instance } from '../../src/registry/types.ts';
import { BreakerClock } from '../../src/resilience/breakers.ts';
import { ServicePool } from '../../src/routing/service-pool.ts';

const instance = (id: string): Instance => ({ id, url: `http://127.0.0.1:${id}`, weight: 1, tags: [] });

/** Any fixed instant: the tests that depend on time run on node:test's mocked clock from here. */
const START = 1_000_000;

interface TestPool {
  pool: ServicePool;
  clock: BreakerClock;
  /** Opens the breaker of `id` with one failure and resolves once it reports 'open'. */
  trip(id: string): Promise<void>;
  /** Resolves once the breaker of `id` is in `state`, re-checked on every state change the pool reports. */
  untilState(id: string, state: string): Promise<void>;
}

/**
 * A pool whose breaker state changes are observed through the pool's own state-change callback (its
 * "circuit breaker <state>" log lines, written synchronously to this logger), so tests wait on events
 * rather than sleep or poll.
 */
function poolOf(ids: string[], resetTimeoutMs: number): TestPool {
  const listeners = new Set<() => void>();
  const logger = pino({ level: 'warn' }, {
    write: (line: string) => {
      if ('breaker' in (JSON.parse(line) as Record<string, unknown>)) for (const listener of [...listeners]) listener();
    },
  }) as unknown as Logger;
  const clock = new BreakerClock();
  const pool = new ServicePool({
    name: 'svc',
    registry: 'static',
    tags: [],
    circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 50, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs },
    outlierDetection: { consecutiveFailures: 1000, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 },
    clock,
    metrics: new GatewayMetrics({ processMetrics: false }),
    logger,
  });
  pool.update({ name: 'svc', instances: ids.map(instance), unhealthy: [] });
  const untilState = (id: string, state: string) => new Promise<void>((resolve) => {
    const check = () => {
      if (pool.runtime(id)!.breaker.state !== state) return;
      listeners.delete(check);
      resolve();
    };
    listeners.add(check);
    check();
  });
  const trip = async (id: string) => {
    const permit = pool.runtime(id)!.breaker.permit();
    assert.ok(permit, `breaker ${id} lets an attempt through before it is tripped`);
    permit.failure();
    await untilState(id, 'open');
  };
  return { pool, clock, trip, untilState };
}

test('below the panic threshold with a closed breaker left, every healthy instance is a candidate', async () => {
  const { pool, clock, trip } = poolOf(['1', '2', '3', '4'], 60_000);
  try {
    for (const id of ['1', '2', '3']) await trip(id);
    const selection = pool.select(undefined, 50, Date.now());
    assert.equal(selection.kind, 'candidates');
    assert.deepEqual(selection.kind === 'candidates' && [selection.panic, selection.candidates.map((i) => i.id)], [true, ['1', '2', '3', '4']]);
  } finally {
    pool.close();
    clock.stop();
  }
});

test('with no closed breaker left, only the half-open trial is offered: no panic routing to open instances', async (t) => {
  // Time is stepped by hand, so which breaker has reached its resetTimeout is fixed by construction.
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: START });
  const { pool, clock, trip, untilState } = poolOf(['1', '2', '3'], 400);
  try {
    await trip('1'); // open at START: half-open from START + 400
    t.mock.timers.tick(250);
    await trip('2'); // open at START + 250: half-open from START + 650
    await trip('3');
    t.mock.timers.tick(150); // START + 400
    await untilState('1', 'half-open');
    assert.equal(pool.runtime('2')!.breaker.state, 'open', 'breaker 2 has 250 ms of its resetTimeout left');
    assert.equal(pool.runtime('3')!.breaker.state, 'open', 'breaker 3 has 250 ms of its resetTimeout left');
    const selection = pool.select(undefined, 50, Date.now());
    assert.deepEqual(selection.kind === 'candidates' && [selection.panic, selection.candidates.map((i) => i.id)], [false, ['1']]);
    const afterTrial = pool.select(new Set(['1']), 50, Date.now());
    assert.equal(afterTrial.kind, 'circuit-open');
  } finally {
    pool.close();
    clock.stop();
  }
});

test('every breaker open: circuit-open with seconds until the next trial', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: START });
  const { pool, clock, trip } = poolOf(['1', '2'], 5_000);
  try {
    await trip('1');
    await trip('2');
    const selection = pool.select(undefined, 50, Date.now());
    assert.deepEqual(selection, { kind: 'circuit-open', retryAfterSeconds: 5 });
    t.mock.timers.tick(1_500);
    assert.deepEqual(pool.select(undefined, 50, Date.now()), { kind: 'circuit-open', retryAfterSeconds: 4 }, 'rounded up: 3.5 s left');
  } finally {
    pool.close();
    clock.stop();
  }
});
