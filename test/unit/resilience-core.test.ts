import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GATEWAY_ERRORS, GatewayError, errorBody } from '../../src/errors.ts';
import { HealthVerdict } from '../../src/registry/health-checker.ts';
import { BreakerClock, InstanceBreaker } from '../../src/resilience/breakers.ts';
import { OutlierDetector } from '../../src/resilience/outlier.ts';
import { RetryBudget } from '../../src/resilience/retry-budget.ts';
import { classifyAttemptError, failureStatusPredicate, isRetriableStatus, retryBackoffMs } from '../../src/resilience/retry-policy.ts';

const outlierConfig = { consecutiveFailures: 3, baseEjectionTimeMs: 1_000, maxEjectionTimeMs: 2_500, maxEjectionPercent: 50 };

describe('outlier detection', () => {
  test('N consecutive failures eject for base × times ejected, capped', () => {
    const detector = new OutlierDetector(outlierConfig);
    assert.equal(detector.recordFailure('a', 0, 4), undefined);
    assert.equal(detector.recordFailure('a', 0, 4), undefined);
    assert.equal(detector.recordFailure('a', 0, 4), 1_000);
    assert.equal(detector.isEjected('a', 999), true);
    assert.equal(detector.isEjected('a', 1_000), false);
    for (let i = 0; i < 3; i++) detector.recordFailure('a', 1_000, 4);
    assert.equal(detector.ejectedUntil('a', 1_000), 3_000);
    for (let i = 0; i < 3; i++) detector.recordFailure('a', 3_000, 4);
    assert.equal(detector.ejectedUntil('a', 3_000), 5_500, 'third ejection is capped at maxEjectionTime');
  });

  test('a success resets the consecutive count', () => {
    const detector = new OutlierDetector(outlierConfig);
    detector.recordFailure('a', 0, 4);
    detector.recordFailure('a', 0, 4);
    detector.recordSuccess('a');
    assert.equal(detector.recordFailure('a', 0, 4), undefined);
  });

  test('never more than maxEjectionPercent of the service is ejected', () => {
    const detector = new OutlierDetector(outlierConfig);
    for (const id of ['a', 'b', 'c']) for (let i = 0; i < 3; i++) detector.recordFailure(id, 0, 4);
    assert.equal(detector.ejectedCount(0), 2);
    assert.equal(detector.isEjected('c', 0), false);
  });
});

describe('retry budget', () => {
  test('minConcurrent retries in flight are always allowed', () => {
    const budget = new RetryBudget(20, 2);
    budget.requestStarted(0);
    const first = budget.tryAcquireRetry(0);
    assert.ok(first);
    assert.ok(budget.tryAcquireRetry(0));
    assert.equal(budget.tryAcquireRetry(0), undefined, '1 request in the window allows 0.2 retries');
    first.release();
    first.release();
    assert.equal(budget.retriesInFlight, 1, 'a slot is given back once, however often release is called');
    assert.ok(budget.tryAcquireRetry(0));
  });

  test('beyond that, retries over the window stay within percent of the requests in it', () => {
    const budget = new RetryBudget(20, 0, 10_000);
    for (let i = 0; i < 50; i++) budget.requestStarted(5_000);
    let granted = 0;
    while (budget.tryAcquireRetry(5_000) !== undefined) granted += 1;
    assert.equal(granted, 10, '20 % of 50');
  });

  test('old requests leave the window', () => {
    const budget = new RetryBudget(20, 0, 10_000);
    for (let i = 0; i < 50; i++) budget.requestStarted(0);
    assert.ok(budget.tryAcquireRetry(9_999));
    assert.equal(budget.tryAcquireRetry(20_000), undefined, 'the 50 requests are 20 s old');
  });

  test('exempt retries still count toward the window', () => {
    const budget = new RetryBudget(20, 0, 10_000);
    for (let i = 0; i < 10; i++) budget.requestStarted(0);
    budget.recordExemptRetry(0);
    budget.recordExemptRetry(0);
    assert.equal(budget.tryAcquireRetry(0), undefined, '2 of 10 already used');
  });
});

describe('retry policy', () => {
  test('connect failures, timeouts and other errors are told apart through causes', () => {
    assert.equal(classifyAttemptError({ code: 'X_WRAPPER', cause: { code: 'ECONNREFUSED' } }), 'connect-failure');
    assert.equal(classifyAttemptError({ code: 'UND_ERR_SOCKET' }), 'reset');
    assert.equal(classifyAttemptError({ code: 'X_WRAPPER', cause: { code: 'ECONNRESET' } }), 'reset');
    assert.equal(classifyAttemptError({ code: 'UND_ERR_CONNECT_TIMEOUT' }), 'connect-failure');
    assert.equal(classifyAttemptError({ code: 'ENOTFOUND' }), 'connect-failure');
    assert.equal(classifyAttemptError({ code: 'UND_ERR_HEADERS_TIMEOUT' }), 'timeout');
    assert.equal(classifyAttemptError({ code: 'HPE_INVALID_STATUS' }), 'invalid-response');
    assert.equal(classifyAttemptError({ code: 'UND_ERR_HEADERS_OVERFLOW' }), 'invalid-response');
    assert.equal(classifyAttemptError(new Error('boom')), 'other');
  });

  test('statuses retry only for idempotent methods and only when listed', () => {
    assert.equal(isRetriableStatus('GET', 503, ['connect-failure', '503']), true);
    assert.equal(isRetriableStatus('GET', 502, ['connect-failure', '503']), false);
    assert.equal(isRetriableStatus('POST', 503, ['503']), false);
    assert.equal(isRetriableStatus('GET', 500, ['503']), false);
  });

  test('failureStatuses: "5xx" covers 500-599; single codes add to it', () => {
    const fails = failureStatusPredicate(['5xx', 429]);
    assert.deepEqual([200, 404, 429, 499, 500, 503, 599, 600].map(fails), [false, false, true, false, true, true, true, false]);
    const only503 = failureStatusPredicate([503]);
    assert.deepEqual([500, 503].map(only503), [false, true]);
  });

  test('backoff is small and jittered', () => {
    assert.equal(retryBackoffMs(1, () => 0), 0);
    assert.equal(retryBackoffMs(2, () => 0.5), 10);
    assert.equal(retryBackoffMs(99, () => 0.999), 49);
  });
});

describe('circuit breaker (per instance, injected clock)', () => {
  const config = { failureStatuses: ['5xx' as const], errorThresholdPercentage: 50, volumeThreshold: 4, windowMs: 10_000, resetTimeoutMs: 50 };

  test('opens past the error threshold, rejects while open, and lets exactly one trial through when half-open', () => {
    let now = 1_000;
    const states: string[] = [];
    const breaker = new InstanceBreaker(config, new BreakerClock(() => now), (state) => states.push(state));
    for (let i = 0; i < 3; i++) breaker.permit()!.failure();
    assert.equal(breaker.state, 'closed', 'below volumeThreshold');
    breaker.permit()!.failure();
    assert.equal(breaker.state, 'open');
    assert.equal(breaker.permit(), undefined);
    now += 49;
    assert.equal(breaker.state, 'open');
    now += 1;
    assert.equal(breaker.state, 'half-open');
    const trial = breaker.permit();
    assert.ok(trial);
    assert.equal(breaker.permit(), undefined, 'a second request during the trial is rejected');
    trial.success();
    assert.equal(breaker.state, 'closed');
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
  });

  test('a failed trial reopens; a released trial frees the trial; stale permits cannot move the breaker', () => {
    let now = 0;
    const breaker = new InstanceBreaker(config, new BreakerClock(() => now), () => {});
    const stale = breaker.permit()!;
    for (let i = 0; i < 4; i++) breaker.permit()!.failure();
    now += 50;
    const released = breaker.permit()!;
    released.release();
    const trial = breaker.permit()!;
    assert.ok(trial, 'released trial is available again');
    stale.success();
    assert.equal(breaker.state, 'half-open', 'a permit from the closed period does not close it');
    trial.failure();
    assert.equal(breaker.state, 'open');
    released.success();
    assert.equal(breaker.state, 'open', 'a settled permit has no second say');
  });

  test('failures older than the window are forgotten; successes dilute the error rate', () => {
    let now = 0;
    const breaker = new InstanceBreaker(config, new BreakerClock(() => now), () => {});
    for (let i = 0; i < 3; i++) breaker.permit()!.failure();
    now += 10_000;
    breaker.permit()!.failure();
    assert.equal(breaker.state, 'closed', 'the first three left the window');
    for (let i = 0; i < 4; i++) breaker.permit()!.success();
    breaker.permit()!.failure();
    assert.equal(breaker.state, 'closed', '2 of 6 failed: 33 % is under 50 %');
  });
});

test('health verdicts flip after the configured thresholds only', () => {
  const verdict = new HealthVerdict(2, 2);
  assert.equal(verdict.record(false), false);
  assert.equal(verdict.record(false), true);
  assert.equal(verdict.healthy, false);
  assert.equal(verdict.record(true), false);
  assert.equal(verdict.record(true), true);
  assert.equal(verdict.healthy, true);
});

test('every catalogue error renders the one JSON shape', () => {
  for (const code of Object.keys(GATEWAY_ERRORS) as Array<keyof typeof GATEWAY_ERRORS>) {
    const error = new GatewayError(code);
    assert.equal(error.status, GATEWAY_ERRORS[code].status);
    assert.deepEqual(JSON.parse(errorBody(error, 'r-1')), { error: { code, message: GATEWAY_ERRORS[code].message, requestId: 'r-1' } });
  }
});
