/**
 * The etcd registry against a real etcd server (test/support/etcd.ts starts the binary; the tests fail
 * with "etcd not found: apt-get install etcd-server" when it is missing). Each test uses its own prefix.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { EtcdClient } from '../../src/registry/etcd/client.ts';
import { EtcdRegistry } from '../../src/registry/etcd/registry.ts';
import { ConsulDouble } from '../support/consul-double.ts';
import { adminRoutes, configFromYaml, ensureBuilt, metricValue, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { TestCa } from '../support/certificates.ts';
import { startEtcd, startLink, type TestEtcd } from '../support/etcd.ts';
import { captureLogs } from '../support/logs.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

/** Generous: a condition that should hold in milliseconds gets this long on a loaded machine. */
const LIMIT_MS = 20_000;

let etcd: TestEtcd;
let upstreams: TestUpstream[];
const gateways: RunningGateway[] = [];
let prefixes = 0;

before(async () => {
  etcd = await startEtcd();
  upstreams = await Promise.all(['e1', 'e2', 'e3', 'e4'].map((name) => startUpstream(name)));
});

after(async () => {
  await Promise.allSettled(gateways.map((gateway) => gateway.stop()));
  await Promise.allSettled(upstreams.map((upstream) => upstream.close()));
  await etcd?.close();
});

function freshPrefix(): string {
  prefixes += 1;
  return `/t${prefixes}/`;
}

const endpointJson = (upstream: TestUpstream, metadata?: unknown) => JSON.stringify({ Addr: `127.0.0.1:${upstream.port}`, ...(metadata ? { Metadata: metadata } : {}) });

function etcdYaml(endpoint: string, prefix: string, routes: string, extra = ''): string {
  return `
registry:
  etcd:
    endpoints: ["${endpoint}"]
    prefix: "${prefix}"
${extra}
routes:
${routes}`;
}

const route = (name: string, extra = '') => `  - { name: ${name}, match: { pathPrefix: /${name} }, service: ${name}, stripPrefix: true${extra} }`;

async function start(yaml: string, options: Parameters<typeof startGateway>[1] = {}): Promise<RunningGateway> {
  const gateway = await startGateway(yaml, options);
  gateways.push(gateway);
  await waitFor('ready', async () => (await fetch(`${gateway.adminUrl}/health/ready`)).status === 200, LIMIT_MS);
  return gateway;
}

async function ids(gateway: RunningGateway, service: string): Promise<string[]> {
  return ((await adminRoutes(gateway.adminUrl)).services[service]?.instances ?? []).map((instance) => instance.id).sort();
}

async function waitForIds(gateway: RunningGateway, service: string, expected: string[]): Promise<void> {
  await waitFor(`${service} instances ${expected.join(',')}`, async () => JSON.stringify(await ids(gateway, service)) === JSON.stringify(expected), LIMIT_MS);
}

async function whoAnswers(gateway: RunningGateway, path: string, times: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const response = await fetch(`${gateway.url}${path}`);
    const name = response.status === 200 ? ((await response.json()) as { instance: string }).instance : `status ${response.status}`;
    if (response.status !== 200) await response.body?.cancel();
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  return seen;
}

describe('etcd registry', () => {
  test('three instances serving, read at start', async () => {
    const prefix = freshPrefix();
    for (const upstream of upstreams.slice(0, 3)) await etcd.put(`${prefix}hello/${upstream.name}`, endpointJson(upstream));
    // Keys just outside the prefix (a sibling that shares its first characters) are never read.
    await etcd.put(`${prefix.slice(0, -1)}x/hello/outside`, endpointJson(upstreams[3]!));
    await etcd.put(`${prefix.slice(0, -1)}hello/outside`, endpointJson(upstreams[3]!));
    const gateway = await start(etcdYaml(etcd.url, prefix, route('hello')));
    await waitForIds(gateway, 'hello', ['e1', 'e2', 'e3']);
    const seen = await whoAnswers(gateway, '/hello', 9);
    assert.deepEqual([...seen.keys()].sort(), ['e1', 'e2', 'e3']);
    const routes = await adminRoutes(gateway.adminUrl);
    assert.equal(routes.services.hello?.registry, 'etcd');
    assert.ok((await metricValue(gateway.adminUrl, 'waygate_registry_syncs_total', { registry: 'etcd' }))! >= 1);
  });

  test('an added instance serves and a deleted one stops, through the watch', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
    const gateway = await start(etcdYaml(etcd.url, prefix, route('svc')));
    await waitForIds(gateway, 'svc', ['a']);
    await etcd.put(`${prefix}svc/b`, endpointJson(upstreams[1]!));
    await waitForIds(gateway, 'svc', ['a', 'b']);
    assert.deepEqual([...(await whoAnswers(gateway, '/svc', 4)).keys()].sort(), ['e1', 'e2']);
    await etcd.del(`${prefix}svc/a`);
    await waitForIds(gateway, 'svc', ['b']);
    assert.deepEqual([...(await whoAnswers(gateway, '/svc', 4)).keys()], ['e2']);
    // A service that appears only after the start is routed too.
    await etcd.put(`${prefix}late/x`, endpointJson(upstreams[2]!));
    const late = await start(etcdYaml(etcd.url, prefix, `${route('svc')}\n${route('late')}`));
    await waitForIds(late, 'late', ['x']);
    await etcd.del(`${prefix}late/x`);
    await waitForIds(late, 'late', []);
    assert.deepEqual([...(await whoAnswers(late, '/late', 1)).keys()], ['status 503']);
  });

  test('a key whose lease expires stops serving', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/stay`, endpointJson(upstreams[0]!));
    const lease = await etcd.grant(2);
    await etcd.put(`${prefix}svc/leased`, endpointJson(upstreams[1]!), lease);
    const gateway = await start(etcdYaml(etcd.url, prefix, route('svc')));
    await waitForIds(gateway, 'svc', ['leased', 'stay']);
    // Nobody renews the lease: etcd deletes the key when it expires, and the watch reports the delete.
    await waitForIds(gateway, 'svc', ['stay']);
    assert.equal(await etcd.get(`${prefix}svc/leased`), undefined);
  });

  test('weights and tags from Metadata: weights shown and balanced, tags filter a route', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/heavy`, endpointJson(upstreams[0]!, { weight: 3, tags: ['v2', 'eu'] }));
    await etcd.put(`${prefix}svc/light`, endpointJson(upstreams[1]!, { weight: 1, tags: ['v1'] }));
    const gateway = await start(etcdYaml(etcd.url, prefix, `${route('svc')}\n  - { name: v2, match: { pathPrefix: /v2 }, service: svc, tags: [v2], stripPrefix: true }`));
    await waitForIds(gateway, 'svc', ['heavy', 'light']);
    const instances = (await adminRoutes(gateway.adminUrl)).services.svc!.instances;
    assert.deepEqual(instances.map((instance) => [instance.id, instance.weight, instance.tags]).sort(), [['heavy', 3, ['v2', 'eu']], ['light', 1, ['v1']]]);
    const seen = await whoAnswers(gateway, '/svc', 40);
    assert.equal(seen.get('e1'), 30);
    assert.equal(seen.get('e2'), 10);
    assert.deepEqual([...(await whoAnswers(gateway, '/v2', 5)).keys()], ['e1']);
  });

  test('a dead first endpoint: the next one serves', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
    const gateway = await start(etcdYaml(`http://127.0.0.1:${await deadPort()}", "${etcd.url}`, prefix, route('svc')));
    await waitForIds(gateway, 'svc', ['a']);
    await etcd.put(`${prefix}svc/b`, endpointJson(upstreams[1]!));
    await waitForIds(gateway, 'svc', ['a', 'b']);
  });

  test('plain URL values and Addr with a scheme', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/plain`, upstreams[0]!.url);
    await etcd.put(`${prefix}svc/schemed`, JSON.stringify({ Addr: upstreams[1]!.url, ServerName: 'ignored', Attributes: null }));
    const gateway = await start(etcdYaml(etcd.url, prefix, route('svc')));
    await waitForIds(gateway, 'svc', ['plain', 'schemed']);
    const instances = (await adminRoutes(gateway.adminUrl)).services.svc!.instances;
    assert.deepEqual(instances.map((instance) => instance.url).sort(), [upstreams[0]!.url, upstreams[1]!.url].sort());
    assert.deepEqual([...(await whoAnswers(gateway, '/svc', 4)).keys()].sort(), ['e1', 'e2']);
  });

  test('malformed values are skipped, logged and counted; the service\'s other keys still serve', async () => {
    const prefix = freshPrefix();
    const logs = captureLogs();
    await etcd.put(`${prefix}svc/good`, endpointJson(upstreams[0]!));
    await etcd.put(`${prefix}svc/not-json`, '{"Addr": "127.0.0.1:1"');
    await etcd.put(`${prefix}svc/empty-addr`, '{"Addr":""}');
    await etcd.put(`${prefix}svc/addr-number`, '{"Addr":8080}');
    await etcd.put(`${prefix}svc/bad-weight`, JSON.stringify({ Addr: `127.0.0.1:${upstreams[1]!.port}`, Metadata: { weight: 'heavy' } }));
    await etcd.put(`${prefix}svc/not-a-url`, 'hello there');
    const gateway = await start(etcdYaml(etcd.url, prefix, route('svc')), { logger: logs.logger });
    await waitForIds(gateway, 'svc', ['good']);
    assert.deepEqual([...(await whoAnswers(gateway, '/svc', 4)).keys()], ['e1']);
    assert.equal(await metricValue(gateway.adminUrl, 'waygate_registry_rejected_entries_total', { registry: 'etcd' }), 5);
    const skipped = logs.lines().filter((line) => String(line.msg).includes('skipped malformed value'));
    assert.deepEqual(skipped.map((line) => line.key).sort(), ['addr-number', 'bad-weight', 'empty-addr', 'not-a-url', 'not-json'].map((id) => `${prefix}svc/${id}`));
    // A good key turned bad stops serving; the rest still serves; fixed, it serves again.
    await etcd.put(`${prefix}svc/second`, endpointJson(upstreams[1]!));
    await waitForIds(gateway, 'svc', ['good', 'second']);
    await etcd.put(`${prefix}svc/second`, '{"Addr":');
    await waitForIds(gateway, 'svc', ['good']);
    assert.equal(await metricValue(gateway.adminUrl, 'waygate_registry_rejected_entries_total', { registry: 'etcd' }), 6);
    await etcd.put(`${prefix}svc/second`, endpointJson(upstreams[1]!));
    await waitForIds(gateway, 'svc', ['good', 'second']);
  });

  test('changes made while the watch is cut are seen when it resumes from the last revision; one log line per state change', async () => {
    const prefix = freshPrefix();
    const link = await startLink(etcd.url);
    const logs = captureLogs();
    try {
      await etcd.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
      const gateway = await start(etcdYaml(link.url, prefix, route('svc')), { logger: logs.logger });
      await waitForIds(gateway, 'svc', ['a']);
      const errorsBefore = (await metricValue(gateway.adminUrl, 'waygate_registry_errors_total', { registry: 'etcd' })) ?? 0;
      link.cut();
      // Several failed reconnects, while etcd itself takes writes the gateway cannot see yet.
      await waitFor('several failed reconnects', async () => ((await metricValue(gateway.adminUrl, 'waygate_registry_errors_total', { registry: 'etcd' })) ?? 0) >= errorsBefore + 3, LIMIT_MS);
      await etcd.put(`${prefix}svc/b`, endpointJson(upstreams[1]!));
      await etcd.del(`${prefix}svc/a`);
      assert.deepEqual(await ids(gateway, 'svc'), ['a']);
      assert.equal((await fetch(`${gateway.adminUrl}/health/ready`)).status, 200);
      assert.deepEqual([...(await whoAnswers(gateway, '/svc', 3)).keys()], ['e1']);
      link.restore();
      await waitForIds(gateway, 'svc', ['b']);
      const messages = logs.lines().map((line) => String(line.msg));
      assert.equal(messages.filter((msg) => msg.startsWith('etcd: unavailable')).length, 1, messages.join('\n'));
      assert.equal(messages.filter((msg) => msg.startsWith('etcd: reachable again')).length, 1, messages.join('\n'));
      // Resumed, not re-read: the events in between were replayed from the last revision seen.
      assert.equal(messages.filter((msg) => msg.includes('re-read')).length, 0, messages.join('\n'));
    } finally {
      await link.close();
    }
  });

  test('compaction while the watch is cut: the prefix is re-read in full and the table replaced', async () => {
    const prefix = freshPrefix();
    const link = await startLink(etcd.url);
    const logs = captureLogs();
    try {
      await etcd.put(`${prefix}x/a`, endpointJson(upstreams[0]!));
      await etcd.put(`${prefix}y/only`, endpointJson(upstreams[2]!));
      const gateway = await start(etcdYaml(link.url, prefix, `${route('x')}\n${route('y')}`), { logger: logs.logger });
      await waitForIds(gateway, 'x', ['a']);
      await waitForIds(gateway, 'y', ['only']);
      link.cut();
      await waitFor('the cut noticed', async () => ((await metricValue(gateway.adminUrl, 'waygate_registry_errors_total', { registry: 'etcd' })) ?? 0) >= 1, LIMIT_MS);
      await etcd.del(`${prefix}x/a`);
      await etcd.put(`${prefix}x/b`, endpointJson(upstreams[1]!));
      await etcd.del(`${prefix}y/only`);
      await etcd.put(`${prefix}x/b`, endpointJson(upstreams[1]!, { weight: 2 }));
      const now = await etcd.put(`${prefix}unrelated/k`, endpointJson(upstreams[3]!));
      await etcd.compact(now);
      link.restore();
      await waitForIds(gateway, 'x', ['b']);
      await waitForIds(gateway, 'y', []);
      assert.equal((await adminRoutes(gateway.adminUrl)).services.x!.instances[0]!.weight, 2);
      assert.deepEqual([...(await whoAnswers(gateway, '/x', 2)).keys()], ['e2']);
      assert.deepEqual([...(await whoAnswers(gateway, '/y', 1)).keys()], ['status 503']);
      const messages = logs.lines().map((line) => String(line.msg));
      assert.ok(messages.some((msg) => msg.includes('compacted') && msg.includes('re-reading the prefix in full')), messages.join('\n'));
      // Watching again after the re-read: the next change is seen.
      await etcd.put(`${prefix}y/back`, endpointJson(upstreams[2]!));
      await waitForIds(gateway, 'y', ['back']);
    } finally {
      await link.close();
    }
  });

  test('an etcd restart on the same data dir: 0 failed requests, ready stays 200, the next change is seen', async () => {
    const own = await startEtcd();
    const logs = captureLogs();
    try {
      const prefix = '/restart/';
      await own.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
      const gateway = await start(etcdYaml(own.url, prefix, route('svc')), { logger: logs.logger });
      await waitForIds(gateway, 'svc', ['a']);
      let failed = 0;
      let sent = 0;
      let notReady = 0;
      let loading = true;
      const load = (async () => {
        while (loading) {
          const response = await fetch(`${gateway.url}/svc`);
          sent += 1;
          if (response.status !== 200) failed += 1;
          await response.body?.cancel();
          const ready = await fetch(`${gateway.adminUrl}/health/ready`);
          if (ready.status !== 200) notReady += 1;
          await ready.body?.cancel();
        }
      })();
      try {
        // Frozen first (the watch hangs silently: the probe notices), then killed and restarted.
        own.freeze();
        await waitFor('the frozen etcd noticed', () => logs.lines().some((line) => String(line.msg).startsWith('etcd: unavailable')), LIMIT_MS);
        own.thaw();
        await own.kill();
        const beforeRestart = sent;
        await waitFor('requests served while etcd is down', () => sent >= beforeRestart + 20, LIMIT_MS);
        await own.restart();
        await own.put(`${prefix}svc/b`, endpointJson(upstreams[1]!));
        await waitForIds(gateway, 'svc', ['a', 'b']);
        const afterChange = sent;
        await waitFor('requests after the change', () => sent >= afterChange + 10, LIMIT_MS);
      } finally {
        loading = false;
        await load;
      }
      assert.equal(failed, 0, `${failed} of ${sent} requests failed`);
      assert.equal(notReady, 0);
      assert.ok(gateway.gateway.notReadyReason() === undefined);
      const messages = logs.lines().map((line) => String(line.msg));
      assert.ok(messages.filter((msg) => msg.startsWith('etcd: unavailable')).length <= 3, messages.join('\n'));
    } finally {
      await own.close();
    }
  });

  test('with consul and etcd both configured, each route reads the registry it names, even for one service name', async () => {
    const prefix = freshPrefix();
    const consul = new ConsulDouble({ maxJitterFraction: 0 });
    await consul.start();
    try {
      consul.register({ id: 'from-consul', name: 'shared', port: upstreams[0]!.port, address: '127.0.0.1' });
      await etcd.put(`${prefix}shared/from-etcd`, endpointJson(upstreams[1]!));
      const gateway = await start(`
registry:
  static:
    services:
      local: { instances: ["${upstreams[2]!.url}"] }
  consul: { address: "${consul.address}", wait: 2s }
  etcd: { endpoints: ["${etcd.url}"], prefix: "${prefix}" }
routes:
  - { name: c, match: { pathPrefix: /c }, service: shared, registry: consul, stripPrefix: true }
  - { name: e, match: { pathPrefix: /e }, service: shared, registry: etcd, stripPrefix: true }
  - { name: l, match: { pathPrefix: /l }, service: local, stripPrefix: true }
`);
      await waitFor('both registries routed', async () => {
        const [c, e] = [await whoAnswers(gateway, '/c', 1), await whoAnswers(gateway, '/e', 1)];
        return c.has('e1') && e.has('e2');
      }, LIMIT_MS);
      assert.deepEqual([...(await whoAnswers(gateway, '/c', 3)).keys()], ['e1']);
      assert.deepEqual([...(await whoAnswers(gateway, '/e', 3)).keys()], ['e2']);
      assert.deepEqual([...(await whoAnswers(gateway, '/l', 2)).keys()], ['e3']);
      const registries = Object.values((await adminRoutes(gateway.adminUrl)).services).map((service) => `${String(service.service)}:${String(service.registry)}`).sort();
      assert.deepEqual(registries, ['local:static', 'shared:consul', 'shared:etcd']);
    } finally {
      await consul.stop();
    }
  });

  test('an etcd replaced by an empty one (revision back to 1): the prefix is re-read, not waited on', async () => {
    const own = await startEtcd();
    const logs = captureLogs();
    try {
      for (let i = 0; i < 20; i++) await own.put('/replaced/svc/a', endpointJson(upstreams[0]!, { weight: 1 + (i % 3) }));
      const gateway = await start(etcdYaml(own.url, '/replaced/', route('svc')), { logger: logs.logger });
      await waitForIds(gateway, 'svc', ['a']);
      await own.restart({ wipe: true });
      await own.put('/replaced/svc/b', endpointJson(upstreams[1]!));
      await waitForIds(gateway, 'svc', ['b']);
      assert.ok(logs.lines().some((line) => String(line.msg).includes('behind the')), 'the reset was logged');
    } finally {
      await own.close();
    }
  });

  test('retries back off exponentially with jitter while etcd is unreachable, and log the outage once', async () => {
    const logs = captureLogs();
    const pauses: number[] = [];
    const config = configFromYaml(`registry:\n  etcd: { endpoints: ["http://127.0.0.1:${await deadPort()}"] }\nroutes:\n${route('svc')}`).registry.etcd!;
    const client = new EtcdClient(config);
    let release: (() => void) | undefined;
    const registry = new EtcdRegistry(config, client, logs.logger, new GatewayMetrics({ processMetrics: false }), {
      backoff: { baseMs: 100, maxMs: 1_600 },
      // Records each pause and returns at once, so the test sees many retries without waiting them out.
      sleep: async (ms, signal) => {
        pauses.push(ms);
        if (pauses.length < 12) return !signal.aborted;
        await new Promise<void>((resolve) => { release = resolve; });
        return false;
      },
    });
    await registry.start();
    await waitFor('12 pauses', () => pauses.length >= 12, LIMIT_MS);
    release?.();
    await registry.stop();
    await client.close();
    pauses.slice(0, 12).forEach((pause, i) => {
      const ceiling = Math.min(1_600, 100 * 2 ** i);
      assert.ok(pause >= ceiling / 2 && pause <= ceiling, `pause ${i} = ${pause} ms, expected between ${ceiling / 2} and ${ceiling}`);
    });
    assert.ok(new Set(pauses.slice(5, 12)).size > 1, `jitter: the capped pauses differ (${pauses.join(', ')})`);
    const messages = logs.lines().map((line) => String(line.msg));
    assert.equal(messages.filter((msg) => msg.startsWith('etcd: unavailable')).length, 1, messages.join('\n'));
    assert.equal(registry.status().synced, false);
  });

  test('self-registration: a leased key kept alive, re-created when the lease is lost, revoked at stop', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
    const gateway = await start(etcdYaml(etcd.url, prefix, route('svc'), '    register: { service: waygate, id: gw1, ttl: 6s }'));
    const key = `${prefix}waygate/gw1`;
    const first = await waitFor('the registration key', () => etcd.get(key), LIMIT_MS);
    assert.notEqual(first.lease, '0');
    assert.deepEqual(JSON.parse(first.value), { Addr: `127.0.0.1:${new URL(gateway.url).port}` });
    // Kept alive: the remaining TTL goes back up (a renewal happened), more than once.
    let last = await etcd.ttl(first.lease);
    let renewals = 0;
    await waitFor('two renewals', async () => {
      const ttl = await etcd.ttl(first.lease);
      if (ttl > last) renewals += 1;
      last = ttl;
      return renewals >= 2;
    }, LIMIT_MS, 100);
    // The gateway reads its own key like any instance.
    await waitForIds(await start(etcdYaml(etcd.url, prefix, route('waygate'))), 'waygate', ['gw1']);
    // Lost (revoked behind the gateway's back): registered again under a new lease.
    await etcd.revoke(first.lease);
    const second = await waitFor('the key under a new lease', async () => {
      const now = await etcd.get(key);
      return now && now.lease !== first.lease ? now : undefined;
    }, LIMIT_MS);
    assert.notEqual(second.lease, '0');
    await gateway.stop();
    assert.equal(await etcd.get(key), undefined);
    assert.equal(await etcd.ttl(second.lease), -1);
  });
});

describe('etcd with authentication', () => {
  test('username and password: the token is used for the read, the watch and the lease; a wrong password is logged, not served', async () => {
    const own = await startEtcd();
    try {
      const ctl = (...args: string[]) => execFileSync('etcdctl', ['--endpoints', own.url, ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' }, stdio: 'pipe' });
      ctl('user', 'add', 'root:rootpw');
      ctl('user', 'add', 'gw:gwpw');
      ctl('role', 'add', 'services');
      ctl('role', 'grant-permission', 'services', '--prefix=true', 'readwrite', '/auth/');
      ctl('user', 'grant-role', 'gw', 'services');
      ctl('user', 'add', 'reader:readerpw');
      ctl('role', 'add', 'readonly');
      ctl('role', 'grant-permission', 'readonly', '--prefix=true', 'read', '/auth/');
      ctl('user', 'grant-role', 'reader', 'readonly');
      ctl('auth', 'enable');
      ctl('--user', 'root:rootpw', 'put', '/auth/svc/a', endpointJson(upstreams[0]!));
      const yaml = (password: string) => etcdYaml(own.url, '/auth/', route('svc'), `    username: gw\n    password: ${password}\n    register: { service: edge, id: gw-auth, ttl: 6s }`);
      const gateway = await start(yaml('gwpw'));
      await waitForIds(gateway, 'svc', ['a']);
      ctl('--user', 'root:rootpw', 'put', '/auth/svc/b', endpointJson(upstreams[1]!));
      await waitForIds(gateway, 'svc', ['a', 'b']);
      const registered = await waitFor('the registration key', () => ctl('--user', 'root:rootpw', 'get', '/auth/edge/gw-auth', '--print-value-only').trim() || undefined, LIMIT_MS);
      assert.deepEqual(JSON.parse(registered), { Addr: `127.0.0.1:${new URL(gateway.url).port}` });
      const logs = captureLogs();
      const refused = await startGateway(yaml('wrong'), { logger: logs.logger });
      gateways.push(refused);
      await waitFor('the refusal logged', () => logs.lines().some((line) => String(line.msg).startsWith('etcd: unavailable (auth)')), LIMIT_MS);
      assert.equal((await fetch(`${refused.adminUrl}/health/ready`)).status, 503);
      await refused.stop();
      // May read but not write: it serves, its registration fails, and it leaves no lease behind renewing nothing.
      const readerLogs = captureLogs();
      const reader = await start(etcdYaml(own.url, '/auth/', route('svc'), '    username: reader\n    password: readerpw\n    register: { service: edge, id: gw-reader, ttl: 6s }'), { logger: readerLogs.logger });
      await waitForIds(reader, 'svc', ['a', 'b']);
      assert.ok(readerLogs.lines().some((line) => String(line.msg).startsWith('etcd: cannot keep the gateway registered')));
      const leases = () => ctl('--user', 'root:rootpw', 'lease', 'list').trim();
      // The one lease left is gw-auth's (the first gateway, still registered).
      await waitFor('no lease of the reader left', () => /found 1 leases/.test(leases()) && leases(), LIMIT_MS);
    } finally {
      await own.close();
    }
  });
});

describe('etcd over TLS', () => {
  test('https endpoint verified with tls.ca, client certificate from tls.cert/key; without the CA it does not sync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'waygate-etcd-tls-'));
    const ca = new TestCa(dir, 'waygate etcd test CA');
    // With --client-cert-auth, etcd 3.4's JSON gateway dials etcd's own gRPC port with the server certificate: it needs clientAuth too.
    ca.sign('server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
    ca.sign('client', 'extendedKeyUsage=clientAuth\n');
    const file = (name: string) => join(dir, name);
    const own = await startEtcd({ tls: { ca: file('ca.pem'), serverCert: file('server.pem'), serverKey: file('server.key'), clientCert: file('client.pem'), clientKey: file('client.key') } });
    try {
      await own.put('/tls/svc/a', endpointJson(upstreams[0]!));
      const logs = captureLogs();
      const untrusting = await startGateway(etcdYaml(own.url, '/tls/', route('svc'), `    tls: { cert: "${file('client.pem')}", key: "${file('client.key')}" }`), { logger: logs.logger });
      gateways.push(untrusting);
      const gateway = await start(etcdYaml(own.url, '/tls/', route('svc'), `    tls: { ca: "${file('ca.pem')}", cert: "${file('client.pem')}", key: "${file('client.key')}" }`));
      await waitForIds(gateway, 'svc', ['a']);
      await own.put('/tls/svc/b', endpointJson(upstreams[1]!));
      await waitForIds(gateway, 'svc', ['a', 'b']);
      await waitFor('the unverified endpoint logged', () => logs.lines().some((line) => String(line.msg).startsWith('etcd: unavailable')), LIMIT_MS);
      assert.equal((await fetch(`${untrusting.adminUrl}/health/ready`)).status, 503);
    } finally {
      await own.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('etcd self-registration in a real gateway process', () => {
  const ROOT = fileURLToPath(new URL('../../', import.meta.url));
  let child: ChildProcess | undefined;
  let dir: string;

  before(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'waygate-etcd-cli-'));
  });

  after(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('SIGTERM revokes the lease at the start of the drain, while the gateway still serves', async () => {
    const prefix = freshPrefix();
    await etcd.put(`${prefix}svc/a`, endpointJson(upstreams[0]!));
    const port = await deadPort();
    const adminPort = await deadPort();
    const config = join(dir, 'gateway.yaml');
    writeFileSync(config, `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 60s, timeout: 5s }
${etcdYaml(etcd.url, prefix, route('svc'), '    register: { service: edge, id: child-1, ttl: 30s }')}`);
    let output = '';
    child = spawn(process.execPath, [join(ROOT, 'bin', 'waygate.js'), 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (chunk: Buffer) => { output += String(chunk); });
    child.stderr!.on('data', (chunk: Buffer) => { output += String(chunk); });
    const exit = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    const key = `${prefix}edge/child-1`;
    const registered = await waitFor('the child registered', () => etcd.get(key), LIMIT_MS).catch((error: Error) => { throw new Error(`${error.message}\n${output}`); });
    assert.deepEqual(JSON.parse(registered.value), { Addr: `127.0.0.1:${port}` });
    child.kill('SIGTERM');
    // Gone long before a 60 s drain (or the 30 s TTL) could end: revoked, not expired.
    await waitFor('the key revoked', async () => (await etcd.get(key)) === undefined, LIMIT_MS);
    assert.equal(child.exitCode, null, 'still draining');
    assert.equal((await fetch(`http://127.0.0.1:${adminPort}/health/ready`)).status, 503);
    assert.equal(await etcd.ttl(registered.lease), -1);
    child.kill('SIGKILL');
    await exit;
  });
});

describe('https instances from etcd', () => {
  test('are verified with registry.etcd.instanceTls: its CA is trusted; without it the instance is refused (502)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'waygate-etcd-instance-tls-'));
    const ca = new TestCa(dir);
    const { cert, key } = ca.sign('instance', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    const server = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (_req, res) => res.end('{"over":"tls"}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const prefix = freshPrefix();
      await etcd.put(`${prefix}sec/a`, JSON.stringify({ Addr: `https://127.0.0.1:${(server.address() as AddressInfo).port}` }));
      const trusting = await start(etcdYaml(etcd.url, prefix, route('sec', ', retries: 0'), `    instanceTls: { ca: "${ca.ca}" }`));
      await waitForIds(trusting, 'sec', ['a']);
      const answer = await fetch(`${trusting.url}/sec/x`);
      assert.equal(answer.status, 200);
      assert.equal(await answer.text(), '{"over":"tls"}');
      const untrusting = await start(etcdYaml(etcd.url, prefix, route('sec', ', retries: 0')));
      await waitForIds(untrusting, 'sec', ['a']);
      assert.equal((await fetch(`${untrusting.url}/sec/x`)).status, 502);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
