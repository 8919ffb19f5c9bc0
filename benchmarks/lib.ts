/**
 * Shared benchmark helpers.
 *
 * Topology (every listener on 127.0.0.1):
 *
 *   bench process (this file's importer) ── runs autocannon, does nothing else while measuring
 *        │ HTTP/1.1 keep-alive, N connections
 *        ▼
 *   proxy child process (waygate, a bare @fastify/http-proxy, fast-gateway — or none for "direct")
 *        │ keep-alive pool of the proxy
 *        ▼
 *   upstream child process (node:http, small fixed JSON body; one process can host several listeners)
 *
 * Load generator, proxy and upstreams each get their own event loop, so none of them queues
 * behind another's JavaScript. They still share the machine's cores; see benchmarks/README.md.
 *
 * Run as a script (`node --import tsx benchmarks/lib.ts upstream PORT...`) this file is the upstream program.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LIB_FILE = fileURLToPath(import.meta.url);

/** True when the module with this import.meta.url is the process entry point. */
export function isMain(importMetaUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && pathToFileURL(entry).href === importMetaUrl;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ───────────────────────────── child processes ─────────────────────────────

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Last lines of stdout+stderr, shown when the child fails. */
  readonly tail: string[];
  /** Resolves with the exit code (or signal name) once the child has exited. */
  readonly exited: Promise<number | string>;
}

const live = new Set<Child>();
let guardsInstalled = false;

/** Kills every live child when this process ends for any reason, so none outlives a run. */
function installGuards(): void {
  if (guardsInstalled) return;
  guardsInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL is the only thing that is certain to land.
  process.on('exit', () => {
    for (const child of live) child.proc.kill('SIGKILL');
  });
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping child processes\n`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('uncaughtException', (error) => {
    process.stderr.write(`uncaught: ${error.stack ?? String(error)}\n`);
    void stopAll().finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (error) => {
    process.stderr.write(`unhandled rejection: ${(error as Error)?.stack ?? String(error)}\n`);
    void stopAll().finally(() => process.exit(1));
  });
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /**
   * Open an IPC channel. Our own child programs exit when it closes, so they die with the bench
   * even if it is SIGKILLed. Leave it off for programs (waygate) that must exit on their own terms.
   */
  readonly ipc?: boolean;
  /** Echo the child's stderr live (prefixed with its name). */
  readonly echoStderr?: boolean;
}

/** Spawns `node ...args` and tracks it so it is always killed at exit. */
export function spawnNode(name: string, args: readonly string[], options: SpawnOptions = {}): Child {
  installGuards();
  const proc = spawn(process.execPath, [...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const keep = (stream: NodeJS.ReadableStream | null, echo: boolean) => {
    stream?.setEncoding('utf8');
    stream?.on('data', (text: string) => {
      for (const line of text.split('\n')) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > 40) tail.shift();
        if (echo) process.stderr.write(`  [${name}] ${line}\n`);
      }
    });
  };
  // Always drain both pipes: a full pipe would block the child.
  keep(proc.stdout, false);
  keep(proc.stderr, options.echoStderr ?? false);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
    proc.once('error', (error) => {
      live.delete(child);
      tail.push(`spawn error: ${error.message}`);
      resolve('spawn-error');
    });
  });
  const child: Child = { name, proc, tail, exited };
  live.add(child);
  if (!options.ipc && proc.pid !== undefined) watchParent(proc.pid);
  return child;
}

/**
 * A child without IPC would outlive a SIGKILLed bench (no exit handler runs then). A detached shell
 * polls both pids and, if the bench dies first, stops the child; it ends by itself once the child exits.
 */
function watchParent(childPid: number): void {
  if (process.platform === 'win32') return;
  const script = 'while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
    'if kill -0 "$1" 2>/dev/null; then kill -TERM "$1"; sleep 5; kill -KILL "$1" 2>/dev/null; fi';
  spawn('sh', ['-c', script, String(process.pid), String(childPid)], { stdio: 'ignore', detached: true }).unref();
}

/** SIGTERM, then SIGKILL if the child has not exited within graceMs. */
export async function stopChild(child: Child, graceMs = 5000): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((child) => stopChild(child, 3000)));
}

/** Runs fn with the given children and stops them afterwards, whatever happens. */
export async function withChildren<T>(children: readonly Child[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await Promise.all(children.map((child) => stopChild(child)));
  }
}

// ───────────────────────────── readiness & ports ─────────────────────────────

/** A port that was free a moment ago (the kernel picks it; we release it for the child to take). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly status?: number;
  /** Fail at once (with its output) if this child exits while we wait. */
  readonly child?: Child;
}

/** Polls url until it answers the expected status; throws with the child's output on timeout or exit. */
export async function waitUntilReady(url: string, options: WaitOptions = {}): Promise<void> {
  const { timeoutMs = 15_000, status = 200, child } = options;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null)) {
      throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}) before ${url} was ready\n${child.tail.join('\n')}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === status) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (${last})${child ? `\n${child.tail.join('\n')}` : ''}`);
}

// ───────────────────────────── upstreams ─────────────────────────────

export const UPSTREAM_BODY = JSON.stringify({ ok: true, service: 'bench', message: 'hello from upstream' });

/** The upstream program: one node:http listener per port, all answering the same small JSON body. */
export async function upstreamMain(ports: readonly number[]): Promise<void> {
  const body = Buffer.from(UPSTREAM_BODY);
  for (const port of ports) {
    const server = createServer((req, res) => {
      // Consume any request body so keep-alive connections stay usable.
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
    // Longer than the proxies' pool idle timeouts, so the server never closes a pooled socket mid-run.
    server.keepAliveTimeout = 65_000;
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
  }
  process.on('disconnect', () => process.exit(0)); // parent gone
  process.on('SIGTERM', () => process.exit(0));
}

export interface Upstreams {
  readonly urls: string[];
  readonly ports: number[];
  readonly children: Child[];
}

/**
 * Starts `count` upstream listeners. `separateProcesses: false` (default) hosts them all in ONE child
 * process, so the upstream side costs the same single event loop whether a target uses 1 or 3 instances.
 */
export async function startUpstreams(count: number, options: { separateProcesses?: boolean } = {}): Promise<Upstreams> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const groups = options.separateProcesses ? ports.map((port) => [port]) : [ports];
  const children = groups.map((group) =>
    spawnNode(`upstream:${group.join(',')}`, ['--import', 'tsx', LIB_FILE, 'upstream', ...group.map(String)], { ipc: true, echoStderr: true }),
  );
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  await Promise.all(urls.map((url, i) => waitUntilReady(`${url}/`, { child: children[options.separateProcesses ? i : 0] })));
  return { urls, ports, children };
}

// ───────────────────────────── load ─────────────────────────────

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  readonly pipelining?: number;
}

export interface LoadResult {
  readonly reqPerSec: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p99: number;
  /** Socket errors plus timeouts. */
  readonly errors: number;
  readonly non2xx: number;
  readonly totalRequests: number;
}

/** The subset of autocannon 9 we use; it ships no types and we add no @types package for it. */
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;

let autocannonFn: Autocannon | undefined;
function autocannon(): Autocannon {
  // Loaded lazily: child programs import this file but never generate load.
  autocannonFn ??= createRequire(import.meta.url)('autocannon') as Autocannon;
  return autocannonFn;
}

/** Runs autocannon for a fixed duration (it stops by itself) and summarises the result. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon()({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    pipelining: options.pipelining ?? 1,
    timeout: 10,
  });
  return {
    reqPerSec: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    totalRequests: result.requests.total,
  };
}

// ───────────────────────────── CPU accounting ─────────────────────────────

let clockTicks: number | undefined;

/**
 * CPU time (user+system, ms) a process has used so far, from /proc (Linux only; undefined elsewhere).
 * Unlike req/s it barely depends on what else runs on the box, so it compares proxies' cost fairly.
 */
export function cpuTimeMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return undefined;
  }
}

// ───────────────────────────── output ─────────────────────────────

export interface Column {
  readonly header: string;
  readonly align?: 'left' | 'right';
}

/** Formats rows as an aligned text table (first row is the header). */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((column, i) => Math.max(column.header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (columns[i]?.align === 'left' ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join(' | ');
  const rule = widths.map((width) => '-'.repeat(width)).join('-|-');
  return [line(columns.map((column) => column.header)), rule, ...rows.map(line)].join('\n');
}

export function printTable(columns: readonly Column[], rows: readonly (readonly string[])[]): void {
  process.stdout.write(`${formatTable(columns, rows)}\n`);
}

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, node: process.version, platform: `${os.platform()} ${os.release()}` };
}

/** Reads a positive number from the environment, falling back to a default. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

if (isMain(import.meta.url) && process.argv[2] === 'upstream') {
  await upstreamMain(process.argv.slice(3).map(Number));
}
