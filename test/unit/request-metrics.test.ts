import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayMetrics } from '../../src/observability/metrics.ts';

test('per-request series render as a Prometheus counter and a cumulative histogram', async () => {
  const metrics = new GatewayMetrics({ processMetrics: false });
  metrics.requests.inc('hello', 'GET', 200);
  metrics.requests.inc('hello', 'GET', 200);
  metrics.requests.inc('(none)', 'POST', 404);
  metrics.requestDuration.observe('hello', 0.002);
  metrics.requestDuration.observe('hello', 0.2);
  metrics.requestDuration.observe('hello', 99);
  const lines = (await metrics.registry.metrics()).split('\n');
  assert.ok(lines.includes('# TYPE waygate_requests_total counter'));
  assert.ok(lines.includes('waygate_requests_total{route="hello",method="GET",code="200"} 2'));
  assert.ok(lines.includes('waygate_requests_total{route="(none)",method="POST",code="404"} 1'));
  assert.ok(lines.includes('# TYPE waygate_request_duration_seconds histogram'));
  assert.ok(lines.includes('waygate_request_duration_seconds_bucket{le="0.001",route="hello"} 0'));
  assert.ok(lines.includes('waygate_request_duration_seconds_bucket{le="0.0025",route="hello"} 1'));
  assert.ok(lines.includes('waygate_request_duration_seconds_bucket{le="0.25",route="hello"} 2'));
  assert.ok(lines.includes('waygate_request_duration_seconds_bucket{le="30",route="hello"} 2'));
  assert.ok(lines.includes('waygate_request_duration_seconds_bucket{le="+Inf",route="hello"} 3'));
  assert.ok(lines.includes('waygate_request_duration_seconds_count{route="hello"} 3'));
  assert.ok(lines.some((line) => line.startsWith('waygate_request_duration_seconds_sum{route="hello"} 99.20')));
});
