import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { RouteConfig } from '../../src/config/types.ts';
import { GatewayError } from '../../src/errors.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { Attempt } from '../../src/proxy/attempt.ts';
import { type ClientSide, Exchange, type ExchangeEnv, type UpstreamSide } from '../../src/proxy/exchange.ts';
import type { Instance } from '../../src/registry/types.ts';
import { BreakerClock } from '../../src/resilience/breakers.ts';
import { RetryBudget } from '../../src/resilience/retry-budget.ts';
import { failureStatusPredicate } from '../../src/resilience/retry-policy.ts';
import { createBalancer } from '../../src/routing/balancers/index.ts';
import { ServicePool } from '../../src/routing/service-pool.ts';
import type { RouteEntry } from '../../src/routing/table.ts';
import { configFromYaml } from '../support/gateway.ts';

/** What the fake client saw: the tests assert there is exactly one response of one kind. */
class FakeClient implements ClientSide {
  gone = false;
  events: string[] = [];
  respond(status: number): boolean {
    this.events.push(`respond ${status}`);
    return true;
  }
  write(): boolean {
    this.events.push('write');
    return true;
  }
  whenDrained(): void {}
  end(): void {
    this.events.push('end');
  }
  cut(): void {
    this.events.push('cut');
  }
  fail(error: GatewayError): void {
    this.events.push(`fail ${error.status} ${error.code}`);
  }
  /** Responses started: a respond, or a gateway error. */
  get answers(): number {
    return this.events.filter((event) => event.startsWith('respond') || event.startsWith('fail')).length;
  }
}

/** Hands each attempt to the test instead of the network; `aborts` counts upstream cancellations. */
class FakeUpstream implements UpstreamSide {
  sent: Array<{ attempt: Attempt; instance: Instance; aborts: number }> = [];
  /** False: undici has not handed the attempt a socket yet, so there is no abort function. */
  connectOnSend = true;
  send(attempt: Attempt, instance: Instance, _pool?: unknown): void {
    const record = { attempt, instance, aborts: 0 };
    this.sent.push(record);
    if (this.connectOnSend) attempt.onConnect(() => { record.aborts += 1; });
  }
  get last() {
    return this.sent.at(-1)!;
  }
}

const RESET = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
const REFUSED = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const HEADERS_TIMEOUT = Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' });

interface Harness {
  exchange: Exchange;
  client: FakeClient;
  upstream: FakeUpstream;
  pool: ServicePool;
  budget: RetryBudget;
  metrics: GatewayMetrics;
  timers: Array<() => void>;
  clock: { now: number };
}

function routeOf(extra: string): RouteConfig {
  return configFromYaml(`
registry: { static: { services: { svc: { instances: ["http://127.0.0.1:1"] } } } }
routes:
  - name: r
    match: { pathPrefix: /x }
    service: svc
${extra}`).routes[0]!;
}

function harness(options: { method?: string; replayable?: boolean; instances?: number; route?: string } = {}): Harness {
  const clock = { now: 1_000_000 };
  const route = routeOf(options.route ?? '    retries: 2\n    circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 1s }');
  const metrics = new GatewayMetrics({ processMetrics: false });
  const pool = new ServicePool({
    name: 'svc',
    registry: 'static',
    tags: [],
    circuitBreaker: route.circuitBreaker,
    outlierDetection: route.outlierDetection,
    clock: new BreakerClock(() => clock.now),
    metrics,
    logger: pino({ level: 'silent' }) as unknown as Logger,
  });
  const instances = Array.from({ length: options.instances ?? 3 }, (_, i): Instance => ({ id: `i${i}`, url: `http://127.0.0.1:${1000 + i}`, weight: 1, tags: [] }));
  pool.update({ service: 'svc', instances, unhealthy: [] } as never);
  const budget = new RetryBudget(route.retryBudget.percent, route.retryBudget.minConcurrent);
  const entry: RouteEntry = { route, pool, balancer: createBalancer('round-robin', { inflight: (id) => pool.inflight(id), random: Math.random }), budget };
  const timers: Array<() => void> = [];
  const env: ExchangeEnv = {
    now: () => clock.now,
    random: () => 0.99,
    setTimer: (fn) => { timers.push(fn); return fn; },
    clearTimer: (handle) => { const at = timers.indexOf(handle as () => void); if (at !== -1) timers.splice(at, 1); },
    countRetry: () => {},
    isFailureStatus: failureStatusPredicate(route.circuitBreaker.failureStatuses),
    load: { inflight: 0 },
  };
  const client = new FakeClient();
  const upstream = new FakeUpstream();
  const exchange = new Exchange(entry, { method: options.method ?? 'GET', hashKey: undefined, replayable: options.replayable ?? true }, client, upstream, env);
  return { exchange, client, upstream, pool, budget, metrics, timers, clock };
}

/** Runs the pending backoff timers, as the event loop would. */
function runTimers(h: Harness): void {
  while (h.timers.length > 0) h.timers.shift()!();
}

async function attemptCount(metrics: GatewayMetrics, outcome: string): Promise<number> {
  const values = (await metrics.upstreamAttempts.get()).values;
  return values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
}

function inflightTotal(h: Harness): number {
  return ['i0', 'i1', 'i2'].reduce((sum, id) => sum + h.pool.inflight(id), 0);
}

describe('an attempt settles once', () => {
  test('settle is idempotent: the first outcome wins and every hold is given back once', async () => {
    const h = harness();
    h.exchange.start();
    const { attempt } = h.upstream.last;
    assert.equal(h.pool.inflight('i0'), 1);
    assert.equal(attempt.settle('success'), true);
    assert.equal(attempt.settle('failure'), false);
    assert.equal(attempt.settle('aborted'), false);
    assert.equal(attempt.settledAs, 'success');
    assert.equal(h.pool.inflight('i0'), 0);
    assert.equal(await attemptCount(h.metrics, 'success'), 1);
    assert.equal(await attemptCount(h.metrics, 'failure'), 0);
  });
});

describe('orderings of events on one exchange', () => {
  test('abort before any upstream callback: settled aborted, the late connect is cancelled, late errors dropped', async () => {
    const h = harness();
    h.upstream.connectOnSend = false;
    h.exchange.start();
    h.client.gone = true;
    h.exchange.clientClosed();
    const { attempt } = h.upstream.last;
    let cancelled = 0;
    attempt.onConnect(() => { cancelled += 1; });
    attempt.onError(RESET);
    assert.equal(cancelled, 1);
    assert.equal(attempt.settledAs, 'aborted');
    assert.equal(h.exchange.aborted, true);
    assert.equal(h.client.answers, 0);
    assert.equal(h.pool.runtime('i0')!.breaker.state, 'closed');
    assert.equal(await attemptCount(h.metrics, 'aborted'), 1);
    assert.equal(inflightTotal(h), 0);
  });

  test('abort while waiting for headers cancels the upstream request; headers that still arrive are refused', () => {
    const h = harness();
    h.exchange.start();
    const sent = h.upstream.last;
    h.exchange.clientClosed();
    assert.equal(sent.aborts, 1);
    assert.equal(sent.attempt.onHeaders(200, [], () => {}), false);
    assert.equal(h.client.answers, 0);
    assert.equal(inflightTotal(h), 0);
  });

  test('abort after headers, mid-body: aborted, upstream cancelled, later data dropped, no verdict', () => {
    const h = harness();
    h.exchange.start();
    const sent = h.upstream.last;
    sent.attempt.onHeaders(500, [], () => {});
    sent.attempt.onData(Buffer.from('part'));
    h.exchange.clientClosed();
    assert.equal(sent.attempt.settledAs, 'aborted', 'a 500 whose client left is not counted as a failure');
    assert.equal(sent.aborts, 1);
    assert.equal(sent.attempt.onData(Buffer.from('late')), false);
    sent.attempt.onComplete();
    assert.deepEqual(h.client.events, ['respond 500', 'write']);
    assert.equal(h.pool.runtime('i0')!.breaker.state, 'closed');
  });

  test('a reset before the first byte moves a GET to another instance; exactly one response', async () => {
    const h = harness();
    h.exchange.start();
    const first = h.upstream.last;
    first.attempt.onError(RESET);
    runTimers(h);
    assert.equal(h.upstream.sent.length, 2);
    assert.notEqual(h.upstream.last.instance.id, first.instance.id);
    const second = h.upstream.last.attempt;
    second.onHeaders(200, [], () => {});
    second.onComplete();
    first.attempt.onComplete(); // a late callback from the dead attempt
    assert.deepEqual(h.client.events, ['respond 200', 'end']);
    assert.equal(first.attempt.settledAs, 'failure');
    assert.equal(second.settledAs, 'success');
    assert.equal(h.budget.retriesInFlight, 0, 'the retry slot went back when the retry settled');
    assert.equal(inflightTotal(h), 0);
  });

  test('a reset before the first byte answers a POST with 502: it may have been processed', () => {
    const h = harness({ method: 'POST' });
    h.exchange.start();
    h.upstream.last.attempt.onError(RESET);
    runTimers(h);
    assert.equal(h.upstream.sent.length, 1);
    assert.deepEqual(h.client.events, ['fail 502 UPSTREAM_UNAVAILABLE']);
  });

  test('a refused connection retries even a POST (it never reached an instance), without taking a budget slot', () => {
    const h = harness({ method: 'POST' });
    h.exchange.start();
    h.upstream.last.attempt.onError(REFUSED);
    runTimers(h);
    assert.equal(h.upstream.sent.length, 2);
    assert.equal(h.budget.retriesInFlight, 0);
  });

  test('a streamed body is never resent', () => {
    const h = harness({ replayable: false });
    h.exchange.start();
    h.upstream.last.attempt.onError(REFUSED);
    assert.equal(h.upstream.sent.length, 1);
    assert.deepEqual(h.client.events, ['fail 502 UPSTREAM_UNAVAILABLE']);
  });

  test('a reset after the first byte cuts the client connection: no error body after a started response', () => {
    const h = harness();
    h.exchange.start();
    const sent = h.upstream.last;
    sent.attempt.onHeaders(200, [], () => {});
    sent.attempt.onData(Buffer.from('half'));
    sent.attempt.onError(RESET);
    h.exchange.clientClosed(); // the cut closes the client response
    assert.deepEqual(h.client.events, ['respond 200', 'write', 'cut']);
    assert.equal(sent.attempt.settledAs, 'failure');
    assert.equal(h.exchange.aborted, false, 'the gateway cut it, the client did not leave');
  });

  test('a timeout answers 504 once and is a verdict on the instance; late callbacks are dropped', async () => {
    const h = harness();
    h.exchange.start();
    const sent = h.upstream.last;
    sent.attempt.onError(HEADERS_TIMEOUT);
    sent.attempt.onHeaders(200, [], () => {});
    sent.attempt.onComplete();
    sent.attempt.onError(RESET);
    assert.deepEqual(h.client.events, ['fail 504 UPSTREAM_TIMEOUT']);
    assert.equal(sent.attempt.settledAs, 'timeout');
    assert.equal(h.pool.runtime('i0')!.breaker.state, 'open', 'volumeThreshold 1, threshold 0 %');
    assert.equal(await attemptCount(h.metrics, 'timeout'), 1);
  });

  test('the client leaving during a retry backoff cancels the timer and gives back the retry slot', () => {
    const h = harness();
    h.exchange.start();
    h.upstream.last.attempt.onError(RESET);
    assert.equal(h.timers.length, 1, 'a backoff is pending (random 0.99)');
    assert.equal(h.budget.retriesInFlight, 1);
    h.exchange.clientClosed();
    assert.equal(h.timers.length, 0);
    assert.equal(h.budget.retriesInFlight, 0);
    assert.equal(h.upstream.sent.length, 1);
  });

  test('a status outside 200-599 (after informational ones) is one 502 UPSTREAM_INVALID_RESPONSE', () => {
    const h = harness();
    h.exchange.start();
    const sent = h.upstream.last;
    assert.equal(sent.attempt.onHeaders(103, [], () => {}), true, '103 Early Hints is skipped');
    assert.equal(sent.attempt.onHeaders(600, [], () => {}), false);
    sent.attempt.onData(Buffer.from('x'));
    sent.attempt.onComplete();
    assert.deepEqual(h.client.events, ['fail 502 UPSTREAM_INVALID_RESPONSE']);
    assert.equal(sent.aborts, 1, 'the upstream request is cancelled');
  });

  test('503 listed in retryOn: an idempotent request moves on; the failed answer is never relayed', () => {
    const h = harness({ route: '    retries: 1\n    retryOn: [503]' });
    h.exchange.start();
    h.upstream.last.attempt.onHeaders(503, [], () => {});
    runTimers(h);
    const second = h.upstream.last.attempt;
    second.onHeaders(503, [], () => {});
    second.onComplete();
    assert.deepEqual(h.client.events, ['respond 503', 'end'], 'out of retries: the last answer goes through');
  });
});

describe('breaker permits', () => {
  test('an aborted half-open trial leaves the breaker half-open with its trial free again', () => {
    const h = harness({ instances: 1 });
    h.exchange.start();
    h.upstream.last.attempt.onError(HEADERS_TIMEOUT);
    const breaker = h.pool.runtime('i0')!.breaker;
    assert.equal(breaker.state, 'open');
    h.clock.now += 1_000;
    assert.equal(breaker.state, 'half-open');
    const next = new Exchange(h.exchange['entry' as never], { method: 'GET', hashKey: undefined, replayable: true }, h.client, h.upstream, h.exchange['env' as never]);
    next.start();
    assert.equal(breaker.permit(), undefined, 'the trial is taken');
    next.clientClosed();
    assert.equal(breaker.state, 'half-open', 'an abort never closes a half-open breaker');
    const again = breaker.permit();
    assert.ok(again, 'the trial can be taken again');
    again.success();
    assert.equal(breaker.state, 'closed');
  });
});
