import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { adminRoutes, ensureBuilt, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'waygate.js');

let dir: string;
const children: ChildProcess[] = [];

before(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'waygate-cli-'));
});

after(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (bounded), in a temp cwd so config/gateway.yaml is never picked by accident. */
function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, WAYGATE_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`waygate ${args.join(' ')} did not exit; stdout=${stdout} stderr=${stderr}`));
    }, 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Line and 1-based column of the first occurrence of `needle` in `text`. */
function positionOf(text: string, needle: string): { line: number; col: number } {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const col = lines[i]!.indexOf(needle);
    if (col !== -1) return { line: i + 1, col: col + 1 };
  }
  throw new Error(`${needle} not in text`);
}

const GOOD = `server: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9901 }
registry:
  static:
    services:
      hello:
        instances: ["http://127.0.0.1:3001", { url: "http://127.0.0.1:3002", weight: 2 }]
routes:
  - name: hello
    match: { pathPrefix: /hello }
    service: hello
    stripPrefix: true
`;

// unknown key on line 3, bad duration on line 7, unknown service on line 11
const BAD = `server: { host: 127.0.0.1, port: 8080 }
admin: { host: 127.0.0.1, port: 9901 }
shutdown: { drainDelay: 1s, timeoutt: 5s }
registry:
  static:
    services:
      hello: { instances: ["http://127.0.0.1:3001"], healthCheck: { interval: soon } }
routes:
  - name: hello
    match: { pathPrefix: /hello }
    service: nosuch
`;

describe('waygate validate', { concurrency: 2 }, () => {
  test('a valid file: exit 0 and "ok"', async () => {
    const result = await run(['validate', '--config', file('good.yaml', GOOD)]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'ok\n');
  });

  test('a file with several problems: exit 1 and every problem as FILE:LINE:COL field.path: reason', async () => {
    const path = file('bad.yaml', BAD);
    const result = await run(['validate', '--config', path]);
    assert.equal(result.code, 1);
    const lines = result.stdout.trimEnd().split('\n');
    const unknown = positionOf(BAD, 'timeoutt');
    const duration = positionOf(BAD, 'soon');
    const service = positionOf(BAD, 'nosuch');
    assert.equal(unknown.line, 3);
    assert.equal(duration.line, 7);
    assert.deepEqual(lines, [
      `${path}:3:${unknown.col} shutdown.timeoutt: unknown key "timeoutt" (did you mean "timeout"?)`,
      `${path}:7:${duration.col} registry.static.services.hello.healthCheck.interval: must be a duration like 250ms, 5s or 5m`,
      `${path}:11:${service.col} routes[0].service: unknown service "nosuch" (not in registry.static.services)`,
    ]);
  });

  test('every problem line has the FILE:LINE:COL <path>: <reason> shape', async () => {
    const path = file('many.yaml', `routes:
  - name: a
    match: { pathPrefix: nope, methods: [] }
    service: a
    loadBalancer: fastest
    timeout: -1s
    retries: many
`);
    const result = await run(['validate', '--config', path]);
    assert.equal(result.code, 1);
    const lines = result.stdout.trimEnd().split('\n');
    assert.ok(lines.length >= 5, result.stdout);
    for (const line of lines) {
      assert.ok(line.startsWith(`${path}:`), line);
      assert.match(line.slice(path.length), /^:\d+:\d+ [^\s:]+: \S.*$/);
    }
    for (const field of ['routes[0].match.pathPrefix', 'routes[0].match.methods', 'routes[0].loadBalancer', 'routes[0].timeout', 'routes[0].retries']) {
      assert.ok(lines.some((line) => line.includes(` ${field}: `)), `${field} reported:\n${result.stdout}`);
    }
  });

  test('a YAML syntax error: exit 1 with its position', async () => {
    const text = 'server:\n  host: 127.0.0.1\n port: 8080\nroutes: []\n';
    const path = file('syntax.yaml', text);
    const result = await run(['validate', '--config', path]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:\\d+ \\(yaml\\): invalid YAML: .+\\n$`));
  });

  test('a missing file: exit 1 with FILE:1:1', async () => {
    const path = join(dir, 'missing.yaml');
    const result = await run(['validate', '--config', path]);
    assert.equal(result.code, 1);
    assert.ok(result.stdout.startsWith(`${path}:1:1 `), result.stdout);
  });
});

describe('help and usage', { concurrency: 2 }, () => {
  test('waygate --help: exit 0 with usage', async () => {
    const result = await run(['--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage:/);
    assert.match(result.stdout, /waygate start/);
    assert.match(result.stdout, /waygate validate/);
  });

  test('waygate start --help: exit 0 with start usage, starts nothing', async () => {
    const result = await run(['start', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: waygate start/);
    assert.match(result.stdout, /--config FILE/);
    assert.match(result.stdout, /WAYGATE_CONFIG/);
  });

  test('waygate validate --help: exit 0 with validate usage', async () => {
    const result = await run(['validate', '--help']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^Usage: waygate validate/);
    assert.match(result.stdout, /--config FILE/);
  });

  test('an unknown command: exit 1, message on stderr', async () => {
    const result = await run(['frobnicate']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /unknown command "frobnicate"/);
  });
});

describe('waygate start', { concurrency: 2 }, () => {
  let upstream: TestUpstream;
  before(async () => {
    upstream = await startUpstream('env-upstream');
  });
  after(async () => {
    await upstream?.close();
  });

  test('WAYGATE_CONFIG picks the config file; SIGTERM then exits 0', async () => {
    const port = await deadPort();
    const adminPort = await deadPort();
    const path = file('from-env.yaml', `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 5s }
registry:
  static:
    services:
      envsvc: { instances: ["${upstream.url}"] }
routes:
  - { name: from-env, match: { pathPrefix: /env }, service: envsvc, stripPrefix: true }
`);
    const child = spawn(process.execPath, [BIN, 'start'], { cwd: dir, env: { ...process.env, WAYGATE_CONFIG: path, WAYGATE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const admin = `http://127.0.0.1:${adminPort}`;
      await waitFor(`gateway ready (output: ${output})`, async () => (await fetch(`${admin}/health/ready`)).status === 200, 30_000, 50);
      const view = await adminRoutes(admin);
      assert.deepEqual(view.routes.map((route) => route.name), ['from-env']);
      const response = await fetch(`http://127.0.0.1:${port}/env/ping?x=1`);
      assert.equal(response.status, 200);
      assert.equal(upstream.received.at(-1)?.url, '/ping?x=1');
    } finally {
      child.kill('SIGTERM');
    }
    const code = await Promise.race([exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 20_000).unref())]);
    assert.equal(code, 0, output);
  });

  test('start with an invalid config: exit 1 and the problems on stderr', async () => {
    const path = file('bad-start.yaml', BAD);
    const result = await run(['start', '--config', path]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid config/);
    assert.ok(result.stderr.includes(`${path}:3:`), result.stderr);
    assert.ok(result.stderr.includes(`${path}:7:`), result.stderr);
  });
});
