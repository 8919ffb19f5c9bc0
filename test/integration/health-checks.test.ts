import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { adminRoutes, metricValue, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

type Health = 'ok' | 'fail' | 'hang';

const health: Record<string, Health> = { a: 'ok', b: 'ok', c: 'ok' };
const hanging: ServerResponse[] = [];
let upstreams: TestUpstream[];
let gw: RunningGateway;

function handler(name: string) {
  return (request: IncomingMessage, response: ServerResponse) => {
    if (request.url === '/health') {
      const state = health[name];
      if (state === 'hang') {
        hanging.push(response);
        return;
      }
      response.writeHead(state === 'ok' ? 200 : 500, { 'content-type': 'text/plain' });
      response.end(state);
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
    response.end(JSON.stringify({ instance: name, url: request.url }));
  };
}

// Every wait below polls a condition. The probe timeout is the one time that matters: an instance
// answering /health at once must never be taken for a slow one, so it is generous (1 s for a loopback
// answer, and two misses in a row are needed); only the 'hang' instance, which never answers, reaches it.
before(async () => {
  upstreams = await Promise.all(['a', 'b', 'c'].map((name) => startUpstream(name, { handler: handler(name) })));
  gw = await startGateway(`
registry:
  static:
    services:
      hello:
        instances: [${upstreams.map((u) => `"${u.url}"`).join(', ')}]
        healthCheck: { path: /health, interval: 200ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1 }
routes:
  - { name: hello, match: { pathPrefix: /hello }, service: hello, stripPrefix: true }
`);
});

after(async () => {
  for (const response of hanging) response.destroy();
  await gw?.stop();
  await Promise.all((upstreams ?? []).map((u) => u.close()));
});

function urlOf(name: string): string {
  return upstreams.find((u) => u.name === name)!.url;
}

/** Health of each instance as /admin/routes reports it, keyed by upstream name. */
async function healthByName(): Promise<Record<string, boolean>> {
  const view = await adminRoutes(gw.adminUrl);
  const out: Record<string, boolean> = {};
  for (const instance of view.services.hello!.instances) {
    const upstream = upstreams.find((u) => u.url === instance.url);
    if (upstream) out[upstream.name] = instance.healthy;
  }
  return out;
}

/** Generous: a flip takes up to unhealthyThreshold x (interval + timeout) = 2.4 s here. */
const FLIP_LIMIT_MS = 30_000;

async function waitHealth(expected: Record<string, boolean>): Promise<void> {
  await waitFor(`instances to be ${JSON.stringify(expected)}`, async () => {
    const actual = await healthByName();
    return JSON.stringify(actual, Object.keys(expected).sort()) === JSON.stringify(expected, Object.keys(expected).sort());
  }, FLIP_LIMIT_MS);
}

/** Sends n requests and counts which instance answered each. */
async function spread(n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const response = await fetch(`${gw.url}/hello/x`);
    assert.equal(response.status, 200);
    const { instance } = (await response.json()) as { instance: string };
    counts[instance] = (counts[instance] ?? 0) + 1;
  }
  return counts;
}

test('all instances start healthy and share traffic', async () => {
  assert.deepEqual(await healthByName(), { a: true, b: true, c: true });
  assert.deepEqual(await spread(6), { a: 2, b: 2, c: 2 });
  assert.ok(upstreams.every((u) => u.received.some((r) => r.url === '/health')), 'every instance is probed at the configured path');
});

test('an instance whose /health answers 500 stops getting traffic, then gets it back once it answers 200', async () => {
  health.b = 'fail';
  await waitHealth({ a: true, b: false, c: true });
  assert.equal(await metricValue(gw.adminUrl, 'waygate_instances', { service: 'hello', state: 'unhealthy' }), 1);
  assert.equal(await metricValue(gw.adminUrl, 'waygate_instances', { service: 'hello', state: 'healthy' }), 2);
  const view = await adminRoutes(gw.adminUrl);
  const b = view.services.hello!.instances.find((instance) => instance.url === urlOf('b'))!;
  assert.equal(b.healthy, false);

  const counts = await spread(12);
  assert.equal(counts.b, undefined, `b must get nothing: ${JSON.stringify(counts)}`);
  assert.deepEqual(counts, { a: 6, c: 6 });

  health.b = 'ok';
  await waitHealth({ a: true, b: true, c: true });
  assert.equal(await metricValue(gw.adminUrl, 'waygate_instances', { service: 'hello', state: 'unhealthy' }), 0);
  const back = await spread(9);
  assert.deepEqual(back, { a: 3, b: 3, c: 3 });
});

test('an instance whose /health is slower than the probe timeout is unhealthy too', async () => {
  health.c = 'hang';
  await waitHealth({ a: true, b: true, c: false });
  const counts = await spread(8);
  assert.deepEqual(counts, { a: 4, b: 4 });
  health.c = 'ok';
  await waitHealth({ a: true, b: true, c: true });
  assert.equal((await spread(3)).c, 1);
});

test('when every instance fails its checks, requests get 503 NO_HEALTHY_INSTANCE; recovery restores service', async () => {
  health.a = 'fail';
  health.b = 'fail';
  health.c = 'fail';
  await waitHealth({ a: false, b: false, c: false });
  const response = await fetch(`${gw.url}/hello/x`);
  assert.equal(response.status, 503);
  assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'NO_HEALTHY_INSTANCE');
  assert.ok(response.headers.get('retry-after'));
  health.a = 'ok';
  health.b = 'ok';
  health.c = 'ok';
  await waitHealth({ a: true, b: true, c: true });
  assert.deepEqual(await spread(3), { a: 1, b: 1, c: 1 });
});
