import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { adminRoutes, configFromYaml, metricValue, rawRequest, type RunningGateway, startGateway } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

let a: TestUpstream;
let b: TestUpstream;
let catchAll: TestUpstream;
let gw: RunningGateway;
let rootGw: RunningGateway;
let startedAtSeconds: number;

before(async () => {
  startedAtSeconds = Math.floor(Date.now() / 1000);
  a = await startUpstream('a');
  b = await startUpstream('b');
  catchAll = await startUpstream('catch-all');
  gw = await startGateway(`
registry:
  static:
    services:
      hello:
        instances: ["${a.url}", { url: "${b.url}", weight: 3 }]
routes:
  - name: hello
    match: { pathPrefix: /hello }
    service: hello
    stripPrefix: true
    timeout: 7s
    retries: 1
`);
  rootGw = await startGateway(`
registry:
  static:
    services:
      everything: { instances: ["${catchAll.url}"] }
routes:
  - { name: everything, match: { pathPrefix: / }, service: everything }
`);
});

after(async () => {
  await gw?.stop();
  await rootGw?.stop();
  await Promise.all([a, b, catchAll].map((u) => u?.close()));
});

describe('health endpoints', () => {
  test('GET /health/live -> 200 {"status":"UP"}', async () => {
    const response = await fetch(`${gw.adminUrl}/health/live`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get('content-type')), /^application\/json/);
    assert.deepEqual(await response.json(), { status: 'UP' });
  });

  test('GET /health/ready -> 200 {"status":"UP"} once started', async () => {
    const response = await fetch(`${gw.adminUrl}/health/ready`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'UP' });
  });

  test('/health/ready turns 503 DOWN the moment shutdown begins, while live stays UP and traffic is still served', async () => {
    const upstream = await startUpstream('drain');
    const yaml = `server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drainDelay: 30s, timeout: 5s }
registry:
  static:
    services:
      drain: { instances: ["${upstream.url}"] }
routes:
  - { name: drain, match: { pathPrefix: /d }, service: drain }
`;
    // The drain delay ends when the test says so, never because a clock ran out.
    let endDrain: () => void = () => {};
    const drained = new Promise<void>((resolve) => { endDrain = resolve; });
    const gateway = new Gateway(configFromYaml(yaml), { logger: createLogger('silent'), metrics: new GatewayMetrics({ processMetrics: false }), sleep: () => drained });
    let stopping: Promise<void> | undefined;
    try {
      await gateway.start();
      const admin = gateway.adminAddress;
      const pub = gateway.publicAddress;
      assert.equal((await fetch(`${admin}/health/ready`)).status, 200);
      stopping = gateway.stop();
      // no await in between: the very first look after stop() began must already be 503
      const ready = await fetch(`${admin}/health/ready`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { status: string; reason?: unknown };
      assert.equal(body.status, 'DOWN');
      assert.equal(typeof body.reason, 'string');
      const live = await fetch(`${admin}/health/live`);
      assert.equal(live.status, 200);
      assert.deepEqual(await live.json(), { status: 'UP' });
      const served = await rawRequest(pub, { path: '/d/x' });
      assert.equal(served.status, 200, 'still served during drainDelay');
      assert.equal(upstream.received.at(-1)?.url, '/d/x');
    } finally {
      endDrain();
      await (stopping ?? gateway.stop());
      await upstream.close();
    }
  });
});

describe('/metrics', () => {
  test('Prometheus text with the request, duration, attempt, instance and registry series', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await fetch(`${gw.url}/hello/m`)).status, 200);
    assert.equal((await fetch(`${gw.url}/hello/m`, { method: 'POST', body: 'x' })).status, 200);
    assert.equal((await fetch(`${gw.url}/nope`)).status, 404);

    const response = await fetch(`${gw.adminUrl}/metrics`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get('content-type')), /^text\/plain/);
    const text = await response.text();
    assert.match(text, /^# TYPE waygate_requests_total counter$/m);
    assert.match(text, /^# TYPE waygate_request_duration_seconds histogram$/m);
    assert.match(text, /^# TYPE waygate_upstream_attempts_total counter$/m);
    assert.match(text, /^# TYPE waygate_instances gauge$/m);
    assert.match(text, /^# TYPE waygate_registry_syncs_total counter$/m);
    assert.match(text, /^# TYPE waygate_registry_last_sync_timestamp_seconds gauge$/m);

    assert.equal(await metricValue(gw.adminUrl, 'waygate_requests_total', { route: 'hello', method: 'GET', code: '200' }), 4);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_requests_total', { route: 'hello', method: 'POST', code: '200' }), 1);
    assert.match(text, /^waygate_requests_total\{[^}]*method="GET"[^}]*code="404"[^}]*\} 1$/m);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_request_duration_seconds_count', { route: 'hello' }), 5);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_request_duration_seconds_bucket', { route: 'hello', le: '+Inf' }), 5);
    const sum = await metricValue(gw.adminUrl, 'waygate_request_duration_seconds_sum', { route: 'hello' });
    assert.ok(sum !== undefined && sum > 0);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { service: 'hello', outcome: 'success' }), 5);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_instances', { service: 'hello', state: 'healthy' }), 2);
    const syncs = await metricValue(gw.adminUrl, 'waygate_registry_syncs_total', { registry: 'static' });
    assert.ok(syncs !== undefined && syncs >= 1, `syncs=${syncs}`);
    const lastSync = await metricValue(gw.adminUrl, 'waygate_registry_last_sync_timestamp_seconds', { registry: 'static' });
    assert.ok(lastSync !== undefined && lastSync >= startedAtSeconds && lastSync <= Date.now() / 1000 + 1, `lastSync=${lastSync}`);
    const errors = await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'static' });
    assert.ok(errors === undefined || errors === 0, `no registry errors expected, got ${errors}`);
  });

  test('failed attempts are counted by outcome', async () => {
    await a.kill();
    try {
      // with one instance down, every request still succeeds (connect failures move on to b)
      for (let i = 0; i < 4; i++) assert.equal((await fetch(`${gw.url}/hello/f`)).status, 200);
      const failures = await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { service: 'hello', outcome: 'failure' });
      assert.ok(failures !== undefined && failures >= 1, `failures=${failures}`);
    } finally {
      await a.restore();
    }
  });
});

describe('/admin/routes', () => {
  test('lists routes and services with their instances', async () => {
    const view = await adminRoutes(gw.adminUrl);
    assert.equal(view.routes.length, 1);
    const route = view.routes[0]!;
    assert.equal(route.name, 'hello');
    assert.equal(route.service, 'hello');
    assert.equal(route.stripPrefix, true);
    assert.deepEqual(route.match, { pathPrefix: '/hello' });
    assert.deepEqual(Object.keys(view.services), ['hello']);
    const instances = view.services.hello!.instances;
    assert.equal(instances.length, 2);
    const byUrl = new Map(instances.map((instance) => [instance.url, instance]));
    for (const [upstream, weight] of [[a, 1], [b, 3]] as const) {
      const instance = byUrl.get(upstream.url);
      assert.ok(instance, `${upstream.url} is listed`);
      assert.equal(typeof instance.id, 'string');
      assert.equal(instance.healthy, true);
      assert.equal(instance.breaker, 'closed');
      assert.equal(instance.weight, weight);
    }
  });

  test('answers JSON', async () => {
    const response = await fetch(`${gw.adminUrl}/admin/routes`);
    assert.match(String(response.headers.get('content-type')), /^application\/json/);
  });
});

describe('admin and public listeners are separate', () => {
  for (const path of ['/health/live', '/health/ready', '/metrics', '/admin/routes']) {
    test(`public ${path} -> 404 ROUTE_NOT_FOUND when no route matches`, async () => {
      const response = await rawRequest(gw.url, { path });
      assert.equal(response.status, 404);
      const body = JSON.parse(response.body) as { error: { code: string; requestId: string } };
      assert.equal(body.error.code, 'ROUTE_NOT_FOUND');
      assert.equal(body.error.requestId, response.headers['x-request-id']);
    });
  }

  test('public /health/live with a catch-all route is proxied to the upstream, not answered by the gateway', async () => {
    const response = await rawRequest(rootGw.url, { path: '/health/live' });
    assert.equal(response.status, 200);
    assert.equal(response.headers['x-upstream'], 'catch-all');
    assert.equal(catchAll.received.at(-1)?.url, '/health/live');
    const metrics = await rawRequest(rootGw.url, { path: '/metrics' });
    assert.equal(metrics.headers['x-upstream'], 'catch-all');
  });

  test('the admin listener does not proxy routes', async () => {
    const before = a.received.length + b.received.length;
    const response = await fetch(`${gw.adminUrl}/hello/x`);
    assert.equal(response.status, 404);
    assert.equal(a.received.length + b.received.length, before);
  });
});

test('a start that fails (public port taken) leaves no admin listener behind', async () => {
  const { createServer } = await import('node:net');
  const listenOn = (port: number) => new Promise<import('node:net').Server>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
  const taken = await listenOn(0);
  const probe = await listenOn(0);
  const adminPort = (probe.address() as import('node:net').AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const publicPort = (taken.address() as import('node:net').AddressInfo).port;
  const yaml = `server: { host: 127.0.0.1, port: ${publicPort} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 1s }
registry: { static: { services: { s: { instances: ["http://127.0.0.1:1"] } } } }
routes: [{ name: s, match: { pathPrefix: / }, service: s }]
`;
  try {
    const gateway = new Gateway(configFromYaml(yaml), { logger: createLogger('silent'), metrics: new GatewayMetrics({ processMetrics: false }) });
    await assert.rejects(gateway.start(), /EADDRINUSE/);
    const again = await listenOn(adminPort); // would fail with EADDRINUSE if the admin listener had survived
    await new Promise<void>((resolve) => again.close(() => resolve()));
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
});
