import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/load.ts';
import { adminRoutes, ensureBuilt, metricValue, rawRequest, startGateway, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const BIN = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin', 'waygate.js');

let dir: string;
let u1: TestUpstream;
let u2: TestUpstream;
const children: ChildProcess[] = [];

before(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'waygate-reload-'));
  u1 = await startUpstream('u1');
  u2 = await startUpstream('u2');
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await u1.close();
  await u2.close();
  rmSync(dir, { recursive: true, force: true });
});

function configText(ports: { public: number; admin: number }, routes: string): string {
  return `server: { host: 127.0.0.1, port: ${ports.public} }
admin: { host: 127.0.0.1, port: ${ports.admin} }
shutdown: { drainDelay: 0s, timeout: 2s }
registry:
  static:
    services:
      one: { instances: ["${u1.url}"] }
      two: { instances: ["${u2.url}"] }
routes:
${routes}`;
}

async function answerOf(url: string): Promise<string | number> {
  try {
    const response = await rawRequest(url, { path: new URL(url).pathname });
    return response.status === 200 ? (JSON.parse(response.body) as { instance: string }).instance : response.status;
  } catch {
    return 0;
  }
}

describe('hot reload of a running gateway (child process)', () => {
  test('a write in place, a rename onto the path, SIGHUP and POST /admin/reload apply; an invalid file applies nothing and says where', async () => {
    const publicPort = await deadPort();
    let adminPort = await deadPort();
    while (adminPort === publicPort) adminPort = await deadPort();
    const ports = { public: publicPort, admin: adminPort };
    const path = join(dir, 'gateway.yaml');
    writeFileSync(path, configText(ports, '  - { name: a, match: { pathPrefix: /a }, service: one }\n'));
    const child = spawn(process.execPath, [BIN, 'start', '--config', path], { env: { ...process.env, WAYGATE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const pub = `http://127.0.0.1:${ports.public}`;
    const admin = `http://127.0.0.1:${ports.admin}`;
    const config = async () => (await (await fetch(`${admin}/admin/config`)).json()) as { version: number; file: string; lastReload: null | { result: string; errors: string[]; restartRequired: string[] } };
    try {
      await waitFor('the gateway to serve /a', async () => (await answerOf(`${pub}/a`)) === 'u1', 20_000);
      assert.deepEqual({ ...(await config()), loadedAt: undefined }, { version: 1, loadedAt: undefined, file: path, lastReload: null });

      // 1. written in place
      writeFileSync(path, configText(ports, '  - { name: a, match: { pathPrefix: /a }, service: one }\n  - { name: b, match: { pathPrefix: /b }, service: two }\n'));
      await waitFor('the new route /b', async () => (await answerOf(`${pub}/b`)) === 'u2', 10_000);
      assert.equal((await config()).version, 2);

      // 2. renamed onto the path, as editors and ConfigMaps do
      const staged = join(dir, 'staged.yaml');
      writeFileSync(staged, configText(ports, '  - { name: c, match: { pathPrefix: /c }, service: one }\n'));
      renameSync(staged, path);
      await waitFor('the renamed file', async () => (await answerOf(`${pub}/c`)) === 'u1', 10_000);
      assert.equal(await answerOf(`${pub}/b`), 404, 'a route that left the file is gone');

      // 3. invalid: nothing applied, problems with FILE:LINE:COL, the old config keeps serving
      writeFileSync(path, configText(ports, '  - { name: c, match: { pathPrefix: /c }, service: nowhere }\n'));
      await waitFor('the refused reload', async () => (await config()).lastReload?.result === 'failure', 10_000);
      const failed = (await config()).lastReload!;
      assert.match(failed.errors[0]!, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ routes\\[0\\]\\.service: unknown service "nowhere"`));
      assert.equal(await answerOf(`${pub}/c`), 'u1');
      assert.match(output, /gateway\.yaml:\d+:\d+ routes\[0\]\.service: unknown service/, "each problem is logged as FILE:LINE:COL path: reason");
      assert.equal(await metricValue(admin, 'waygate_config_reloads_total', { result: 'failure' }), 1);

      // 4. POST /admin/reload: 400 with the errors while the file is bad, 200 {version} once fixed
      const bad = await fetch(`${admin}/admin/reload`, { method: 'POST' });
      assert.equal(bad.status, 400);
      assert.ok(((await bad.json()) as { errors: string[] }).errors.length >= 1);
      writeFileSync(path, configText(ports, '  - { name: d, match: { pathPrefix: /d }, service: two }\n'));
      const good = await fetch(`${admin}/admin/reload`, { method: 'POST' });
      assert.equal(good.status, 200);
      const { version } = (await good.json()) as { version: number };
      assert.ok(version >= 4);
      assert.equal(await answerOf(`${pub}/d`), 'u2');

      // 5. SIGHUP reloads at once; a listener change is reported as needing a restart, not applied
      writeFileSync(path, configText({ public: ports.public, admin: ports.admin }, '  - { name: e, match: { pathPrefix: /e }, service: one }\n').replace('drainDelay: 0s', 'drainDelay: 0s').replace(`port: ${ports.public} }`, `port: ${ports.public}, maxConnections: 5 }`));
      const before = (await config()).version;
      child.kill('SIGHUP');
      await waitFor('the SIGHUP reload', async () => (await config()).version > before && (await answerOf(`${pub}/e`)) === 'u1', 10_000);
      assert.deepEqual((await config()).lastReload!.restartRequired, ['server.maxConnections']);
      assert.equal(await metricValue(admin, 'waygate_config_version'), (await config()).version);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

describe('reload keeps what did not change (in process)', () => {
  test('breaker state of an unchanged service survives; a request in flight finishes on the table it started with', async () => {
    const failing = await startUpstream('failing', { handler: (_req, res) => { res.writeHead(500); res.end('no'); } });
    const held: Array<() => void> = [];
    const slow = await startUpstream('slow', { handler: (_req, res) => { held.push(() => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"instance":"slow"}'); }); } });
    const yaml = (extra: string) => `
registry:
  static:
    services:
      bad: { instances: ["${failing.url}"] }
      slow: { instances: ["${slow.url}"] }
routes:
  - { name: bad, match: { pathPrefix: /bad }, service: bad, retries: 0, circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 0, resetTimeout: 60s } }
${extra}`;
    const gw = await startGateway(yaml('  - { name: slow, match: { pathPrefix: /slow }, service: slow }\n'));
    try {
      assert.equal((await rawRequest(gw.url, { path: '/bad' })).status, 500);
      await waitFor('the breaker to open', async () => (await adminRoutes(gw.adminUrl)).services.bad!.instances[0]!.breaker === 'open');
      const { port } = new URL(gw.url);
      const inFlight = new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/slow/x', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
        req.on('error', reject);
        req.end();
      });
      await waitFor('the slow request to be held', () => held.length === 1);
      const next = parseConfig(`server: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nshutdown: { drainDelay: 0, timeout: 5s }\n${yaml('  - { name: other, match: { pathPrefix: /other }, service: slow }\n')}`, { file: 't.yaml', env: {} });
      assert.ok(next.ok);
      await gw.gateway.reload(next.config);
      assert.equal((await adminRoutes(gw.adminUrl)).services.bad!.instances[0]!.breaker, 'open', 'the unchanged service kept its breaker');
      assert.equal((await rawRequest(gw.url, { path: '/slow/x' })).status, 404, 'new requests see the new table');
      held[0]!();
      assert.equal(await inFlight, 200, 'the request in flight finished on its old route');
    } finally {
      await gw.stop();
      await failing.close();
      await slow.close();
    }
  });
});

describe('access log', () => {
  test('one JSON line per request with the documented fields; a reload reopens the file (logrotate)', async () => {
    const { readFileSync, existsSync } = await import('node:fs');
    const logPath = join(dir, 'access.log');
    const up = await startUpstream('logged');
    const configPath = join(dir, 'access.yaml');
    const text = (extra: string) => `server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown: { drainDelay: 0s, timeout: 2s }
accessLog: { enabled: true, path: "${logPath}" }
registry: { static: { services: { s: { instances: ["${up.url}"] } } } }
routes:
  - { name: r, match: { pathPrefix: /r }, service: s }
${extra}`;
    writeFileSync(configPath, text(''));
    const parsed = parseConfig(readFileSync(configPath, 'utf8'), { file: configPath, env: {} });
    assert.ok(parsed.ok);
    const { Gateway } = await import('../../src/gateway.ts');
    const { createLogger } = await import('../../src/observability/logger.ts');
    const { GatewayMetrics } = await import('../../src/observability/metrics.ts');
    const gateway = new Gateway(parsed.config, { logger: createLogger('silent'), metrics: new GatewayMetrics({ processMetrics: false }) });
    await gateway.start();
    try {
      const answer = await rawRequest(gateway.publicAddress, { path: '/r/x?q=1', headers: { 'x-request-id': 'log-me-1' } });
      assert.equal(answer.status, 200);
      assert.equal((await rawRequest(gateway.publicAddress, { path: '/nowhere' })).status, 404);
      type Line = Record<string, unknown>;
      const lines = async (): Promise<Line[]> => (existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Line) : []);
      await waitFor('both lines to be written', async () => (await lines()).length >= 2, 10_000);
      const [first, second] = await lines();
      assert.deepEqual(Object.keys(first!).sort(), ['attempts', 'bytesSent', 'clientIp', 'durationMs', 'instance', 'method', 'path', 'requestId', 'route', 'service', 'status', 'time'].sort());
      assert.equal(first!.requestId, 'log-me-1');
      assert.equal(first!.clientIp, '127.0.0.1');
      assert.deepEqual([first!.method, first!.path, first!.status, first!.route, first!.service, first!.instance, first!.attempts], ['GET', '/r/x', 200, 'r', 's', up.url, 1]);
      assert.equal(first!.bytesSent, Buffer.byteLength(answer.body));
      assert.equal(typeof first!.durationMs, 'number');
      assert.match(String(first!.time), /^\d{4}-\d\d-\d\dT/);
      assert.deepEqual([second!.status, second!.route, second!.instance, second!.attempts], [404, null, null, 0]);

      renameSync(logPath, `${logPath}.1`); // logrotate moves it...
      await gateway.reload(parsed.config); // ...and the reload reopens the path
      await rawRequest(gateway.publicAddress, { path: '/r/after-rotate' });
      await waitFor('a line in the new file', async () => (await lines()).some((line) => line.path === '/r/after-rotate'), 10_000);
    } finally {
      await gateway.stop();
      await up.close();
    }
  });
});

describe('reload under load', () => {
  test('0 failed requests over several hundred GETs during 5 reloads', async () => {
    const up = await startUpstream('steady');
    const yaml = (n: number) => `
registry: { static: { services: { s: { instances: ["${up.url}"] } } } }
routes:
  - { name: steady, match: { pathPrefix: /steady }, service: s }
  - { name: extra${n}, match: { pathPrefix: /extra${n} }, service: s }
`;
    const gw = await startGateway(yaml(0));
    const http = await import('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    try {
      let stop = false;
      const statuses: number[] = [];
      const workers = Array.from({ length: 8 }, async () => {
        while (!stop || statuses.length < 400) {
          statuses.push((await rawRequest(gw.url, { path: '/steady/x', agent })).status);
          if (statuses.length >= 2_000) break;
        }
      });
      for (let n = 1; n <= 5; n++) {
        await waitFor(`load before reload ${n}`, () => statuses.length >= n * 60);
        const next = parseConfig(`server: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nshutdown: { drainDelay: 0, timeout: 5s }\n${yaml(n)}`, { file: 't.yaml', env: {} });
        assert.ok(next.ok);
        await gw.gateway.reload(next.config);
      }
      stop = true;
      await Promise.all(workers);
      assert.ok(statuses.length >= 400, `requests ${statuses.length}`);
      assert.deepEqual([...new Set(statuses)], [200]);
      assert.equal(gw.gateway.configVersion, 6);
    } finally {
      agent.destroy();
      await gw.stop();
      await up.close();
    }
  });
});

describe('the file poll and an explicit reload', () => {
  test('a file already loaded by SIGHUP or POST is not loaded again when the poll notices the same change', async (t) => {
    const { ConfigReloader } = await import('../../src/config/watch.ts');
    const { statSync } = await import('node:fs');
    const { createLogger } = await import('../../src/observability/logger.ts');
    const file = join(dir, 'poll-once.yaml');
    const yaml = (prefix: string) => `registry: { static: { services: { s: { instances: ["${u1.url}"] } } } }\nroutes:\n  - { name: r, match: { pathPrefix: ${prefix} }, service: s }\n`;
    writeFileSync(file, yaml('/one'));
    const applied: string[] = [];
    const target = { configVersion: 1, reload: async (next: { routes: ReadonlyArray<{ match: { pathPrefix: string } }> }) => { applied.push(next.routes[0]!.match.pathPrefix); }, reloadFailed: () => undefined };
    const reloader = new ConfigReloader(file, {}, target as never, createLogger('silent'));
    // The test is the poll: it says when a poll runs and what it saw.
    let poll: ((now: import('node:fs').Stats, before: import('node:fs').Stats) => void) | undefined;
    reloader.watch(500, (_file, _interval, listener) => { poll = listener; });
    t.after(() => reloader.stop());
    const before = statSync(file);

    writeFileSync(`${file}.next`, yaml('/two'));
    renameSync(`${file}.next`, file);
    await reloader.reloadNow(); // as SIGHUP does, before the poll runs
    assert.deepEqual(applied, ['/two']);
    // Count the reloads the poll starts (it calls reloadNow synchronously when it decides to load).
    let started = 0;
    const reloadNow = reloader.reloadNow.bind(reloader);
    reloader.reloadNow = () => { started += 1; return reloadNow(); };
    const afterRename = statSync(file);
    poll!(afterRename, before);
    assert.equal(started, 0, 'the poll did not load the renamed file again');

    writeFileSync(file, yaml('/three'));
    poll!(statSync(file), afterRename);
    assert.equal(started, 1);
    await waitFor('the poll to load a change nobody else loaded', () => applied.length === 2, 10_000, 5);
    assert.deepEqual(applied, ['/two', '/three']);
  });
});
