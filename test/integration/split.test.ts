import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chooseBackend, type SplitBackend } from '../../src/routing/split.ts';
import { adminRoutes, rawRequest, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

describe('chooseBackend', () => {
  const backend = (weight: number) => ({ weight }) as unknown as SplitBackend;
  test('draws by weight, skipping backends that cannot take a request', () => {
    const [a, b, c] = [backend(90), backend(10), backend(0)];
    assert.equal(chooseBackend([a!, b!, c!], () => 0, () => true), a);
    assert.equal(chooseBackend([a!, b!, c!], () => 0.899, () => true), a);
    assert.equal(chooseBackend([a!, b!, c!], () => 0.9, () => true), b);
    assert.equal(chooseBackend([a!, b!, c!], () => 0.999999, () => true), b);
    assert.equal(chooseBackend([a!, b!, c!], () => 0, (x) => x !== a), b, 'a backend with nothing to offer gives its share away');
    assert.equal(chooseBackend([a!, b!, c!], () => 0.5, () => false), a, 'none usable: the first weighted one answers the error');
  });
});

describe('traffic split', () => {
  let v1: TestUpstream;
  let v2: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    v1 = await startUpstream('v1');
    v2 = await startUpstream('v2');
    gw = await startGateway(`
registry:
  static:
    services:
      shop-v1: { instances: ["${v1.url}"] }
      shop-v2: { instances: ["${v2.url}"] }
routes:
  - name: shop
    match: { pathPrefix: /shop }
    split:
      - { service: shop-v1, weight: 90 }
      - { service: shop-v2, weight: 10 }
`);
  });
  after(async () => {
    await gw.stop();
    await v1.close();
    await v2.close();
  });

  test('requests spread by weight (90/10 over 1,000 requests, within wide statistical bounds)', async () => {
    const counts = { v1: 0, v2: 0 };
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 8 });
    try {
      const answers = await Promise.all(Array.from({ length: 1_000 }, () => rawRequest(gw.url, { path: '/shop/item', agent })));
      for (const answer of answers) counts[JSON.parse(answer.body).instance as 'v1' | 'v2'] += 1;
    } finally {
      agent.destroy();
    }
    assert.equal(counts.v1 + counts.v2, 1_000);
    // Binomial(1000, 0.1): mean 100, sd 9.5; 40..160 is more than 6 sd either way.
    assert.ok(counts.v2 >= 40 && counts.v2 <= 160, `v2 got ${counts.v2}`);
  });

  test('/admin/routes shows the backends, each service with its own pool', async () => {
    const table = await adminRoutes(gw.adminUrl);
    assert.deepEqual((table.routes[0] as { split: unknown }).split, [
      { service: 'shop-v1', tags: [], meta: {}, weight: 90 },
      { service: 'shop-v2', tags: [], meta: {}, weight: 10 },
    ]);
    assert.deepEqual(Object.keys(table.services).sort(), ['shop-v1', 'shop-v2']);
  });

  test('a backend with no healthy instance gives its share to the others: every request still answered 200', async () => {
    const down = await startUpstream('down');
    const solo = await startGateway(`
registry:
  static:
    services:
      shop-v1: { instances: ["${v1.url}"] }
      shop-v2:
        instances: ["${down.url}"]
        healthCheck: { path: /health, interval: 100ms, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1 }
routes:
  - name: shop
    match: { pathPrefix: /shop }
    split:
      - { service: shop-v1, weight: 10 }
      - { service: shop-v2, weight: 90 }
`);
    try {
      await down.kill();
      await waitFor('shop-v2 to turn unhealthy', async () => (await adminRoutes(solo.adminUrl)).services['shop-v2']!.instances.every((instance) => !instance.healthy), 15_000);
      const answers = await Promise.all(Array.from({ length: 100 }, () => rawRequest(solo.url, { path: '/shop/item' })));
      assert.deepEqual([...new Set(answers.map((answer) => answer.status))], [200]);
      assert.ok(answers.every((answer) => JSON.parse(answer.body).instance === 'v1'));
    } finally {
      await solo.stop();
      await down.close();
    }
  });
});
