import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ensureBuilt, type RunningGateway, startGateway } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const BIN = join(fileURLToPath(new URL('../../', import.meta.url)), 'bin', 'waygate.js');

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, WAYGATE_ADMIN_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

let up: TestUpstream;
let gw: RunningGateway;

before(async () => {
  await ensureBuilt();
  up = await startUpstream('u');
  const dead = await deadPort();
  gw = await startGateway(`
registry:
  static:
    services:
      hello: { instances: ["${up.url}", "http://127.0.0.1:${dead}"] }
routes:
  - { name: hello, match: { pathPrefix: /hello, methods: [GET] }, service: hello }
`, { admin: 'token: "cli-secret"' });
});

after(async () => {
  await gw.stop();
  await up.close();
});

test('waygate routes prints each route and its instances as aligned text, with the token from WAYGATE_ADMIN_TOKEN', async () => {
  const run = await cli(['routes', '--admin', gw.adminUrl], { WAYGATE_ADMIN_TOKEN: 'cli-secret' });
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.split('\n');
  assert.match(lines[0]!, /^ROUTE\s+MATCH\s+SERVICE\s+BALANCER$/);
  assert.match(lines[1]!, /^hello\s+\/hello \[GET\]\s+hello\s+round-robin$/);
  const header = lines.findIndex((line) => /^\s+INSTANCE\s+HEALTH\s+BREAKER\s+EJECTED\s+WEIGHT\s+IN FLIGHT$/.test(line));
  assert.ok(header > 0, run.stdout);
  const rows = lines.slice(header + 1, header + 3);
  assert.ok(rows.some((row) => row.includes(up.url) && /healthy\s+closed\s+no\s+1\s+0$/.test(row)), run.stdout);
  // Aligned: every column starts at the same offset in the header and the rows.
  const column = lines[header]!.indexOf('BREAKER');
  for (const row of rows) assert.match(row.slice(column), /^(closed|open|half-open)/);
});

test('a missing or wrong token, and an unreachable admin port, exit 1 with a clear message', async () => {
  const noToken = await cli(['routes', '--admin', gw.adminUrl]);
  assert.equal(noToken.code, 1);
  assert.match(noToken.stderr, /wants an admin token: set WAYGATE_ADMIN_TOKEN/);
  const wrong = await cli(['routes', '--admin', gw.adminUrl], { WAYGATE_ADMIN_TOKEN: 'nope' });
  assert.equal(wrong.code, 1);
  const dead = await deadPort();
  const unreachable = await cli(['routes', '--admin', `http://127.0.0.1:${dead}`]);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /cannot reach the admin endpoint at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
});
