import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ChildGateway, startChildGateway } from '../support/child-gateway.ts';
import { TestCa } from '../support/certificates.ts';
import { ConsulDouble } from '../support/consul-double.ts';
import { adminRoutes, ensureBuilt, metricValue, rawRequest, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

let dir: string;
let upstream: TestUpstream;
/** /slow requests the upstream holds until the test releases them. */
const slow = new Map<string, () => void>();

before(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'waygate-workers-'));
  upstream = await startUpstream('workers', {
    handler: (request, response: ServerResponse) => {
      const answer = () => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: request.url }));
      if (request.url?.startsWith('/slow')) slow.set(request.url, answer);
      else answer();
    },
  });
});

after(async () => {
  for (const answer of slow.values()) answer();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Cluster {
  gw: ChildGateway;
  url: string;
  admin: string;
  file: string;
  yaml: (routes: string) => string;
}

async function startCluster(name: string, workers: number, drainDelay = '0s'): Promise<Cluster> {
  const port = await deadPort();
  const adminPort = await deadPort();
  const file = join(dir, `${name}.yaml`);
  const yaml = (routes: string) => `server: { host: 127.0.0.1, port: ${port}, workers: ${workers} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: ${drainDelay}, timeout: 60s }
registry:
  static:
    services:
      svc: { instances: ["${upstream.url}"] }
      spare: { instances: ["${upstream.url}"] }
routes:
  - { name: svc, match: { pathPrefix: /svc }, service: svc, stripPrefix: true }
${routes}`;
  writeFileSync(file, yaml(''));
  const admin = `http://127.0.0.1:${adminPort}`;
  const gw = await startChildGateway(file, admin);
  return { gw, url: `http://127.0.0.1:${port}`, admin, file, yaml };
}

/**
 * True once a connect is refused. A bare connect, no request: in the instant the workers close, the
 * primary may still accept a connection it then holds until it exits (Node's cluster hands it back and forth).
 */
function portRefuses(url: string): Promise<boolean> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port) });
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once('connect', () => socket.destroy());
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
    socket.once('close', () => resolve(false));
  });
}

/** Requests on fresh connections, so the primary hands them to every worker in turn. */
async function statuses(url: string, path: string, count: number): Promise<number[]> {
  const answers = await Promise.all(Array.from({ length: count }, () => rawRequest(url, { path })));
  return answers.map((answer) => answer.status);
}

describe('server.workers', () => {
  test('workers: 2 runs a primary and two workers; every worker serves and /metrics sums them', async (t) => {
    const { gw, url, admin } = await startCluster('start', 2);
    t.after(() => gw.kill());
    assert.equal(gw.workerPids().length, 2, gw.output());
    const serving = gw.logs('worker serving');
    assert.equal(serving.length, 2);
    assert.notEqual(serving[0]!.pid, serving[1]!.pid);

    assert.deepEqual(await statuses(url, '/svc/a', 40), Array(40).fill(200));
    // The primary hands connections to the workers in turn; only a sum over both sees all 40.
    assert.equal(await metricValue(admin, 'waygate_requests_total', { route: 'svc', method: 'GET', code: '200' }), 40);
    // Gauges every worker holds the same copy of are not multiplied by the worker count.
    assert.equal(await metricValue(admin, 'waygate_instances', { service: 'svc', tags: '', state: 'healthy' }), 1);
    assert.equal(await metricValue(admin, 'waygate_config_version'), 1);

    const view = await adminRoutes(admin);
    assert.deepEqual(view.routes.map((route) => route.name), ['svc']);
    assert.equal(view.services.svc!.instances.length, 1);
    assert.equal(view.services.svc!.instances[0]!.url, upstream.url);
  });

  test('kill -9 of a worker: the other keeps serving, a replacement starts and has the table before it takes traffic', async (t) => {
    const { gw, url, admin } = await startCluster('kill', 2);
    t.after(() => gw.kill());
    assert.deepEqual(await statuses(url, '/svc/before', 40), Array(40).fill(200));
    const served = { route: 'svc', method: 'GET', code: '200' };
    assert.equal(await metricValue(admin, 'waygate_requests_total', served), 40);
    const [victim, survivor] = gw.workerPids();
    process.kill(victim!, 'SIGKILL');
    const replaced = await waitFor('a replacement worker', () => {
      const pids = gw.workerPids();
      return pids.length === 2 && !pids.includes(victim!) && pids.includes(survivor!) ? pids : undefined;
    }, 20_000, 20);
    assert.equal(replaced.length, 2);
    await waitFor('the primary to log the death', () => gw.logs('worker died; starting a replacement').length === 1, 10_000);
    await waitFor('the replacement to serve', () => gw.logs('worker serving').length === 3, 20_000, 20);
    // A worker that listened before it had the table would answer 404 (no route) to its share.
    assert.deepEqual(await statuses(url, '/svc/after', 40), Array(40).fill(200));
    assert.equal((await fetch(`${admin}/health/ready`)).status, 200);
    // The dead worker's share of the first 40 stays in the sum: a counter that fell would read as a reset.
    assert.equal(await metricValue(admin, 'waygate_requests_total', served), 80);
  });

  test('SIGTERM to the primary drains every worker: requests in flight on both finish, then all processes exit 0', async (t) => {
    const { gw, url, admin } = await startCluster('drain', 2);
    t.after(() => gw.kill());
    const workers = gw.workerPids();
    const inflight = Array.from({ length: 6 }, (_, i) => rawRequest(url, { path: `/svc/slow/drain/${i}` }));
    await waitFor('the upstream to hold six requests', () => [...slow.keys()].filter((key) => key.startsWith('/slow/drain/')).length === 6);
    gw.child.kill('SIGTERM');
    await waitFor('/health/ready to turn 503', async () => (await fetch(`${admin}/health/ready`)).status === 503, 10_000, 10);
    await waitFor('the public port to close', () => portRefuses(url), 10_000, 10);
    assert.equal(gw.child.exitCode, null, 'the primary waits for the workers');
    for (const [key, answer] of slow) {
      if (!key.startsWith('/slow/drain/')) continue;
      slow.delete(key);
      answer();
    }
    const answers = await Promise.all(inflight);
    assert.deepEqual(answers.map((answer) => answer.status), Array(6).fill(200));
    assert.deepEqual(await gw.exit, { code: 0, signal: null }, gw.output());
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} must be gone`);
  });

  test('a reload (rename onto the path, then SIGHUP) reaches every worker', async (t) => {
    const { gw, url, admin, file, yaml } = await startCluster('reload', 2);
    t.after(() => gw.kill());
    assert.deepEqual(await statuses(url, '/added/x', 10), Array(10).fill(404));
    writeFileSync(`${file}.next`, yaml('  - { name: added, match: { pathPrefix: /added }, service: svc, stripPrefix: true }\n'));
    renameSync(`${file}.next`, file);
    gw.child.kill('SIGHUP');
    await waitFor('version 2', async () => ((await (await fetch(`${admin}/admin/config`)).json()) as { version: number }).version >= 2, 10_000);
    await waitFor('the new route on every worker', async () => (await statuses(url, '/added/x', 10)).every((status) => status === 200), 10_000);
    assert.equal(gw.workerPids().length, 2, 'a reload restarts no worker');
  });

  test('a route removed by one reload and restored by the next serves at once on every worker', async (t) => {
    const { gw, url, admin, file, yaml } = await startCluster('restore', 2);
    t.after(() => gw.kill());
    const other = '  - { name: other, match: { pathPrefix: /other }, service: spare, stripPrefix: true }\n';
    const version = async () => ((await (await fetch(`${admin}/admin/config`)).json()) as { version: number }).version;
    const reloadTo = async (text: string, expected: number) => {
      writeFileSync(`${file}.next`, text);
      renameSync(`${file}.next`, file);
      gw.child.kill('SIGHUP');
      await waitFor(`version ${expected}`, async () => (await version()) >= expected, 10_000);
    };
    await reloadTo(yaml(other), 2);
    await waitFor('the route on every worker', async () => (await statuses(url, '/other/x', 10)).every((status) => status === 200), 10_000);
    await reloadTo(yaml(''), 3);
    await waitFor('the route gone from every worker', async () => (await statuses(url, '/other/x', 10)).every((status) => status === 404), 10_000);
    await reloadTo(yaml(other), 4);
    // Once a worker has the route again, its pool has the instances too: never 503 for want of them.
    await waitFor('the route back on every worker', async () => {
      const seen = await statuses(url, '/other/x', 10);
      assert.ok(!seen.includes(503), `a worker served the restored route with no instances: ${seen}`);
      return seen.every((status) => status === 200);
    }, 10_000);
  });

  test('Consul sees one set of watches whatever the worker count: only the primary asks', async (t) => {
    const double = new ConsulDouble({ maxJitterFraction: 0 });
    await double.start();
    t.after(() => double.stop());
    double.register({ id: 'api-1', name: 'api', node: 'n1', nodeAddress: '127.0.0.1', address: '127.0.0.1', port: upstream.port });
    const port = await deadPort();
    const adminPort = await deadPort();
    const file = join(dir, 'consul.yaml');
    writeFileSync(file, `server: { host: 127.0.0.1, port: ${port}, workers: 3 }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 5s }
registry:
  consul: { address: "${double.address}", wait: 2s }
routes:
  - { name: api, match: { pathPrefix: /api }, service: api, stripPrefix: true }
`);
    const gw = await startChildGateway(file, `http://127.0.0.1:${adminPort}`);
    t.after(() => gw.kill());
    assert.deepEqual(await statuses(`http://127.0.0.1:${port}`, '/api/x', 12), Array(12).fill(200));
    const reads = double.requests.filter((request) => request.path === '/v1/health/service/api');
    // Each watcher starts with one read without an index; four processes watching would make four.
    assert.equal(reads.filter((request) => request.query.index === undefined).length, 1, JSON.stringify(reads.map((r) => r.query)));
  });

  test('server.tls with workers: every worker terminates TLS from the boot config\'s certificate', async (t) => {
    const ca = new TestCa(dir, 'waygate workers test CA');
    const { cert, key } = ca.sign('gateway', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    const port = await deadPort();
    const adminPort = await deadPort();
    const file = join(dir, 'tls.yaml');
    writeFileSync(file, `server: { host: 127.0.0.1, port: ${port}, workers: 2, tls: { cert: "${cert}", key: "${key}" } }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 5s }
registry:
  static:
    services:
      svc: { instances: ["${upstream.url}"] }
routes:
  - { name: svc, match: { pathPrefix: /svc }, service: svc, stripPrefix: true }
`);
    const gw = await startChildGateway(file, `http://127.0.0.1:${adminPort}`);
    t.after(() => gw.kill());
    const trusted = readFileSync(ca.ca);
    // Fresh connections, so both workers answer some of them.
    const answers = await Promise.all(Array.from({ length: 10 }, () => new Promise<number>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/svc/x', ca: trusted, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    })));
    assert.deepEqual(answers, Array(10).fill(200));
  });

  test('a certificate file that is missing stops a workers: 2 start before anything listens, naming the file', async () => {
    const { spawnSync } = await import('node:child_process');
    const port = await deadPort();
    const adminPort = await deadPort();
    const file = join(dir, 'bad-tls.yaml');
    writeFileSync(file, `server: { host: 127.0.0.1, port: ${port}, workers: 2, tls: { cert: "${join(dir, 'nope.pem')}", key: "${join(dir, 'nope.key')}" } }
admin: { host: 127.0.0.1, port: ${adminPort} }
registry: { static: { services: { svc: { instances: ["${upstream.url}"] } } } }
routes:
  - { name: svc, match: { pathPrefix: /svc }, service: svc }
`);
    const bin = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin', 'waygate.js');
    const run = spawnSync(process.execPath, [bin, 'start', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 1, run.stdout + run.stderr);
    assert.match(run.stderr, /nope\.pem/);
    assert.doesNotMatch(run.stdout, /"worker":/, 'no worker was forked: the primary read the file first');
  });
});
