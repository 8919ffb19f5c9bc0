// Proves the Consul HTTP API double against CONTRACT.md, the documented fixtures and the official npm client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import Consul from 'consul';
import { ConsulDouble } from '../support/consul-double.ts';
import type { ConsulDoubleOptions } from '../support/consul-double.ts';

const FIXTURES = new URL('../fixtures/consul/', import.meta.url);
const fixture = <T = unknown>(name: string): T => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  index: string | undefined;
  json: () => Json;
}

/** One request on a fresh connection (no pooling), so socket-level faults are observed directly. */
function request(base: string, path: string, opts: { method?: string; body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const req = http.request(base + path, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, signal: opts.signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const idx = res.headers['x-consul-index'];
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, index: typeof idx === 'string' ? idx : undefined, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function withDouble(opts: ConsulDoubleOptions, fn: (d: ConsulDouble) => Promise<void>): Promise<void> {
  const d = new ConsulDouble({ maxJitterFraction: 0, ...opts });
  await d.start();
  try {
    await fn(d);
  } finally {
    await d.stop();
  }
}

const put = (d: ConsulDouble, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer> =>
  request(d.address, path, { method: 'PUT', body, headers });
const get = (d: ConsulDouble, path: string, headers?: Record<string, string>): Promise<Answer> => request(d.address, path, { headers });
const ids = (entries: Json[]): string[] => entries.map((e) => e.Service.ID).sort();

/** Collects `change` events of an official-client watch. */
function collect(watch: { on(ev: string, fn: (...a: Json[]) => void): unknown }) {
  const queue: Array<{ data: Json; index: string }> = [];
  const errors: unknown[] = [];
  let wakeup: (() => void) | undefined;
  watch.on('change', (data: Json, res: Json) => {
    queue.push({ data, index: String(res.headers['x-consul-index']) });
    wakeup?.();
  });
  watch.on('error', (err: unknown) => errors.push(err));
  return {
    errors,
    async next(): Promise<{ data: Json; index: string }> {
      const deadline = Date.now() + 8000;
      while (queue.length === 0) {
        if (Date.now() > deadline) throw new Error('no change event');
        await new Promise<void>((r) => {
          wakeup = r;
          setTimeout(r, 50);
        });
      }
      return queue.shift()!;
    },
  };
}

// ------------------------------------------------------------------ official client

test('official client watch: initial change, critical instance, new instance, index reset', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: 8001 });
    d.register({ id: 'web-2', name: 'web', address: '127.0.0.1', port: 8002 });
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    const watch = consul.watch({
      method: consul.health.service,
      options: { service: 'web', passing: true, wait: '2s' } as unknown as Record<string, string>,
    });
    const w = collect(watch);
    try {
      const first = await w.next();
      assert.deepEqual(ids(first.data), ['web-1', 'web-2']);
      assert.ok(Number(first.index) >= 1);

      await d.waitForHeldQueries(1);
      d.setServiceStatus('web-1', 'critical');
      const second = await w.next();
      assert.deepEqual(ids(second.data), ['web-2']);
      assert.ok(Number(second.index) > Number(first.index));

      await d.waitForHeldQueries(1);
      d.register({ id: 'web-3', name: 'web', address: '127.0.0.1', port: 8003 });
      const third = await w.next();
      assert.deepEqual(ids(third.data), ['web-2', 'web-3']);

      await d.waitForHeldQueries(1);
      d.resetIndex();
      const reset = await w.next();
      assert.equal(reset.index, '1', 'a backwards index is emitted as a change');
      assert.deepEqual(ids(reset.data), ['web-2', 'web-3']);
      assert.deepEqual(w.errors, []);
      // The client restarted from index 0 and never sent an index below 1 afterwards.
      const sent = d.requests.filter((r) => r.path === '/v1/health/service/web').map((r) => String(r.query['index']));
      assert.ok(sent.includes('0'));
      assert.equal(d.requests.find((r) => r.path === '/v1/health/service/web')?.query['passing'], 'true');
    } finally {
      watch.end();
      consul.destroy();
    }
  });
});

test('official client: agent service register/deregister and TTL check pass', async () => {
  await withDouble({}, async (d) => {
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    try {
      await consul.agent.service.register({
        name: 'api',
        id: 'api-1',
        address: '127.0.0.1',
        port: 9000,
        tags: ['v1'],
        check: { name: 'api ttl', ttl: '30s', timeout: '1s' },
      });
      const all = await consul.health.service('api');
      assert.equal(all.length, 1);
      const own = all[0].Checks.find((c: Json) => c.CheckID === 'service:api-1');
      assert.equal(own.Status, 'critical', 'a new check starts critical');
      assert.equal(own.Name, 'api ttl');
      assert.deepEqual(await consul.health.service({ service: 'api', passing: true }), []);

      await consul.agent.check.pass({ id: 'service:api-1', note: 'all good' });
      assert.equal(d.checkStatus('service:api-1'), 'passing');
      const healthy = await consul.health.service({ service: 'api', passing: true });
      assert.equal(healthy.length, 1);
      assert.equal(healthy[0].Service.Port, 9000);
      assert.equal(healthy[0].Checks.find((c: Json) => c.CheckID === 'service:api-1').Output, 'all good');

      const listed: Json = await consul.agent.service.list();
      assert.deepEqual(Object.keys(listed), ['api-1']);
      assert.deepEqual(listed['api-1'].Weights, { Passing: 1, Warning: 1 });
      assert.deepEqual(listed, d.agentServices());

      await consul.agent.service.deregister('api-1');
      assert.deepEqual(await consul.health.service('api'), []);
      await assert.rejects(consul.agent.service.deregister('api-1'), (err: Json) => err.statusCode === 404);
    } finally {
      consul.destroy();
    }
  });
});

test('official client reads the documented fixture payloads verbatim', async () => {
  await withDouble({ seedFixtures: true }, async (d) => {
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    try {
      const [healthFx] = fixture<Json[]>('health-service.json');
      const redis = await consul.health.service('redis');
      assert.deepEqual(
        redis.find((e: Json) => e.Node.Node === 'foobar'),
        healthFx,
      );
      // The agent-local redis has an empty Service.Address: clients must use Node.Address (fact 11).
      const local = redis.find((e: Json) => e.Node.Node === 'node-1');
      assert.equal(local.Service.Address, '');
      assert.equal(local.Node.Address, '127.0.0.1');

      assert.deepEqual(await consul.catalog.service.nodes('web'), fixture('catalog-service.json'));
      assert.deepEqual(await consul.agent.service.list(), fixture('agent-services.json'));
      const checks = await consul.health.checks('redis');
      assert.deepEqual(checks.filter((c: Json) => c.Node === 'foobar'), fixture('health-checks.json'));
      const state = await consul.health.state('any');
      for (const c of fixture<Json[]>('health-state.json')) assert.ok(state.some((s: Json) => JSON.stringify(s) === JSON.stringify(c)));
      const services: Json = await consul.catalog.service.list();
      for (const [name, tags] of Object.entries(fixture<Record<string, string[]>>('catalog-services.json'))) {
        assert.ok(name in services, name);
        for (const t of tags) assert.ok(services[name].includes(t), `${name}/${t}`);
      }
    } finally {
      consul.destroy();
    }
  });
});

// ------------------------------------------------------------------ shapes

test('new entries have exactly the fixture shapes, [] never null, default weights', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'a-1', name: 'a', port: 7000 });
    assert.equal((await put(d, '/v1/agent/service/register', { Name: 'b', Port: 7001, Check: { TTL: '10s' } })).status, 200);
    const [fx] = fixture<Json[]>('health-service.json');
    const keys = (o: object): string[] => Object.keys(o).sort();
    for (const name of ['a', 'b']) {
      const [e] = (await get(d, `/v1/health/service/${name}`)).json();
      assert.deepEqual(keys(e), keys(fx));
      assert.deepEqual(keys(e.Node), keys(fx.Node));
      assert.deepEqual(keys(e.Service), keys(fx.Service));
      for (const c of e.Checks) assert.deepEqual(keys(c), keys(fx.Checks[0]));
      assert.deepEqual(e.Service.Tags, []);
      assert.deepEqual(e.Service.Meta, {});
      assert.deepEqual(e.Service.Weights, { Passing: 1, Warning: 1 });
      assert.equal(e.Service.Address, '');
      assert.equal(e.Node.Address, '127.0.0.1');
      assert.deepEqual(e.Checks.map((c: Json) => c.CheckID), [`service:${e.Service.ID}`, 'serfHealth']);
    }
    const [row] = (await get(d, '/v1/catalog/service/a')).json();
    assert.deepEqual(keys(row), keys(fixture<Json[]>('catalog-service.json')[0]));
    const agentFx = Object.values(fixture<Record<string, object>>('agent-services.json'))[0]!;
    assert.deepEqual(keys((d.agentServices() as Json).b), keys(agentFx));
    // Real servers emit Go-cased {Address, Port} tagged addresses (fact 12).
    d.register({ id: 'c-1', name: 'c', address: '10.0.0.7', port: 7002 });
    const [c] = (await get(d, '/v1/health/service/c')).json();
    assert.deepEqual(c.Service.TaggedAddresses.lan_ipv4, { Address: '10.0.0.7', Port: 7002 });
  });
});

// ------------------------------------------------------------------ blocking queries

test('blocking: holds until the service changes, then answers with a higher index', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'w-1', name: 'w', port: 1 });
    const first = await get(d, '/v1/health/service/w');
    assert.equal(first.headers['x-consul-knownleader'], 'true');
    assert.equal(first.headers['x-consul-lastcontact'], '0');
    assert.match(String(first.headers['content-type']), /^application\/json/);
    let settled = false;
    const pending = get(d, `/v1/health/service/w?index=${first.index}&wait=5s`).then((a) => {
      settled = true;
      return a;
    });
    await d.waitForHeldQueries(1);
    assert.equal(settled, false);
    d.register({ id: 'w-2', name: 'w', port: 2 });
    const second = await pending;
    assert.ok(Number(second.index) > Number(first.index));
    assert.deepEqual(ids(second.json()), ['w-1', 'w-2']);
    assert.equal(d.heldQueries(), 0);
  });
});

test('blocking: a timeout returns the same index and the same data; touch() bumps with identical data', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 't-1', name: 't', port: 1, tags: ['x'] });
    const first = await get(d, '/v1/health/service/t');
    const timedOut = await get(d, `/v1/health/service/t?index=${first.index}&wait=1s`);
    assert.equal(timedOut.status, 200);
    assert.equal(timedOut.index, first.index);
    assert.deepEqual(timedOut.json(), first.json());

    const pending = get(d, `/v1/health/service/t?index=${first.index}&wait=5s`);
    await d.waitForHeldQueries(1);
    d.touch('t');
    const touched = await pending;
    assert.ok(Number(touched.index) > Number(first.index));
    assert.deepEqual(touched.json(), first.json());
  });
});

test('blocking: the index is per service; churn in A does not wake a watcher of B', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'a-1', name: 'a', port: 1 });
    d.register({ id: 'b-1', name: 'b', port: 2 });
    const a0 = await get(d, '/v1/health/service/a');
    const b0 = await get(d, '/v1/health/service/b');
    const pendingB = get(d, `/v1/health/service/b?index=${b0.index}&wait=1s`);
    await d.waitForHeldQueries(1);
    d.setServiceStatus('a-1', 'critical');
    d.register({ id: 'a-2', name: 'a', port: 3 });
    d.deregister('a-2');
    assert.equal(d.heldQueries(), 1, 'B is still held after A changed');
    const b1 = await pendingB;
    assert.equal(b1.index, b0.index);
    assert.deepEqual(b1.json(), b0.json());
    const a1 = await get(d, '/v1/health/service/a');
    assert.ok(Number(a1.index) > Number(a0.index));
  });
});

test('blocking: a missing service answers 200 [] with a non-zero index and wakes when registered', async () => {
  await withDouble({}, async (d) => {
    const none = await get(d, '/v1/health/service/ghost');
    assert.equal(none.status, 200);
    assert.equal(none.text, '[]');
    assert.ok(Number(none.index) >= 1);
    const pending = get(d, `/v1/health/service/ghost?index=${none.index}&wait=5s`);
    await d.waitForHeldQueries(1);
    d.register({ id: 'ghost-1', name: 'ghost', port: 1 });
    const found = await pending;
    assert.deepEqual(ids(found.json()), ['ghost-1']);
    // Deregistering the last instance moves the index forward (extinction), never back.
    const pending2 = get(d, `/v1/health/service/ghost?index=${found.index}&wait=5s`);
    await d.waitForHeldQueries(1);
    d.deregister('ghost-1');
    const gone = await pending2;
    assert.equal(gone.text, '[]');
    assert.ok(Number(gone.index) > Number(found.index));
  });
});

test('blocking: resetIndex answers held queries at once with a lower index; X-Consul-Index never below 1', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'r-1', name: 'r', port: 1 });
    for (let i = 0; i < 5; i++) d.touch('r');
    const before = await get(d, '/v1/health/service/r');
    const pending = get(d, `/v1/health/service/r?index=${before.index}&wait=5s`);
    const pendingCatalog = get(d, `/v1/catalog/services?index=${d.catalogIndex()}&wait=5s`);
    await d.waitForHeldQueries(2);
    d.resetIndex(0);
    const after = await pending;
    assert.equal(after.index, '1');
    assert.deepEqual(after.json(), before.json());
    assert.equal((await pendingCatalog).index, '1');
    for (const p of ['/v1/health/service/r', '/v1/health/service/none', '/v1/catalog/services', '/v1/health/state/any', '/v1/agent/services']) {
      assert.ok(Number((await get(d, p)).index) >= 1, p);
    }
  });
});

test('wait and index parsing: Go durations, bare numbers rejected', async () => {
  await withDouble({}, async (d) => {
    const bad = await get(d, '/v1/health/service/x?index=1&wait=10');
    assert.equal(bad.status, 400);
    assert.equal(bad.text, 'Invalid wait time');
    assert.equal((await get(d, '/v1/health/service/x?index=abc')).status, 400);
    for (const w of ['10s', '5m', '60000ms', '1m30s', '1.5s']) {
      assert.equal((await get(d, `/v1/health/service/x?wait=${w}`)).status, 200, w);
    }
    assert.equal((await get(d, '/v1/health/service/x?index=1&wait=1h&stale&consistent')).status, 400);
    assert.equal((await get(d, '/v1/health/service/x?dc=dc9')).status, 500);
    assert.equal((await get(d, '/v1/health/service/x?dc=dc1&stale&cached&near=_agent&filter=Service.Port%3D%3D1')).status, 200);
  });
});

test('catalog/services blocks on the services table; health/state on the checks table', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'c-1', name: 'c', port: 1, tags: ['blue'] });
    const cat0 = await get(d, '/v1/catalog/services');
    assert.deepEqual(cat0.json(), { c: ['blue'] });
    const health0 = await get(d, '/v1/health/state/critical');
    assert.deepEqual(health0.json(), []);

    const pendingCat = get(d, `/v1/catalog/services?index=${cat0.index}&wait=5s`);
    const pendingHealth = get(d, `/v1/health/state/critical?index=${health0.index}&wait=5s`);
    await d.waitForHeldQueries(2);
    d.setServiceStatus('c-1', 'critical');
    const health1 = await pendingHealth;
    assert.deepEqual(health1.json().map((c: Json) => c.CheckID), ['service:c-1']);
    assert.equal(d.heldQueries(), 1, 'a health change does not wake catalog/services');
    d.register({ id: 'c-1', name: 'c', port: 1, tags: ['blue', 'green'], status: 'critical' });
    const cat1 = await pendingCat;
    assert.deepEqual(cat1.json(), { c: ['blue', 'green'] });
    assert.ok(Number(cat1.index) > Number(cat0.index));
    assert.equal((await get(d, '/v1/health/state/bogus')).status, 400);
  });
});

// ------------------------------------------------------------------ filters

test('passing filter drops warning, critical, serfHealth-critical and maintenance entries', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'p-ok', name: 'p', port: 1, node: 'n-ok', nodeAddress: '10.0.0.1' });
    d.register({ id: 'p-warn', name: 'p', port: 1, node: 'n-warn', status: 'warning' });
    d.register({ id: 'p-serf', name: 'p', port: 1, node: 'n-serf' });
    d.register({ id: 'p-nmaint', name: 'p', port: 1, node: 'n-maint' });
    d.register({ id: 'p-smaint', name: 'p', port: 1, node: 'n-smaint' });
    d.setNodeHealth('n-serf', 'critical');
    d.setMaintenance('n-maint', true);
    d.setServiceStatus('p-smaint', 'maintenance');
    assert.equal((await get(d, '/v1/health/service/p')).json().length, 5);
    for (const q of ['passing', 'passing=true', 'passing=1']) {
      assert.deepEqual(ids((await get(d, `/v1/health/service/p?${q}`)).json()), ['p-ok'], q);
    }
    assert.equal((await get(d, '/v1/health/service/p?passing=false')).json().length, 5);
    assert.equal((await get(d, '/v1/health/service/p?passing=maybe')).status, 400);
    const all = (await get(d, '/v1/health/service/p')).json();
    const serf = all.find((e: Json) => e.Service.ID === 'p-serf').Checks.find((c: Json) => c.CheckID === 'serfHealth');
    assert.equal(serf.Status, 'critical');
    const maint = all.find((e: Json) => e.Service.ID === 'p-nmaint').Checks.find((c: Json) => c.CheckID === '_node_maintenance');
    assert.equal(maint.Status, 'critical');
    assert.ok(all.find((e: Json) => e.Service.ID === 'p-smaint').Checks.some((c: Json) => c.CheckID === '_service_maintenance:p-smaint'));

    d.setNodeHealth('n-serf', 'passing');
    d.setMaintenance('n-maint', false);
    d.setServiceStatus('p-smaint', 'passing');
    d.setServiceStatus('p-warn', 'passing');
    assert.equal((await get(d, '/v1/health/service/p?passing')).json().length, 5);
  });
});

test('tag filter: repeatable, every tag must match (case-insensitively, as Consul)', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'g-1', name: 'g', port: 1, tags: ['a', 'b'] });
    d.register({ id: 'g-2', name: 'g', port: 2, tags: ['a'] });
    d.register({ id: 'g-3', name: 'g', port: 3, tags: ['B', 'c'] });
    assert.deepEqual(ids((await get(d, '/v1/health/service/g?tag=a')).json()), ['g-1', 'g-2']);
    assert.deepEqual(ids((await get(d, '/v1/health/service/g?tag=a&tag=b')).json()), ['g-1']);
    assert.deepEqual(ids((await get(d, '/v1/health/service/g?tag=b')).json()), ['g-1', 'g-3']);
    assert.deepEqual(ids((await get(d, '/v1/health/service/g?tag=a&tag=zzz')).json()), []);
    assert.deepEqual(
      (await get(d, '/v1/catalog/service/g?tag=c')).json().map((r: Json) => r.ServiceID),
      ['g-3'],
    );
  });
});

// ------------------------------------------------------------------ ACL

test('ACL: 403 Permission denied without the token; X-Consul-Token and Bearer accepted', async () => {
  await withDouble({ aclToken: 's3cret' }, async (d) => {
    const none = await get(d, '/v1/health/service/x');
    assert.equal(none.status, 403);
    assert.equal(none.text, 'Permission denied');
    assert.equal((await get(d, '/v1/catalog/services', { 'X-Consul-Token': 'wrong' })).status, 403);
    assert.equal((await put(d, '/v1/agent/service/register', { Name: 'x' })).status, 403);
    assert.equal((await get(d, '/v1/health/service/x', { 'X-Consul-Token': 's3cret' })).status, 200);
    assert.equal((await get(d, '/v1/health/service/x', { Authorization: 'Bearer s3cret' })).status, 200);
    assert.equal(d.requests.at(-1)?.token, 's3cret');

    const consul = new Consul({ host: '127.0.0.1', port: d.port, defaults: { token: 's3cret' } });
    const anon = new Consul({ host: '127.0.0.1', port: d.port });
    try {
      assert.deepEqual(await consul.health.service('x'), []);
      await assert.rejects(anon.health.service('x'), (err: Json) => err.statusCode === 403 && err.message === 'Permission denied');
    } finally {
      consul.destroy();
      anon.destroy();
    }
    d.setAclToken(undefined);
    assert.equal((await get(d, '/v1/health/service/x')).status, 200);
  });
});

// ------------------------------------------------------------------ faults

test('fault refuse: the listener is closed (ECONNREFUSED) and reopens on the same port', async () => {
  await withDouble({}, async (d) => {
    const port = d.port;
    const held = get(d, '/v1/health/service/x?index=999&wait=5s');
    await d.waitForHeldQueries(1);
    await d.setFault('refuse');
    await assert.rejects(held, (err: Json) => err.code === 'ECONNRESET' || err.code === 'ECONNREFUSED');
    await assert.rejects(get(d, '/v1/health/service/x'), (err: Json) => err.code === 'ECONNREFUSED');
    assert.equal(d.openConnections(), 0);
    await d.setFault(null);
    assert.equal(d.port, port);
    assert.equal((await get(d, '/v1/health/service/x')).status, 200);
  });
});

test('fault 5xx: 500 text; garbage: 200 invalid JSON with a valid index; no-index: JSON without X-Consul-Index', async () => {
  await withDouble({}, async (d) => {
    d.register({ id: 'f-1', name: 'f', port: 1 });
    const idx = d.serviceIndex('f');
    d.setFault('5xx');
    const e = await get(d, '/v1/health/service/f');
    assert.equal(e.status, 500);
    assert.match(String(e.headers['content-type']), /^text\/plain/);
    assert.equal(e.text, 'No cluster leader');

    d.setFault('garbage');
    const g = await get(d, `/v1/health/service/f?index=${idx}&wait=5s`);
    assert.equal(g.status, 200);
    assert.equal(g.index, String(idx));
    assert.throws(() => g.json());

    d.setFault('no-index');
    const n = await get(d, `/v1/health/service/f?index=${idx}&wait=5s`);
    assert.equal(n.status, 200);
    assert.equal(n.index, undefined);
    assert.deepEqual(ids(n.json()), ['f-1']);

    // The official watch gives up on a response without an index ("Watch not supported").
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    const watch = consul.watch({ method: consul.health.service, options: { service: 'f', wait: '1s' } });
    const ended = new Promise<unknown>((resolve) => {
      let err: unknown;
      watch.on('error', (x: unknown) => (err = x));
      watch.on('end', () => resolve(err));
    });
    assert.match(String((await ended as Error).message), /Watch not supported/);
    consul.destroy();

    d.setFault(null);
    assert.deepEqual(ids((await get(d, '/v1/health/service/f')).json()), ['f-1']);
  });
});

test('fault hang: requests are held open and never answered', async () => {
  await withDouble({}, async (d) => {
    d.setFault('hang');
    const ac = new AbortController();
    const hung = request(d.address, '/v1/health/service/x', { signal: ac.signal });
    await d.waitFor(() => d.hungRequests() === 1, 5000, 'hung request');
    assert.equal(d.heldQueries(), 0);
    assert.ok(d.openConnections() >= 1);
    d.setFault(null);
    assert.equal((await get(d, '/v1/health/service/x')).status, 200);
    assert.equal(d.hungRequests(), 1, 'clearing the fault does not answer what was swallowed');
    ac.abort();
    await assert.rejects(hung, (err: Json) => err.name === 'AbortError');
    await d.waitFor(() => d.hungRequests() === 0, 5000, 'hung request closed');
  });
});

test('stop() closes held sockets; 429 past http_max_conns_per_client', async () => {
  const d = new ConsulDouble({ maxJitterFraction: 0, maxConnsPerClient: 2 });
  await d.start();
  const held = get(d, '/v1/health/service/x?index=999&wait=5s');
  await d.waitForHeldQueries(1);
  const s1 = net.connect(d.port, '127.0.0.1');
  await d.waitFor(() => d.openConnections() === 2, 5000, 'two connections');
  const third = await new Promise<string>((resolve) => {
    const s = net.connect(d.port, '127.0.0.1');
    let got = '';
    s.on('data', (b) => (got += b.toString()));
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
  });
  assert.match(third, /^HTTP\/1\.1 429/);
  await d.stop();
  await assert.rejects(held);
  assert.equal(d.openConnections(), 0);
  assert.equal(d.heldQueries(), 0);
  s1.destroy();
});

// ------------------------------------------------------------------ agent API

test('agent register/deregister: validation, fixture body, ID defaults to Name, 404 on unknown', async () => {
  await withDouble({}, async (d) => {
    const missing = await put(d, '/v1/agent/service/register', { ID: 'x' });
    assert.equal(missing.status, 400);
    assert.equal((await put(d, '/v1/agent/service/register', '{not json')).status, 400);
    assert.equal((await get(d, '/v1/agent/service/register')).status, 405);

    assert.equal((await put(d, '/v1/agent/service/register', fixture('agent-service-register.json'))).status, 200);
    assert.equal((await put(d, '/v1/agent/service/register', { Name: 'solo', Port: 1 })).status, 200);
    const agent = (await get(d, '/v1/agent/services')).json();
    assert.deepEqual(Object.keys(agent), ['redis1', 'solo']);
    assert.deepEqual(agent.redis1.Weights, { Passing: 10, Warning: 1 });
    assert.deepEqual(agent.redis1.Tags, ['primary', 'v1']);
    const [redis] = (await get(d, '/v1/health/service/redis')).json();
    assert.equal(redis.Service.Meta.redis_version, '4.0');
    assert.equal(redis.Checks.find((c: Json) => c.CheckID === 'service:redis1').Status, 'critical');

    const gone = await put(d, '/v1/agent/service/deregister/nope');
    assert.equal(gone.status, 404);
    assert.match(gone.text, /Unknown service ID "nope"/);
    assert.equal((await put(d, '/v1/agent/service/deregister/solo')).status, 200);
    assert.deepEqual(Object.keys(d.agentServices()), ['redis1']);
    assert.equal((await get(d, '/v1/health/service/solo')).text, '[]');
    assert.equal((await get(d, '/v1/no/such/endpoint')).status, 404);
  });
});

test('agent checks: multiple checks get service:<ID>:N, Status honoured, maintenance endpoints', async () => {
  await withDouble({}, async (d) => {
    const body = { Name: 'm', ID: 'm-1', Port: 1, Checks: [{ TTL: '30s', Status: 'passing' }, { TTL: '30s' }] };
    assert.equal((await put(d, '/v1/agent/service/register', body)).status, 200);
    assert.equal(d.checkStatus('service:m-1:1'), 'passing');
    assert.equal(d.checkStatus('service:m-1:2'), 'critical');
    assert.equal((await put(d, '/v1/agent/service/maintenance/m-1?enable=true&reason=deploy')).status, 200);
    const [e] = (await get(d, '/v1/health/service/m')).json();
    assert.equal(e.Checks.find((c: Json) => c.CheckID === '_service_maintenance:m-1').Notes, 'deploy');
    assert.equal((await put(d, '/v1/agent/service/maintenance/m-1?enable=false')).status, 200);
    assert.equal((await put(d, '/v1/agent/maintenance?enable=true')).status, 200);
    assert.equal(d.checkStatus('_node_maintenance'), 'critical');
    assert.equal((await put(d, '/v1/agent/maintenance?enable=false')).status, 200);
    assert.equal(d.checkStatus('_node_maintenance'), undefined);
    // Re-registering with fewer checks removes the others.
    assert.equal((await put(d, '/v1/agent/service/register', { Name: 'm', ID: 'm-1', Port: 1, Check: { TTL: '30s' } })).status, 200);
    assert.deepEqual(Object.keys((await get(d, '/v1/agent/checks')).json()), ['service:m-1']);
  });
});

test('TTL checks: pass/warn/fail with note, update with {Status, Output}, expiry, 404 and non-TTL errors', async () => {
  await withDouble({}, async (d) => {
    const reg = { Name: 'ttl', Port: 1, Check: { CheckID: 'ttl-check', TTL: '300ms' } };
    assert.equal((await put(d, '/v1/agent/service/register', reg)).status, 200);
    assert.equal(d.checkStatus('ttl-check'), 'critical');
    assert.equal((await put(d, '/v1/agent/check/pass/ttl-check?note=fine')).status, 200);
    assert.equal(d.checkStatus('ttl-check'), 'passing');
    const [e] = (await get(d, '/v1/health/service/ttl?passing')).json();
    assert.equal(e.Checks[0].Output, 'fine');
    assert.equal((await put(d, '/v1/agent/check/warn/ttl-check')).status, 200);
    assert.equal(d.checkStatus('ttl-check'), 'warning');
    assert.equal((await put(d, '/v1/agent/check/update/ttl-check', fixture('agent-check-update.json'))).status, 200);
    assert.equal(d.checkStatus('ttl-check'), 'passing');
    assert.equal((await put(d, '/v1/agent/check/update/ttl-check', { Status: 'bogus' })).status, 400);
    assert.equal((await put(d, '/v1/agent/check/fail/ttl-check')).status, 200);
    assert.equal(d.checkStatus('ttl-check'), 'critical');
    assert.equal((await put(d, '/v1/agent/check/pass/ttl-check')).status, 200);
    await d.waitFor(() => d.checkStatus('ttl-check') === 'critical', 5000, 'TTL expiry');
    const [expired] = (await get(d, '/v1/health/service/ttl')).json();
    assert.equal(expired.Checks[0].Output, 'TTL expired');

    assert.equal((await put(d, '/v1/agent/check/pass/nope')).status, 404);
    assert.equal((await put(d, '/v1/agent/service/register', { Name: 'h', Port: 1, Check: { HTTP: 'http://127.0.0.1:1/', Interval: '10s' } })).status, 200);
    assert.equal((await put(d, '/v1/agent/check/pass/service:h')).status, 500);
  });
});

test('HTTP and TCP checks really run: 200 passing, 429 warning, 500 critical', async () => {
  let code = 200;
  const target = http.createServer((_req, res) => {
    res.writeHead(code);
    res.end('status ' + code);
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const tport = (target.address() as AddressInfo).port;
  try {
    await withDouble({ minCheckIntervalMs: 20 }, async (d) => {
      const reg = { Name: 'hc', Port: tport, Check: { HTTP: `http://127.0.0.1:${tport}/health`, Interval: '50ms', Timeout: '1s' } };
      assert.equal((await put(d, '/v1/agent/service/register', reg)).status, 200);
      await d.waitFor(() => d.checkStatus('service:hc') === 'passing', 5000, 'passing');
      code = 429;
      await d.waitFor(() => d.checkStatus('service:hc') === 'warning', 5000, 'warning');
      code = 500;
      await d.waitFor(() => d.checkStatus('service:hc') === 'critical', 5000, 'critical');
      const [e] = (await get(d, '/v1/health/service/hc')).json();
      assert.match(e.Checks[0].Output, /500/);

      const tcp = { Name: 'tc', Port: tport, Check: { TCP: `127.0.0.1:${tport}`, Interval: '50ms' } };
      assert.equal((await put(d, '/v1/agent/service/register', tcp)).status, 200);
      await d.waitFor(() => d.checkStatus('service:tc') === 'passing', 5000, 'tcp passing');
      // Deregistering stops the check.
      assert.equal((await put(d, '/v1/agent/service/deregister/hc')).status, 200);
      assert.equal(d.checkStatus('service:hc'), undefined);
    });
  } finally {
    await new Promise<void>((r) => target.close(() => r()));
  }
});

test('DeregisterCriticalServiceAfter reaps a service whose check stays critical', async () => {
  await withDouble({ minDeregisterCriticalMs: 100 }, async (d) => {
    const reg = { Name: 'reap', Port: 1, Check: { TTL: '30s', DeregisterCriticalServiceAfter: '150ms' } };
    assert.equal((await put(d, '/v1/agent/service/register', reg)).status, 200);
    const first = await get(d, '/v1/health/service/reap');
    assert.equal(first.json().length, 1);
    const pending = get(d, `/v1/health/service/reap?index=${first.index}&wait=5s`);
    const gone = await pending;
    assert.equal(gone.text, '[]');
    assert.deepEqual(d.agentServices(), {});
  });
});

// ------------------------------------------------------------------ facts 26-29

/** Polls `check` until it returns a value (not undefined/false), with a generous limit; never a fixed sleep. */
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const leaderHeaders = (a: Answer): [unknown, unknown, unknown] => [
  a.headers['x-consul-knownleader'],
  a.headers['x-consul-lastcontact'],
  a.headers['x-consul-effective-consistency'],
];

test('fact 26: ?stale/?consistent, leader headers and Effective-Consistency; leaderless: 500 for default/consistent, stale keeps answering and blocking', async () => {
  await withDouble({ lastContactMs: 250 }, async (d) => {
    d.register({ id: 'l-1', name: 'l', port: 1 });
    const both = await get(d, '/v1/health/service/l?stale&consistent');
    assert.equal(both.status, 400);
    assert.match(String(both.headers['content-type']), /^text\/plain/);
    assert.equal(both.text, 'Cannot specify ?stale with ?consistent, conflicting semantics.');

    // The leader answers default and consistent reads (LastContact 0); a stale read is answered by a follower.
    for (const path of ['/v1/health/service/l', '/v1/catalog/services', '/v1/catalog/service/l', '/v1/health/state/any', '/v1/health/checks/l']) {
      const sep = path.includes('?') ? '&' : '?';
      assert.deepEqual(leaderHeaders(await get(d, path)), ['true', '0', 'default'], path);
      assert.deepEqual(leaderHeaders(await get(d, `${path}${sep}consistent`)), ['true', '0', 'consistent'], path);
      assert.deepEqual(leaderHeaders(await get(d, `${path}${sep}stale`)), ['true', '250', 'stale'], path);
    }
    d.setLastContact(40);
    assert.deepEqual(leaderHeaders(await get(d, '/v1/health/service/l?stale=true')), ['true', '40', 'stale']);
    assert.equal(JSON.parse((await get(d, '/v1/status/leader')).text), '127.0.0.1:8300');

    // Leader lost: held default/consistent queries fail at once, the held stale one stays held.
    const idx = (await get(d, '/v1/health/service/l')).index;
    const heldDefault = get(d, `/v1/health/service/l?index=${idx}&wait=60s`);
    const heldConsistent = get(d, `/v1/health/service/l?consistent&index=${idx}&wait=60s`);
    const heldStale = get(d, `/v1/health/service/l?stale&index=${idx}&wait=60s`);
    await d.waitForHeldQueries(3);
    d.setLeader(false);
    assert.equal(d.hasLeader(), false);
    for (const a of [await heldDefault, await heldConsistent]) {
      assert.equal(a.status, 500);
      assert.equal(a.text, 'No cluster leader');
      assert.equal(a.headers['x-consul-knownleader'], 'false');
    }
    assert.equal(d.heldQueries(), 1, 'the stale query is still held');

    for (const path of ['/v1/health/service/l', '/v1/health/service/l?consistent', '/v1/catalog/services', '/v1/health/state/any?index=1&wait=1s']) {
      const a = await get(d, path);
      assert.equal(a.status, 500, path);
      assert.match(String(a.headers['content-type']), /^text\/plain/);
      assert.equal(a.text, 'No cluster leader', path);
    }
    const stale = await get(d, '/v1/health/service/l?stale');
    assert.equal(stale.status, 200);
    assert.deepEqual(ids(stale.json()), ['l-1']);
    assert.equal(stale.headers['x-consul-knownleader'], 'false');
    assert.equal(stale.headers['x-consul-effective-consistency'], 'stale');
    assert.ok(Number(stale.headers['x-consul-lastcontact']) >= 40);
    // A follower's last contact keeps growing while there is no leader.
    await until('LastContact to grow', async () => Number((await get(d, '/v1/health/service/l?stale')).headers['x-consul-lastcontact']) > 60);
    assert.equal(JSON.parse((await get(d, '/v1/status/leader')).text), '', 'Status.Leader is "" without a leader');

    // Stale blocking still works leaderless: a change wakes the held query.
    d.register({ id: 'l-2', name: 'l', port: 2 });
    const woke = await heldStale;
    assert.equal(woke.status, 200);
    assert.deepEqual(ids(woke.json()), ['l-1', 'l-2']);
    assert.ok(BigInt(woke.index!) > BigInt(idx!));
    assert.equal(woke.headers['x-consul-knownleader'], 'false');
    const pending = get(d, `/v1/health/service/l?stale&index=${woke.index}&wait=60s`);
    await d.waitForHeldQueries(1);
    d.setServiceStatus('l-1', 'critical');
    assert.ok(BigInt((await pending).index!) > BigInt(woke.index!));

    // The official client: stale reads work, default reads get the 500 text as the error.
    // (Its health.service type omits stale/consistent, which lib/utils.js sends as ?stale=1 / ?consistent=1.)
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    const opts = (o: Record<string, unknown>) => o as unknown as { service: string };
    try {
      assert.deepEqual(ids(await consul.health.service(opts({ service: 'l', stale: true }))), ['l-1', 'l-2']);
      assert.equal(d.requests.at(-1)?.query['stale'], '1');
      await assert.rejects(consul.health.service('l'), (err: Json) => err.statusCode === 500 && err.message === 'No cluster leader');
      await assert.rejects(consul.health.service(opts({ service: 'l', consistent: true })), (err: Json) => err.statusCode === 500);
      d.setLeader(true);
      const back = await get(d, '/v1/health/service/l');
      assert.equal(back.status, 200);
      assert.deepEqual(leaderHeaders(back), ['true', '0', 'default']);
      assert.deepEqual(ids(await consul.health.service('l')), ['l-1', 'l-2']);
    } finally {
      consul.destroy();
    }
  });
  // Leaderless from the start.
  await withDouble({ leader: false }, async (d) => {
    assert.equal((await get(d, '/v1/catalog/services')).status, 500);
    assert.equal((await get(d, '/v1/catalog/services?stale')).status, 200);
  });
});

test('fact 27: ?dc= forwards catalog and health reads to the linked datacenter over HTTP, blocking included; unknown/unreachable dc is 500', async () => {
  const dc2 = new ConsulDouble({ maxJitterFraction: 0, datacenter: 'dc2', agentNode: 'dc2-node', aclToken: 'tok', lastContactMs: 7 });
  await dc2.start();
  try {
    await withDouble({ aclToken: 'tok', peers: [dc2] }, async (d) => {
      const auth = { 'X-Consul-Token': 'tok' };
      assert.equal(d.datacenter, 'dc1');
      assert.equal(d.peer('dc2'), dc2);
      assert.equal(dc2.peer('dc1'), d, 'links go both ways');
      d.register({ id: 'web-dc1-1', name: 'web', port: 81 });
      // Some churn so dc1 and dc2 indexes differ.
      for (let i = 0; i < 5; i++) dc2.touch('other');
      dc2.register({ id: 'web-dc2-1', name: 'web', address: '10.2.0.1', port: 80 });

      const local = await get(d, '/v1/health/service/web', auth);
      assert.deepEqual(ids(local.json()), ['web-dc1-1']);
      assert.equal(local.json()[0].Node.Datacenter, 'dc1');
      const own = await get(d, '/v1/health/service/web?dc=dc1', auth);
      assert.deepEqual(ids(own.json()), ['web-dc1-1'], 'its own datacenter is served locally');
      assert.equal(dc2.requests.length, 0);

      const remote = await get(d, '/v1/health/service/web?dc=dc2', auth);
      assert.equal(remote.status, 200);
      assert.deepEqual(ids(remote.json()), ['web-dc2-1']);
      assert.equal(remote.json()[0].Node.Datacenter, 'dc2');
      assert.equal(remote.json()[0].Node.Node, 'dc2-node');
      assert.equal(remote.index, dc2.serviceIndexBig('web').toString());
      assert.notEqual(remote.index, local.index);
      assert.equal(dc2.requests.at(-1)?.path, '/v1/health/service/web', 'really forwarded over HTTP');
      assert.equal(dc2.requests.at(-1)?.token, 'tok', 'the token travels with the forwarded request');
      const staleRemote = await get(d, '/v1/health/service/web?dc=dc2&stale', auth);
      assert.deepEqual(leaderHeaders(staleRemote), ['true', '7', 'stale'], "the remote server's headers come back");

      const cat = await get(d, '/v1/catalog/services?dc=dc2', auth);
      assert.deepEqual(cat.json(), { web: [] });
      assert.equal(cat.index, dc2.catalogIndexBig().toString());
      const [row] = (await get(d, '/v1/catalog/service/web?dc=dc2', auth)).json();
      assert.equal(row.Datacenter, 'dc2');
      assert.equal(row.ServiceID, 'web-dc2-1');
      assert.equal((await get(d, '/v1/health/state/any?dc=dc2', auth)).index, dc2.healthIndexBig().toString());

      // The ACL check stays on the local agent: refused here, never forwarded.
      dc2.clearRequests();
      const denied = await get(d, '/v1/health/service/web?dc=dc2');
      assert.equal(denied.status, 403);
      assert.equal(denied.text, 'Permission denied');
      assert.equal(dc2.requests.length, 0);

      // Blocking: held on dc2's index, woken by dc2's change only, answered with dc2's data and index.
      const pending = get(d, `/v1/health/service/web?dc=dc2&index=${remote.index}&wait=60s`, auth);
      await dc2.waitForHeldQueries(1);
      assert.equal(d.heldQueries(), 0);
      assert.equal(d.inflightForwards(), 1);
      d.register({ id: 'web-dc1-2', name: 'web', port: 82 });
      assert.equal(dc2.heldQueries(), 1, "a dc1 change does not wake a dc2 watch");
      dc2.register({ id: 'web-dc2-2', name: 'web', address: '10.2.0.2', port: 80 });
      const woke = await pending;
      assert.deepEqual(ids(woke.json()), ['web-dc2-1', 'web-dc2-2']);
      assert.equal(woke.index, dc2.serviceIndexBig('web').toString());
      assert.ok(BigInt(woke.index!) > BigInt(remote.index!));
      await until('forward finished', () => d.inflightForwards() === 0);

      // A client that gives up releases the query held in dc2.
      const ac = new AbortController();
      const abandoned = request(d.address, `/v1/health/service/web?dc=dc2&index=${woke.index}&wait=60s`, { headers: auth, signal: ac.signal });
      await dc2.waitForHeldQueries(1);
      ac.abort();
      await assert.rejects(abandoned);
      await dc2.waitFor(() => dc2.heldQueries() === 0, 8000, 'dc2 hold released');

      const unknown = await get(d, '/v1/health/service/web?dc=dc9', auth);
      assert.equal(unknown.status, 500);
      assert.equal(unknown.text, 'No path to datacenter');

      // The official client through the dc1 agent, one read and a watch.
      const consul = new Consul({ host: '127.0.0.1', port: d.port, defaults: { token: 'tok' } });
      const watch = consul.watch({ method: consul.health.service, options: { service: 'web', dc: 'dc2', wait: '5s' } as unknown as Record<string, string> });
      const w = collect(watch);
      try {
        assert.deepEqual(ids(await consul.health.service({ service: 'web', dc: 'dc2' })), ['web-dc2-1', 'web-dc2-2']);
        assert.deepEqual(Object.keys(await consul.catalog.service.list({ dc: 'dc2' })).sort(), ['web']);
        const first = await w.next();
        assert.deepEqual(ids(first.data), ['web-dc2-1', 'web-dc2-2']);
        assert.equal(first.index, dc2.serviceIndexBig('web').toString());
        await dc2.waitForHeldQueries(1);
        dc2.deregister('web-dc2-1');
        const next = await w.next();
        assert.deepEqual(ids(next.data), ['web-dc2-2']);
        assert.equal(next.index, dc2.serviceIndexBig('web').toString());
        assert.deepEqual(w.errors, []);
      } finally {
        watch.end();
        consul.destroy();
      }

      // Unreachable (its servers are down) and unlinked datacenters.
      await dc2.stop();
      const down = await get(d, '/v1/health/service/web?dc=dc2', auth);
      assert.equal(down.status, 500);
      assert.equal(down.text, 'No path to datacenter');
      d.unlink(dc2);
      assert.equal(d.peer('dc2'), undefined);
      assert.equal((await get(d, '/v1/catalog/services?dc=dc2', auth)).text, 'No path to datacenter');
      assert.throws(() => d.link(new ConsulDouble({ datacenter: 'dc1' })), /both doubles are datacenter dc1/);
    });
  } finally {
    await dc2.stop();
  }
});

test('fact 28: identical re-registration writes nothing; a port/address change moves the service, not its checks or health/state', async () => {
  await withDouble({ raftIndexFields: true }, async (d) => {
    const reg = { Name: 'rr', ID: 'rr-1', Address: '10.0.0.1', Port: 8080, Tags: ['a'], Check: { CheckID: 'rr-ttl', TTL: '30s', Status: 'passing' } };
    assert.equal((await put(d, '/v1/agent/service/register', reg)).status, 200);
    d.register({ id: 'other-1', name: 'other', port: 1 });
    const snap = async () => ({
      svc: await get(d, '/v1/health/service/rr'),
      state: await get(d, '/v1/health/state/any'),
      names: await get(d, '/v1/catalog/services'),
      rows: await get(d, '/v1/catalog/service/rr'),
      raft: d.raftIndex(),
      service: d.serviceIndexes('rr-1'),
      check: d.checkIndexes('rr-ttl'),
    });
    const s0 = await snap();
    // catalog/service rows carry CreateIndex/ModifyIndex (as the fixture); raftIndexFields adds them to health answers.
    const [row0] = s0.rows.json();
    assert.equal(BigInt(row0.CreateIndex), s0.service!.createIndex);
    assert.equal(BigInt(row0.ModifyIndex), s0.service!.modifyIndex);
    const [e0] = s0.svc.json();
    assert.equal(BigInt(e0.Service.ModifyIndex), s0.service!.modifyIndex);
    assert.equal(BigInt(e0.Checks.find((c: Json) => c.CheckID === 'rr-ttl').ModifyIndex), s0.check!.modifyIndex);
    assert.ok(typeof e0.Node.CreateIndex === 'number' && typeof e0.Node.ModifyIndex === 'number');
    assert.ok(s0.state.json().every((c: Json) => typeof c.ModifyIndex === 'number'));

    // The same fields again, through the agent API and through register(): nothing is written.
    assert.equal((await put(d, '/v1/agent/service/register', reg)).status, 200);
    d.register({ id: 'other-1', name: 'other', port: 1 });
    const s1 = await snap();
    assert.equal(s1.raft, s0.raft, 'no raft write');
    for (const k of ['svc', 'state', 'names', 'rows'] as const) {
      assert.equal(s1[k].index, s0[k].index, k);
      assert.equal(s1[k].text, s0[k].text, k);
    }
    assert.deepEqual([s1.service, s1.check], [s0.service, s0.check]);

    // Port-only change: the service watcher wakes; the health/state watcher does not.
    const heldState = get(d, `/v1/health/state/any?index=${s0.state.index}&wait=1s`);
    const heldSvc = get(d, `/v1/health/service/rr?index=${s0.svc.index}&wait=60s`);
    await d.waitForHeldQueries(2);
    assert.equal((await put(d, '/v1/agent/service/register', { ...reg, Port: 9090 })).status, 200);
    const woke = await heldSvc;
    assert.ok(BigInt(woke.index!) > BigInt(s0.svc.index!));
    const [e1] = woke.json();
    assert.equal(e1.Service.Port, 9090);
    assert.equal(BigInt(e1.Service.ModifyIndex), BigInt(woke.index!), "the service's ModifyIndex moved");
    assert.equal(e1.Service.CreateIndex, e0.Service.CreateIndex);
    assert.deepEqual(e1.Checks, e0.Checks, "its checks' ModifyIndex did not");
    assert.equal(d.heldQueries(), 1, 'health/state/any is still held');
    const state = await heldState;
    assert.equal(state.index, s0.state.index, 'health/state/any times out with the same index');
    assert.equal(state.text, s0.state.text, '... and the same body');

    const s2 = await snap();
    assert.equal(s2.state.index, s0.state.index);
    assert.ok(BigInt(s2.names.index!) > BigInt(s0.names.index!), 'catalog/services (services table) moved');
    assert.equal(s2.names.text, s0.names.text, '... with identical data');
    const [row2] = s2.rows.json();
    assert.equal(row2.ServicePort, 9090);
    assert.equal(row2.CreateIndex, row0.CreateIndex);
    assert.ok(BigInt(row2.ModifyIndex) > BigInt(row0.ModifyIndex));
    assert.equal(s2.service!.createIndex, s0.service!.createIndex);
    assert.ok(s2.service!.modifyIndex > s0.service!.modifyIndex);
    assert.deepEqual(s2.check, s0.check);
    assert.ok(BigInt((await get(d, '/v1/health/service/other')).index!) < BigInt(s2.svc.index!), 'other services are not touched');

    // Address-only change through the test API: same pattern.
    d.register({ id: 'other-1', name: 'other', port: 1, address: '10.9.9.9' });
    assert.equal((await get(d, '/v1/health/state/any')).index, s0.state.index);
    assert.ok(d.serviceIndexes('other-1')!.modifyIndex > s2.raft);

    // A check status change moves the check (and health/state), not the service's ModifyIndex.
    const namesBefore = (await get(d, '/v1/catalog/services')).index;
    assert.equal((await put(d, '/v1/agent/check/warn/rr-ttl')).status, 200);
    const s3 = await snap();
    assert.ok(s3.check!.modifyIndex > s0.check!.modifyIndex);
    assert.equal(s3.check!.createIndex, s0.check!.createIndex);
    assert.deepEqual(s3.service, s2.service);
    assert.ok(BigInt(s3.state.index!) > BigInt(s0.state.index!));
    assert.equal(s3.names.index, namesBefore, 'catalog/services ignores check changes');

    // A check definition change (TTL 30s -> 60s, status kept) also rewrites the check only.
    assert.equal((await put(d, '/v1/agent/service/register', { ...reg, Port: 9090, Check: { CheckID: 'rr-ttl', TTL: '60s' } })).status, 200);
    const s4 = await snap();
    assert.equal(d.checkStatus('rr-ttl'), 'warning');
    assert.ok(s4.check!.modifyIndex > s3.check!.modifyIndex);
    assert.deepEqual(s4.service, s3.service);
    assert.ok(BigInt(s4.state.index!) > BigInt(s3.state.index!));
  });
  // Without the option, health answers keep the documented shape (no index fields).
  await withDouble({}, async (d) => {
    d.register({ id: 'x-1', name: 'x', port: 1 });
    const [e] = (await get(d, '/v1/health/service/x')).json();
    assert.equal('ModifyIndex' in e.Service || 'ModifyIndex' in e.Node || 'ModifyIndex' in e.Checks[0], false);
  });
});

test('fact 29: uint64 indexes above 2^53 are printed, parsed and compared exactly', async () => {
  const start = 2n ** 53n + 1n;
  await withDouble({ startIndex: start }, async (d) => {
    d.register({ id: 'big-1', name: 'big', port: 1 });
    const first = await get(d, '/v1/health/service/big');
    const idx = BigInt(first.index!);
    assert.ok(idx > 2n ** 53n);
    assert.equal(idx, d.serviceIndexBig('big'));
    assert.notEqual(BigInt(Number(start)), start, 'a Number would round the start index');
    assert.equal(d.serviceIndexes('big-1')!.createIndex, idx);
    for (const p of ['/v1/health/service/none', '/v1/catalog/services', '/v1/catalog/service/big', '/v1/health/state/any', '/v1/agent/services', '/v1/status/leader']) {
      assert.ok(BigInt((await get(d, p)).index!) >= start, p);
    }

    // JSON index fields are exact digits, not rounded Numbers.
    const rows = await get(d, '/v1/catalog/service/big');
    const created = /"CreateIndex":(\d+)/.exec(rows.text)?.[1];
    const modified = /"ModifyIndex":(\d+)/.exec(rows.text)?.[1];
    assert.equal(created, d.serviceIndexes('big-1')!.createIndex.toString());
    assert.equal(modified, idx.toString());

    // ?index below the current index answers at once; equal or above blocks until the index passes it.
    const lower = await get(d, `/v1/health/service/big?index=${idx - 1n}&wait=60s`);
    assert.equal(lower.index, idx.toString());
    const heldEqual = get(d, `/v1/health/service/big?index=${idx}&wait=60s`);
    const heldAbove = get(d, `/v1/health/service/big?index=${idx + 1n}&wait=60s`);
    await d.waitForHeldQueries(2);
    d.touch('big');
    assert.equal(d.serviceIndexBig('big'), idx + 1n);
    const eq = await heldEqual;
    assert.equal(eq.index, (idx + 1n).toString());
    assert.equal(d.heldQueries(), 1, 'index+1 is not greater than ?index=index+1: still held');
    d.touch('big');
    assert.equal((await heldAbove).index, (idx + 2n).toString());

    // Non-uint64 indexes are rejected as Consul's strconv.ParseUint does.
    for (const bad of ['abc', '1e3', '-1', '+5', '0x10', '1.0', ' 1', '18446744073709551616']) {
      const a = await get(d, `/v1/health/service/big?index=${encodeURIComponent(bad)}`);
      assert.equal(a.status, 400, bad);
      assert.equal(a.text, 'Invalid index', bad);
    }
    const max = await get(d, '/v1/health/service/big?index=18446744073709551615&wait=10ms');
    assert.equal(max.status, 200, 'the largest uint64 is a valid index');
    assert.equal(max.index, (idx + 2n).toString());

    // The official client (BigInt indexes) watches exactly: its ?index is the header it saw, digit for digit.
    const consul = new Consul({ host: '127.0.0.1', port: d.port });
    const watch = consul.watch({ method: consul.health.service, options: { service: 'big', wait: '5s' } as unknown as Record<string, string> });
    const w = collect(watch);
    try {
      const one = await w.next();
      assert.equal(one.index, d.serviceIndexBig('big').toString());
      await d.waitForHeldQueries(1);
      d.register({ id: 'big-2', name: 'big', port: 2 });
      const two = await w.next();
      assert.equal(two.index, d.serviceIndexBig('big').toString());
      assert.deepEqual(ids(two.data), ['big-1', 'big-2']);
      const sent = d.requests.filter((r) => r.path === '/v1/health/service/big' && r.query['index'] !== undefined).map((r) => String(r.query['index']));
      assert.ok(sent.includes(one.index), `the client sent ${one.index} exactly (sent: ${sent.join(', ')})`);
      assert.deepEqual(w.errors, []);
    } finally {
      watch.end();
      consul.destroy();
    }

    // resetIndex takes a bigint too.
    d.resetIndex(start);
    assert.equal((await get(d, '/v1/health/service/big')).index, start.toString());
  });
  // Defaults unchanged: indexes start low.
  await withDouble({}, async (d) => {
    assert.ok(Number((await get(d, '/v1/catalog/services')).index) < 10);
  });
});
