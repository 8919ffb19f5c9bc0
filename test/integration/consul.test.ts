import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { ConsulClient } from '../../src/registry/consul/client.ts';
import { type Sleeper, sleep } from '../../src/registry/consul/loop.ts';
import { ConsulRegistry } from '../../src/registry/consul/registry.ts';
import { ConsulDouble } from '../support/consul-double.ts';
import { configFromYaml, metricValue, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { captureLogs } from '../support/logs.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';


async function until(check: () => Promise<boolean> | boolean, what: string, attempts = 400): Promise<void> {
  await waitFor(what, check, attempts * 25);
}

async function instanceIds(gw: RunningGateway, service: string): Promise<string[]> {
  const body = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: Record<string, { instances: Array<{ id: string }> }> };
  return (body.services[service]?.instances ?? []).map((instance) => instance.id).sort();
}

async function whoAnswers(gw: RunningGateway, path: string, times: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < times; i++) {
    const response = await fetch(`${gw.url}${path}`);
    if (response.status === 200) seen.add(((await response.json()) as { instance: string }).instance);
    else await response.body?.cancel();
  }
  return seen;
}

function consulYaml(double: ConsulDouble, routes: string, consulExtra = ''): string {
  return `
registry:
  consul:
    address: "${double.address}"
    wait: 2s
${consulExtra}
routes:
${routes}`;
}

const webRoute = `  - name: web
    match: { pathPrefix: /web }
    service: web
    stripPrefix: true`;

let upstreams: TestUpstream[];

before(async () => {
  upstreams = await Promise.all(['u1', 'u2', 'u3', 'u4'].map((name) => startUpstream(name)));
});

after(async () => {
  await Promise.all(upstreams.map((upstream) => upstream.close()));
});

describe('blocking queries and instance mapping', () => {
  test('watches /v1/health/service/<name>?passing with index and wait, never an index below 1 after the first call', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', port: upstreams[0]!.port, address: '127.0.0.1' });
    const gw = await startGateway(consulYaml(double, webRoute));
    try {
      await until(() => double.heldQueries() >= 1, 'a blocking query is held');
      const calls = double.requests.filter((r) => r.path === '/v1/health/service/web');
      assert.ok(calls.length >= 2);
      assert.ok('passing' in calls[0]!.query, 'passing filter sent');
      assert.equal(calls[0]!.query.index, undefined, 'first call has no index');
      for (const call of calls.slice(1)) {
        assert.ok(Number(call.query.index) >= 1, `index ${String(call.query.index)}`);
        assert.equal(call.query.wait, '2000ms');
      }
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('an index that goes backwards resets the watch to index 0 and keeps the data current', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', port: upstreams[0]!.port, address: '127.0.0.1' });
    const gw = await startGateway(consulYaml(double, webRoute));
    try {
      await until(() => double.heldQueries() >= 1, 'held');
      for (let i = 0; i < 5; i++) double.touch('web');
      await until(() => double.heldQueries() >= 1, 'held again');
      double.clearRequests();
      double.resetIndex(1);
      await until(() => double.requests.some((r) => r.path === '/v1/health/service/web' && r.query.index === undefined), 'a reset call without index');
      double.register({ id: 'web-2', name: 'web', port: upstreams[1]!.port, address: '127.0.0.1' });
      await until(async () => (await instanceIds(gw, 'web')).length === 2, 'new instance seen after the reset');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('instance = Service.ID on its Node; empty Service.Address uses Node.Address; weight = Weights.Passing; all route tags must match', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'api-1', name: 'api', node: 'n1', nodeAddress: '127.0.0.1', address: '', port: upstreams[0]!.port, tags: ['v2', 'eu'], weights: { Passing: 3, Warning: 1 } });
    double.register({ id: 'api-2', name: 'api', node: 'n2', nodeAddress: '127.0.0.1', address: '127.0.0.1', port: upstreams[1]!.port, tags: ['v2'] });
    double.register({ id: 'api-1', name: 'api', node: 'n3', nodeAddress: '127.0.0.1', port: upstreams[2]!.port, tags: ['v1', 'eu'] });
    const gw = await startGateway(consulYaml(double, `  - name: api
    match: { pathPrefix: /api }
    service: api
    tags: [v2, eu]`));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      const body = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: { api: { registry: string; instances: Array<{ id: string; url: string; weight: number }> } } };
      assert.equal(body.services.api.registry, 'consul');
      assert.deepEqual(body.services.api.instances.map(({ id, url, weight }) => ({ id, url, weight })), [
        { id: 'n1/api-1', url: `http://127.0.0.1:${upstreams[0]!.port}`, weight: 3 },
      ]);
      assert.deepEqual([...(await whoAnswers(gw, '/api', 4))], ['u1']);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('convergence', () => {
  test('critical and deregistered instances stop getting new requests; a new passing one starts getting them', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    double.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
    double.register({ id: 'web-3', name: 'web', address: '127.0.0.1', port: upstreams[2]!.port });
    // wait: 10m, so no held query ends by timing out while the test runs (each would add a call).
    const gw = await startGateway(consulYaml(double, webRoute).replace('wait: 2s', 'wait: 10m'));
    try {
      await until(async () => (await whoAnswers(gw, '/web', 3)).size === 3, 'three instances answer');
      double.setServiceStatus('web-1', 'critical');
      await until(async () => !(await instanceIds(gw, 'web')).includes('node-1/web-1'), 'critical instance removed');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 6))].sort(), ['u2', 'u3']);
      double.deregister('web-2');
      await until(async () => (await instanceIds(gw, 'web')).length === 1, 'deregistered instance removed');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 4))], ['u3']);
      double.register({ id: 'web-4', name: 'web', address: '127.0.0.1', port: upstreams[3]!.port });
      await until(async () => (await whoAnswers(gw, '/web', 4)).has('u4'), 'new instance gets traffic');
      await until(() => double.heldQueries() >= 1, 'the next blocking query is held');
      // No polling: every update arrived through a held blocking query, not a timer. One call per answer:
      // the first read (no index), one blocking call answered by each of the 3 changes (each change is
      // seen by the gateway before the test makes the next), and the one held now.
      const calls = double.requests.filter((r) => r.path === '/v1/health/service/web');
      assert.equal(calls.length, 1 + 3 + 1, `calls ${JSON.stringify(calls.map((call) => call.query))}`);
      assert.equal(calls[0]!.query.index, undefined);
      const indexes = calls.slice(1).map((call) => Number(call.query.index));
      assert.ok(indexes.every((index, i) => i === 0 || index > indexes[i - 1]!), `each blocking call carries a newer index: ${indexes.join(',')}`);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('registry outage', () => {
  for (const fault of ['refuse', '5xx', 'garbage', 'hang'] as const) {
    test(`Consul ${fault}: last known instances keep serving, ready stays 200, errors are counted and logged once; catches up when back`, async () => {
      const double = new ConsulDouble({ maxJitterFraction: 0 });
      await double.start();
      double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
      const { logger, lines } = captureLogs();
      const gw = await startGateway(consulYaml(double, webRoute).replace('wait: 2s', 'wait: 1s'), { logger });
      try {
        await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
        await double.setFault(fault);
        if (fault === 'hang' || fault === 'refuse') double.touch('web');
        await until(async () => ((await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'consul' })) ?? 0) >= 2, 'errors counted', 1000);
        assert.deepEqual([...(await whoAnswers(gw, '/web', 3))], ['u1'], 'still serving the last known instance');
        assert.equal((await fetch(`${gw.adminUrl}/health/ready`)).status, 200);
        const routes = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: { web: { lastError: string | null; lastSyncAt: string } } };
        assert.ok(routes.services.web.lastError, 'staleness is visible');
        assert.equal(lines().filter((line) => line.msg === 'consul: cannot read service "web"; serving its last known instances').length, 1, 'logged once, not per retry');
        await double.setFault(null);
        double.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
        await until(async () => (await instanceIds(gw, 'web')).length === 2, 'caught up after the outage', 600);
        assert.equal(lines().filter((line) => line.msg === 'consul: service "web" readable again').length, 1);
      } finally {
        await gw.stop();
        await double.stop();
      }
    });
  }

  test('a malformed entry (Port 0, which Consul accepts) is skipped, logged once and counted; the rest of the service serves', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-bad', name: 'web', address: '127.0.0.1', port: 0 });
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const { logger, lines } = captureLogs();
    const gw = await startGateway(consulYaml(double, webRoute), { logger });
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready despite the bad entry');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 3))], ['u1']);
      assert.ok(((await metricValue(gw.adminUrl, 'waygate_registry_rejected_entries_total', { registry: 'consul' })) ?? 0) >= 1);
      double.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
      await until(async () => (await instanceIds(gw, 'web')).length === 2, 'later changes still followed');
      const skipped = lines().filter((line) => String(line.msg).startsWith('consul: skipped 1 malformed entry of service "web"'));
      assert.equal(skipped.length, 1, 'logged once per change of the rejected set, not per read');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('before the first successful sync, ready is 503', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    await double.setFault('5xx');
    const gw = await startGateway(consulYaml(double, webRoute));
    try {
      await until(async () => ((await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'consul' })) ?? 0) >= 1, 'first error');
      const ready = await fetch(`${gw.adminUrl}/health/ready`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { status: string }).status, 'DOWN');
      await double.setFault(null);
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready after the first sync');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('scale', () => {
  test('many routed services share a bounded set of connections (change feed + targeted re-reads)', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    const count = 60;
    let routes = '';
    for (let i = 0; i < count; i++) {
      double.register({ id: `s${i}-1`, name: `s${i}`, address: '127.0.0.1', port: upstreams[i % 3]!.port });
      routes += `  - name: s${i}\n    match: { pathPrefix: /s${i} }\n    service: s${i}\n`;
    }
    const gw = await startGateway(consulYaml(double, routes));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      await until(() => double.heldQueries() >= 1, 'feed held');
      assert.ok(double.openConnections() <= 32, `connections ${double.openConnections()}`);
      assert.ok(double.heldQueries() <= 2, `held ${double.heldQueries()}`);
      double.register({ id: 's7-2', name: 's7', address: '127.0.0.1', port: upstreams[3]!.port });
      await until(async () => (await instanceIds(gw, 's7')).length === 2, 'new instance of s7 seen');
      double.setServiceStatus('s7-1', 'critical');
      await until(async () => (await instanceIds(gw, 's7')).join() === 'node-1/s7-2', 'critical instance of s7 removed');
      assert.ok(double.openConnections() <= 32);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('self-registration', () => {
  test('registers with an HTTP check on /health/ready once ready, and deregisters at the start of the drain', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0, minCheckIntervalMs: 100 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const gw = await startGateway(consulYaml(double, webRoute, '    register: { name: edge, id: edge-1, address: 127.0.0.1, checkInterval: 200ms }'));
    try {
      const registered = double.agentServices()['edge-1'] as { Service: string; Port: number } | undefined;
      assert.equal(registered?.Service, 'edge');
      assert.equal(registered?.Port, Number(new URL(gw.url).port));
      await until(() => double.checkStatus('service:edge-1') === 'passing', 'HTTP check on /health/ready passes');
    } finally {
      await gw.stop();
    }
    assert.equal(double.agentServices()['edge-1'], undefined, 'deregistered on shutdown');
    await double.stop();
  });
});

describe('tag routes', () => {
  test('services publish routes in tags; they follow the catalog live and YAML wins on conflict', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port, tags: ['waygate.route=/web'] });
    double.register({ id: 'shop-1', name: 'shop', address: '127.0.0.1', port: upstreams[1]!.port, tags: ['waygate.route=/shop strip'] });
    const gw = await startGateway(consulYaml(double, webRoute, '    tagRoutes: true'));
    try {
      await until(async () => (await fetch(`${gw.url}/shop/cart`)).status === 200, 'tag route served');
      const answer = (await (await fetch(`${gw.url}/shop/cart`)).json()) as { instance: string; url: string };
      assert.deepEqual([answer.instance, answer.url], ['u2', '/cart']);
      const table = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { routes: Array<{ name: string; source: string; match: { pathPrefix: string } }> };
      assert.deepEqual(table.routes.map((r) => [r.match.pathPrefix, r.source]).sort(), [['/shop', 'consul-tags'], ['/web', 'yaml']]);
      double.register({ id: 'blog-1', name: 'blog', address: '127.0.0.1', port: upstreams[2]!.port, tags: ['waygate.route=/blog'] });
      await until(async () => (await fetch(`${gw.url}/blog`)).status === 200, 'new tag route appears live');
      double.deregister('shop-1');
      await until(async () => (await fetch(`${gw.url}/shop/cart`)).status === 404, 'route of a gone service disappears');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('a tag route cannot take a path under a YAML route: refused, logged once and counted', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    double.register({ id: 'evil-1', name: 'evil', address: '127.0.0.1', port: upstreams[1]!.port, tags: ['waygate.route=/web/login/callback'] });
    double.register({ id: 'blog-1', name: 'blog', address: '127.0.0.1', port: upstreams[2]!.port, tags: ['waygate.route=/webby'] });
    const { logger, lines } = captureLogs();
    const gw = await startGateway(consulYaml(double, webRoute, '    tagRoutes: true'), { logger });
    try {
      await until(async () => (await fetch(`${gw.url}/webby`)).status === 200, 'the neighbouring tag route is served');
      const answer = (await (await fetch(`${gw.url}/web/login/callback`)).json()) as { instance: string };
      assert.equal(answer.instance, 'u1', 'the YAML route keeps its subtree');
      assert.ok(((await metricValue(gw.adminUrl, 'waygate_registry_rejected_entries_total', { registry: 'consul' })) ?? 0) >= 1);
      double.register({ id: 'blog-2', name: 'blog', address: '127.0.0.1', port: upstreams[3]!.port, tags: ['waygate.route=/webby'] });
      await until(async () => (await instanceIds(gw, 'blog')).length === 2, 'a later catalog change');
      assert.equal(lines().filter((line) => String(line.msg).startsWith('consul: tag route /web/login/callback of service "evil" refused')).length, 1);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('consistency, leaders and indexes', () => {
  test('stale reads (the default) keep following changes while the cluster has no leader; LastContact and KnownLeader are exposed', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const gw = await startGateway(consulYaml(double, webRoute));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      assert.ok(double.requests.filter((r) => r.path === '/v1/health/service/web').every((r) => 'stale' in r.query), 'every read says stale');
      double.setLastContact(250);
      double.setLeader(false);
      double.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
      await until(async () => (await instanceIds(gw, 'web')).length === 2, 'a change made while leaderless is followed');
      await until(async () => (await metricValue(gw.adminUrl, 'waygate_registry_known_leader', { registry: 'consul' })) === 0, 'known leader 0');
      assert.ok(((await metricValue(gw.adminUrl, 'waygate_registry_last_contact_seconds', { registry: 'consul' })) ?? 0) >= 0.25);
      const routes = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: { web: { knownLeader: boolean; lastContactMs: number } } };
      assert.equal(routes.services.web.knownLeader, false);
      assert.ok(routes.services.web.lastContactMs >= 250);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('consistency: default fails while leaderless (and says so), as Consul does', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    double.setLeader(false);
    const gw = await startGateway(consulYaml(double, webRoute, '    consistency: default'));
    try {
      await until(async () => ((await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'consul' })) ?? 0) >= 1, 'errors');
      assert.equal((await fetch(`${gw.adminUrl}/health/ready`)).status, 503);
      assert.ok(double.requests.every((r) => !('stale' in r.query)));
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('indexes above 2^53 are compared exactly: no hot loop, and every change is seen', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0, startIndex: 2n ** 53n + 1n });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const gw = await startGateway(consulYaml(double, webRoute, '').replace('wait: 2s', 'wait: 10m'));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      for (let i = 1; i < 4; i++) {
        double.register({ id: `web-${i + 1}`, name: 'web', address: '127.0.0.1', port: upstreams[i]!.port });
        await until(async () => (await instanceIds(gw, 'web')).length === i + 1, `change ${i} seen`);
      }
      // One first read, one blocking call per change (3), and the one held now.
      await until(() => double.requests.filter((r) => r.path === '/v1/health/service/web').length === 5, 'the next query is held');
      // A client that rounds through Number would send 2^53 (below the server's index) and spin.
      const sent = double.requests.filter((r) => r.path === '/v1/health/service/web' && r.query.index !== undefined).map((r) => BigInt(String(r.query.index)));
      assert.ok(sent.every((index) => index > 2n ** 53n), 'indexes went back exactly, never rounded');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('change feed sees every change', () => {
  test('a re-registration on a new port (which the health feed does not show, fact 28) is followed in change-feed mode', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    double.register({ id: 'other-1', name: 'other', address: '127.0.0.1', port: upstreams[1]!.port });
    const yaml = consulYaml(double, `${webRoute}\n  - { name: other, match: { pathPrefix: /other }, service: other }`);
    const consul = configFromYaml(`server: { host: 127.0.0.1, port: 0 }\n${yaml}`).registry.consul!;
    const metrics = new GatewayMetrics({ processMetrics: false });
    const registry = new ConsulRegistry(consul, new ConsulClient(consul), captureLogs().logger, metrics, { perServiceLimit: 1 });
    const gw = await startGateway(yaml, { metrics, registries: [registry] });
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      assert.equal(registry.watchMode, 'change-feed');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 2))], ['u1']);
      const healthIndex = double.healthIndexBig();
      double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[2]!.port });
      assert.equal(double.healthIndexBig(), healthIndex, 'the checks feed did not move');
      await until(async () => (await whoAnswers(gw, '/web', 2)).has('u3'), 'the new port is routed', 1_000);
      assert.deepEqual([...(await whoAnswers(gw, '/web', 4))], ['u3']);
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('multi-datacenter failover', () => {
  test('instances come from the first datacenter with a healthy one; switching costs no failed request; traffic returns when dc1 recovers', async () => {
    const dc2 = new ConsulDouble({ maxJitterFraction: 0, datacenter: 'dc2' });
    await dc2.start();
    const dc1 = new ConsulDouble({ maxJitterFraction: 0, datacenter: 'dc1', peers: [dc2] });
    await dc1.start();
    dc1.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    dc2.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
    const gw = await startGateway(consulYaml(dc1, `  - { name: web, match: { pathPrefix: /web }, service: web, datacenters: [dc1, dc2] }`));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 4))], ['u1'], 'dc1 first');
      assert.ok(dc2.requests.some((r) => r.path === '/v1/health/service/web'), 'dc2 is watched through the dc1 agent');

      dc1.setServiceStatus('web-1', 'critical');
      await until(async () => ((await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: Record<string, { instances: unknown[] }> }).services['web@dc1']!.instances.length === 0, 'dc1 empty seen');
      const during = await Promise.all(Array.from({ length: 20 }, async () => {
        const response = await fetch(`${gw.url}/web`);
        return { status: response.status, instance: ((await response.json()) as { instance?: string }).instance };
      }));
      assert.deepEqual([...new Set(during.map((answer) => `${answer.status} ${answer.instance}`))], ['200 u2'], 'every request answered by dc2');

      dc1.setServiceStatus('web-1', 'passing');
      await until(async () => (await whoAnswers(gw, '/web', 3)).has('u1'), 'back to dc1');
      assert.deepEqual([...(await whoAnswers(gw, '/web', 4))], ['u1']);
      const table = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: Record<string, { datacenter?: string }> };
      assert.equal(table.services['web@dc2']!.datacenter, 'dc2');
    } finally {
      await gw.stop();
      await dc1.stop();
      await dc2.stop();
    }
  });
});

describe('cold start from the snapshot file', () => {
  test('a gateway that starts while Consul is down serves the last good state, ready 200, stale until Consul answers', async () => {
    const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'waygate-snap-'));
    const file = join(dir, 'consul.json');
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    double.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: upstreams[1]!.port });
    const yaml = consulYaml(double, webRoute, `    snapshotFile: "${file}"`);
    try {
      const first = await startGateway(yaml);
      try {
        await waitFor('the snapshot file to hold both instances', () => {
          try {
            return (JSON.parse(readFileSync(file, 'utf8')) as { services: { web?: { instances: unknown[] } } }).services.web?.instances.length === 2;
          } catch {
            return false;
          }
        });
      } finally {
        await first.stop();
      }

      await double.setFault('refuse');
      const { logger, lines } = captureLogs();
      const second = await startGateway(yaml, { logger });
      try {
        await waitFor('ready from the file alone', async () => (await fetch(`${second.adminUrl}/health/ready`)).status === 200);
        assert.deepEqual([...(await whoAnswers(second, '/web', 6))].sort(), ['u1', 'u2']);
        const routes = (await (await fetch(`${second.adminUrl}/admin/routes`)).json()) as { services: { web: { stale: boolean } } };
        assert.equal(routes.services.web.stale, true);
        await double.setFault(null);
        await waitFor('stale to clear once Consul answers', async () => ((await (await fetch(`${second.adminUrl}/admin/routes`)).json()) as { services: { web: { stale: boolean } } }).services.web.stale === false);
        assert.ok(lines().some((line) => String(line.msg).includes('serving 1 services from the snapshot file')));
      } finally {
        await second.stop();
      }
      writeFileSync(file, '{"version": 1, "address": "corrupt');
      await double.setFault('refuse');
      const warned = captureLogs();
      const third = await startGateway(yaml, { logger: warned.logger });
      try {
        await waitFor('the corrupt-file warning', () => warned.lines().some((line) => String(line.msg).startsWith('consul: ignoring the snapshot file') && line.level === 40));
        assert.equal((await fetch(`${third.adminUrl}/health/ready`)).status, 503, 'nothing to serve: not ready');
      } finally {
        await third.stop();
        await double.setFault(null);
      }
    } finally {
      await double.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('subsets', () => {
  test('meta: filters instances on Service.Meta as tags: does; each subset is its own pool', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    double.register({ id: 'api-1', name: 'api', address: '127.0.0.1', port: upstreams[0]!.port, meta: { version: 'v1' } });
    double.register({ id: 'api-2', name: 'api', address: '127.0.0.1', port: upstreams[1]!.port, meta: { version: 'v2', zone: 'a' }, tags: ['canary'] });
    double.register({ id: 'api-3', name: 'api', address: '127.0.0.1', port: upstreams[2]!.port, meta: { version: 'v2', zone: 'b' } });
    const gw = await startGateway(consulYaml(double, `  - { name: v1, match: { pathPrefix: /v1 }, service: api, meta: { version: v1 } }
  - { name: v2, match: { pathPrefix: /v2 }, service: api, meta: { version: v2 } }
  - { name: v2a, match: { pathPrefix: /v2a }, service: api, meta: { version: v2, zone: a }, tags: [canary] }
  - { name: none, match: { pathPrefix: /v3 }, service: api, meta: { version: v3 } }`));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready');
      assert.deepEqual([...(await whoAnswers(gw, '/v1', 4))], ['u1']);
      assert.deepEqual([...(await whoAnswers(gw, '/v2', 6))].sort(), ['u2', 'u3']);
      assert.deepEqual([...(await whoAnswers(gw, '/v2a', 4))], ['u2']);
      assert.equal((await fetch(`${gw.url}/v3/x`)).status, 503, 'no instance carries version=v3');
    } finally {
      await gw.stop();
      await double.stop();
    }
  });
});

describe('ACL', () => {
  test('the token goes in X-Consul-Token', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0, aclToken: 'secret' });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const gw = await startGateway(consulYaml(double, webRoute, '    token: secret'));
    try {
      await until(async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200, 'ready with the token');
      assert.ok(double.requests.every((r) => r.token === 'secret'));
    } finally {
      await gw.stop();
      await double.stop();
    }
  });

  test('a 403 is logged naming the service and "permission denied", counted, and retried slowly', async () => {
    const double = new ConsulDouble({ maxJitterFraction: 0, aclToken: 'secret' });
    await double.start();
    double.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: upstreams[0]!.port });
    const { logger, lines } = captureLogs();
    // The registry's back-off pauses are held here until the test releases them: "slowly" is then the
    // delay each pause asks for, and the number of calls is counted per released pause, not per second.
    const pauses: Array<{ ms: number; why: string; release: () => void }> = [];
    const heldSleep: Sleeper = (ms, signal, why) => {
      if (why === 'rate-limit') return sleep(ms, signal);
      return new Promise<boolean>((resolve) => {
        pauses.push({ ms, why, release: () => resolve(true) });
        signal.addEventListener('abort', () => resolve(false), { once: true });
      });
    };
    const yaml = consulYaml(double, webRoute, '    token: wrong');
    const consul = configFromYaml(yaml).registry.consul!;
    const client = new ConsulClient(consul);
    const metrics = new GatewayMetrics({ processMetrics: false });
    const registry = new ConsulRegistry(consul, client, logger, metrics, { sleep: heldSleep });
    const gw = await startGateway(yaml, { logger, metrics, registries: [registry] });
    const calls = () => double.requests.filter((r) => r.path === '/v1/health/service/web').length;
    const deniedLogs = () => lines().filter((line) => String(line.msg).includes('permission denied') && line.service === 'web').length;
    try {
      await until(() => pauses.length === 1, 'the loop backs off after the first 403');
      assert.equal(deniedLogs(), 1, 'the denial is logged naming the service');
      assert.equal(calls(), 1, 'one call, then the loop waits');
      assert.equal(await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'consul' }), 1);
      // Back-off for a denial: 2 s doubling to 30 s, with full jitter in the upper half of each step.
      for (let k = 0; k < 5; k++) {
        const ceiling = Math.min(30_000, 2_000 * 2 ** k);
        assert.equal(pauses[k]!.why, 'permission-denied');
        assert.ok(pauses[k]!.ms >= ceiling / 2 && pauses[k]!.ms <= ceiling, `pause ${k + 1}: ${pauses[k]!.ms} ms, expected ${ceiling / 2}-${ceiling}`);
        assert.equal(calls(), k + 1, 'no call while a back-off is pending');
        pauses[k]!.release();
        await until(() => pauses.length === k + 2, `the back-off after call ${k + 2}`);
        assert.equal(calls(), k + 2, 'exactly one more call per released back-off');
      }
      assert.equal(await metricValue(gw.adminUrl, 'waygate_registry_errors_total', { registry: 'consul' }), 6, 'every 403 counted');
      assert.equal(deniedLogs(), 1, 'logged once, not per retry');
      assert.equal((await fetch(`${gw.adminUrl}/health/ready`)).status, 503);
    } finally {
      await gw.stop();
      await client.close();
      await double.stop();
    }
  });
});
