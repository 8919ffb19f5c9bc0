import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureBuilt, rawRequest, type RawResponse, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'waygate.js');
const SLOW_MS = 1_500;

let dir: string;
let upstream: TestUpstream;
const children: ChildProcess[] = [];

before(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'waygate-signals-'));
  // /slow answers after ~1.5 s (longer than drainDelay), everything else at once
  upstream = await startUpstream('signals', {
    handler: (request, response) => {
      const answer = () => {
        response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'signals' });
        response.end(JSON.stringify({ url: request.url }));
      };
      if (request.url?.startsWith('/slow')) setTimeout(answer, SLOW_MS);
      else answer();
    },
  });
});

after(async () => {
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

async function startChild(name: string): Promise<Started> {
  const port = await deadPort();
  const adminPort = await deadPort();
  const config = join(dir, `${name}.yaml`);
  writeFileSync(config, `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 1s, timeout: 10s }
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

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  describe(`${signal}`, () => {
    test(`${signal}: ready turns 503, traffic is served during drainDelay, in-flight requests complete, exit 0`, async (t) => {
      const gw = await startChild(signal.toLowerCase());
      t.after(() => {
        if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
      });

      // Several slow requests in flight, on their own connections, before the signal.
      const mine = (r: { url: string }) => r.url.startsWith(`/slow/${signal}/`);
      const inflight: Array<Promise<RawResponse>> = [1, 2, 3].map((n) => rawRequest(gw.url, { path: `/svc/slow/${signal}/${n}` }));
      await waitFor('the upstream to receive the slow requests', () => upstream.received.filter(mine).length === 3);

      assert.equal(gw.child.kill(signal), true);

      const down = await waitFor('/health/ready to turn 503', async () => {
        const ready = await readyStatus(gw.admin);
        return ready.status === 503 ? ready : undefined;
      }, 5_000, 10);
      assert.equal(down.body.status, 'DOWN');

      // Still inside drainDelay (1 s): a new request on a new connection is served.
      const during = await rawRequest(gw.url, { path: '/svc/during-drain' });
      assert.equal(during.status, 200, during.body);
      assert.equal((JSON.parse(during.body) as { url: string }).url, '/during-drain');

      // The requests in flight all complete (they outlast drainDelay), none is dropped.
      const answers = await Promise.all(inflight);
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200]);
      assert.deepEqual(answers.map((a) => (JSON.parse(a.body) as { url: string }).url), [1, 2, 3].map((n) => `/slow/${signal}/${n}`));

      const exit = await Promise.race([gw.exit, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref())]);
      assert.deepEqual(exit, { code: 0, signal: null }, gw.output());

      // after exit nothing listens any more
      await assert.rejects(fetch(gw.admin + '/health/live'));
    });
  });
}

test('a request that arrives on a kept-alive connection during the drain is still answered', async (t) => {
  const gw = await startChild('keepalive');
  t.after(() => {
    if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  });
  const { Agent } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await rawRequest(gw.url, { path: '/svc/ka/1', agent });
  assert.equal(first.status, 200);
  const slow = rawRequest(gw.url, { path: '/svc/slow/ka', agent: new Agent() });
  await waitFor('the slow request to reach the upstream', () => upstream.received.some((r) => r.url === '/slow/ka'));
  gw.child.kill('SIGTERM');
  await waitFor('/health/ready to turn 503', async () => (await readyStatus(gw.admin)).status === 503, 5_000, 10);
  const second = await rawRequest(gw.url, { path: '/svc/ka/2', agent });
  assert.equal(second.status, 200);
  assert.equal((await slow).status, 200);
  const exit = await Promise.race([gw.exit, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref())]);
  assert.deepEqual(exit, { code: 0, signal: null }, gw.output());
});
