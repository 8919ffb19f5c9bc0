import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureBuilt, rawRequest, type RawResponse, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'waygate.js');
/**
 * For the tests that make requests "during drainDelay": they only need the drain not to end before
 * their next request, so it is far longer than any of them takes, and they end the gateway with a
 * second signal instead of waiting it out. (shutdown.timeout, 60 s, is likewise only an upper limit:
 * no test waits for it.)
 */
const LONG_DRAIN = '30s';

let dir: string;
let upstream: TestUpstream;
const children: ChildProcess[] = [];
/** /slow requests the upstream has not answered yet: each is answered only when the test releases it. */
const slow = new Map<string, () => void>();

function releaseSlow(match: (url: string) => boolean): number {
  let released = 0;
  for (const [url, answer] of slow) {
    if (!match(url)) continue;
    slow.delete(url);
    answer();
    released += 1;
  }
  return released;
}

before(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'waygate-signals-'));
  // /slow answers when the test says so, everything else at once
  upstream = await startUpstream('signals', {
    handler: (request, response: ServerResponse) => {
      const answer = () => {
        response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'signals' });
        response.end(JSON.stringify({ url: request.url }));
      };
      if (request.url?.startsWith('/slow')) slow.set(request.url, answer);
      else answer();
    },
  });
});

after(async () => {
  releaseSlow(() => true);
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  url: string;
  admin: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

async function startChild(name: string, drainDelay: string): Promise<Started> {
  const port = await deadPort();
  const adminPort = await deadPort();
  const config = join(dir, `${name}.yaml`);
  writeFileSync(config, `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: ${drainDelay}, timeout: 60s }
registry:
  static:
    services:
      svc: { instances: ["${upstream.url}"] }
routes:
  - { name: svc, match: { pathPrefix: /svc }, service: svc, stripPrefix: true }
`);
  const child = spawn(process.execPath, [BIN, 'start', '--config', config], { cwd: dir, env: { ...process.env, WAYGATE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitFor('the child gateway to be ready', async () => {
    if (child.exitCode !== null) throw new Error(`exited early: ${output}`);
    return (await fetch(`${admin}/health/ready`)).status === 200;
  }, 30_000, 50);
  return { child, url: `http://127.0.0.1:${port}`, admin, exit, output: () => output };
}

async function readyStatus(admin: string): Promise<{ status: number; body: { status?: string } }> {
  const response = await fetch(admin + '/health/ready');
  return { status: response.status, body: (await response.json()) as { status?: string } };
}

function exitOf(gw: Started): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
  return Promise.race([gw.exit, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref())]);
}

/** Starts `count` slow requests on their own connections and waits until the upstream holds them all. */
async function slowInFlight(gw: Started, prefix: string, count: number): Promise<Array<Promise<RawResponse>>> {
  const inflight = Array.from({ length: count }, (_, i) => rawRequest(gw.url, { path: `/svc${prefix}/${i + 1}` }));
  await waitFor('the upstream to hold the slow requests', () => [...slow.keys()].filter((url) => url.startsWith(`${prefix}/`)).length === count);
  return inflight;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  describe(`${signal}`, () => {
    test(`${signal}: ready turns 503 and traffic is still served during drainDelay; a second ${signal} exits at once`, async (t) => {
      const gw = await startChild(`${signal.toLowerCase()}-drain`, LONG_DRAIN);
      t.after(() => {
        if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
      });
      const prefix = `/slow/${signal}/drain`;
      const inflight = await slowInFlight(gw, prefix, 3);

      assert.equal(gw.child.kill(signal), true);
      const down = await waitFor('/health/ready to turn 503', async () => {
        const ready = await readyStatus(gw.admin);
        return ready.status === 503 ? ready : undefined;
      }, 5_000, 10);
      assert.equal(down.body.status, 'DOWN');

      // Inside drainDelay (30 s, nothing here comes near it): a new request on a new connection is served.
      const during = await rawRequest(gw.url, { path: '/svc/during-drain' });
      assert.equal(during.status, 200, during.body);
      assert.equal((JSON.parse(during.body) as { url: string }).url, '/during-drain');

      // The requests that were in flight when the signal came are answered too.
      assert.equal(releaseSlow((url) => url.startsWith(`${prefix}/`)), 3);
      const answers = await Promise.all(inflight);
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
      assert.deepEqual(answers.map((a) => (JSON.parse(a.body) as { url: string }).url), [1, 2, 3].map((n) => `${prefix}/${n}`));

      // A second signal does not wait for the drain: the process exits 1 at once.
      assert.equal(gw.child.kill(signal), true);
      assert.deepEqual(await exitOf(gw), { code: 1, signal: null }, gw.output());
      assert.match(gw.output(), /second signal: exiting now/);
      await assert.rejects(fetch(gw.admin + '/health/live'));
    });

    test(`${signal}: in-flight requests that outlast drainDelay complete, then the process exits 0`, async (t) => {
      const gw = await startChild(`${signal.toLowerCase()}-exit`, '0s');
      t.after(() => {
        if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
      });
      const prefix = `/slow/${signal}/exit`;
      const inflight = await slowInFlight(gw, prefix, 3);

      assert.equal(gw.child.kill(signal), true);
      // drainDelay is over once the public listener refuses new connections; the slow requests are
      // still held by the upstream then, so they outlast it by construction.
      await waitFor('the public listener to close', async () => {
        try {
          await rawRequest(gw.url, { path: '/svc/probe' });
          return false;
        } catch (error) {
          return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        }
      }, 10_000, 10);
      assert.equal((await readyStatus(gw.admin)).status, 503, 'the admin listener stays up while requests are in flight');
      assert.equal(gw.child.exitCode, null, 'still running: it waits for the requests in flight');

      assert.equal(releaseSlow((url) => url.startsWith(`${prefix}/`)), 3);
      const answers = await Promise.all(inflight);
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200], 'none is dropped');
      assert.deepEqual(answers.map((a) => (JSON.parse(a.body) as { url: string }).url), [1, 2, 3].map((n) => `${prefix}/${n}`));

      assert.deepEqual(await exitOf(gw), { code: 0, signal: null }, gw.output());
      // after exit nothing listens any more
      await assert.rejects(fetch(gw.admin + '/health/live'));
    });
  });
}

test('a request that arrives on a kept-alive connection during the drain is still answered', async (t) => {
  const gw = await startChild('keepalive', LONG_DRAIN);
  t.after(() => {
    if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  });
  const { Agent } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await rawRequest(gw.url, { path: '/svc/ka/1', agent });
  assert.equal(first.status, 200);
  const [held] = await slowInFlight(gw, '/slow/ka', 1);
  gw.child.kill('SIGTERM');
  await waitFor('/health/ready to turn 503', async () => (await readyStatus(gw.admin)).status === 503, 5_000, 10);
  const second = await rawRequest(gw.url, { path: '/svc/ka/2', agent });
  assert.equal(second.status, 200);
  assert.equal(releaseSlow((url) => url.startsWith('/slow/ka/')), 1);
  assert.equal((await held!).status, 200);
  gw.child.kill('SIGTERM');
  assert.deepEqual(await exitOf(gw), { code: 1, signal: null }, gw.output());
});
