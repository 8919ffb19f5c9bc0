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
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
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
  /** True when the child leads its own process group (SpawnOptions.group). */
  readonly group: boolean;
}

const live = new Set<Child>();
let guardsInstalled = false;

/** Kills every live child when this process ends for any reason, so none outlives a run. */
function installGuards(): void {
  if (guardsInstalled) return;
  guardsInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL is the only thing that is certain to land.
  process.on('exit', () => {
    for (const child of live) signalChild(child, 'SIGKILL');
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
  /**
   * Start the child as the leader of its own process group (pgid = its pid), so that everything it
   * forks (nginx's worker, say) can be measured (groupUsage) and signalled together.
   */
  readonly group?: boolean;
  /** Called with every chunk of stdout (e.g. to keep a load generator's whole report). */
  readonly onStdout?: (text: string) => void;
}

/** Spawns `node ...args` and tracks it so it is always killed at exit. */
export function spawnNode(name: string, args: readonly string[], options: SpawnOptions = {}): Child {
  return spawnProgram(name, process.execPath, args, options);
}

/** Spawns any program and tracks it so it (and its process group, if it leads one) is always killed at exit. */
export function spawnProgram(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  installGuards();
  const proc = spawn(command, [...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    detached: options.group ?? false,
  });
  const tail: string[] = [];
  const keep = (stream: NodeJS.ReadableStream | null, echo: boolean, onText?: (text: string) => void) => {
    stream?.setEncoding('utf8');
    stream?.on('data', (text: string) => {
      onText?.(text);
      for (const line of text.split('\n')) {
        if (!line) continue;
        tail.push(line);
        if (tail.length > 40) tail.shift();
        if (echo) process.stderr.write(`  [${name}] ${line}\n`);
      }
    });
  };
  // Always drain both pipes: a full pipe would block the child.
  keep(proc.stdout, false, options.onStdout);
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
  const child: Child = { name, proc, tail, exited, group: options.group ?? false };
  live.add(child);
  if (!options.ipc && proc.pid !== undefined) watchParent(proc.pid, child.group);
  return child;
}

/** Sends a signal to the child, or to its whole process group when it leads one; never throws. */
export function signalChild(child: Child, signal: NodeJS.Signals): void {
  const pid = child.proc.pid;
  if (pid === undefined) return;
  try {
    if (child.group) process.kill(-pid, signal);
    else child.proc.kill(signal);
  } catch {
    // already gone
  }
}

/**
 * A child without IPC would outlive a SIGKILLed bench (no exit handler runs then). A detached shell
 * polls both pids and, if the bench dies first, stops the child (its whole group if it leads one);
 * it ends by itself once the child exits.
 */
function watchParent(childPid: number, group: boolean): void {
  if (process.platform === 'win32') return;
  // No "--" before the pid: dash's kill rejects it, and after the signal option "-PID" already means a group.
  const target = group ? '-$1' : '$1';
  const script = 'while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
    `if kill -0 "$1" 2>/dev/null; then kill -TERM "${target}"; sleep 5; kill -KILL "${target}" 2>/dev/null; fi`;
  spawn('sh', ['-c', script, String(process.pid), String(childPid)], { stdio: 'ignore', detached: true }).unref();
}

/**
 * SIGTERM, then SIGKILL if the child has not exited within graceMs. For a group leader the signals go
 * to the whole group, and whatever of the group is left once the leader has exited is SIGKILLed.
 */
export async function stopChild(child: Child, graceMs = 5000): Promise<void> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) {
    signalChild(child, 'SIGTERM');
    const timer = setTimeout(() => signalChild(child, 'SIGKILL'), graceMs);
    await child.exited;
    clearTimeout(timer);
  }
  if (child.group) signalChild(child, 'SIGKILL');
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

/** The subset of autocannon 9's result we use; it ships no types and we add no @types package for it. */
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

function fromAutocannon(result: AutocannonResult): LoadResult {
  return {
    reqPerSec: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    totalRequests: result.requests.total,
  };
}

/** Runs autocannon inside this process for a fixed duration (it stops by itself) and summarises the result. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  return fromAutocannon(await autocannon()({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    pipelining: options.pipelining ?? 1,
    timeout: 10,
  }));
}

/**
 * A load generator: runs HTTP/1.1 keep-alive GETs against one URL for a fixed duration and stops by
 * itself. `inProcess` ones share this process's event loop; the others are child processes.
 */
export interface LoadGenerator {
  readonly id: 'wrk' | 'autocannon' | 'autocannon-inprocess';
  /** One line for the report, e.g. "wrk 4.1.0 (-t1 -c50, child process)". */
  readonly description: string;
  readonly run: (options: LoadOptions) => Promise<LoadResult>;
}

/** Runs a program to completion, killing it if it outlives timeoutMs, and returns its stdout. */
async function runToEnd(name: string, command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  let stdout = '';
  const child = spawnProgram(name, command, args, { ipc: false, onStdout: (text) => (stdout += text) });
  const timer = setTimeout(() => signalChild(child, 'SIGKILL'), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${name} exited with ${code}\n${child.tail.join('\n')}`);
  return stdout;
}

/** Finds a program on PATH (like `which`), or undefined. */
export function which(program: string): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v "$0"', program], { encoding: 'utf8' });
  const where = found.stdout.trim();
  return found.status === 0 && where ? where : undefined;
}

/** wrk prints durations as e.g. "812.00us", "2.31ms", "1.02s", "1.50m". Returns milliseconds. */
export function parseWrkDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const factor = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'us' | 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * factor;
}

/** Reads the numbers we report out of `wrk --latency` output. */
export function parseWrk(output: string): LoadResult {
  const number = (pattern: RegExp) => {
    const match = pattern.exec(output);
    return match ? Number(match[1]) : 0;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const total = /(\d+) requests in/.exec(output);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const p50 = /^\s*50%\s+(\S+)/m.exec(output);
  const p99 = /^\s*99%\s+(\S+)/m.exec(output);
  if (!total || !rate || !p50 || !p99) throw new Error(`unexpected wrk output:\n${output}`);
  return {
    reqPerSec: Number(rate[1]),
    p50: parseWrkDuration(p50[1] ?? ''),
    p99: parseWrkDuration(p99[1] ?? ''),
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
    totalRequests: Number(total[1]),
  };
}

/**
 * The generator to use: BENCH_GENERATOR (wrk | autocannon | autocannon-inprocess) if set, otherwise
 * wrk when it is installed (a C program: it needs a fraction of autocannon's CPU per request, which
 * leaves more of a small machine to the proxy), otherwise autocannon in a child process.
 */
export function loadGenerator(wanted = process.env['BENCH_GENERATOR'] ?? ''): LoadGenerator {
  const wrk = which('wrk');
  const id = wanted || (wrk ? 'wrk' : 'autocannon');
  if (id === 'wrk') {
    if (!wrk) throw new Error('BENCH_GENERATOR=wrk but wrk is not on PATH (apt-get install wrk)');
    const version = /wrk (\S+)/.exec(spawnSync(wrk, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? '?';
    return {
      id,
      description: `wrk ${version} (one thread, child process)`,
      run: async (options) => {
        if ((options.pipelining ?? 1) !== 1) throw new Error('wrk generator: pipelining is not supported');
        const seconds = Math.max(1, Math.round(options.durationS));
        const args = ['-t1', `-c${options.connections}`, `-d${seconds}s`, '--latency', '--timeout', '10s', options.url];
        return parseWrk(await runToEnd('wrk', wrk, args, (seconds + 30) * 1000));
      },
    };
  }
  const cli = createRequire(import.meta.url).resolve('autocannon/autocannon.js');
  const version = (JSON.parse(readFileSync(path.join(path.dirname(cli), 'package.json'), 'utf8')) as { version: string }).version;
  if (id === 'autocannon') {
    return {
      id,
      description: `autocannon ${version} (child process)`,
      run: async (options) => {
        const args = [cli, '-c', String(options.connections), '-d', String(options.durationS), '-p', String(options.pipelining ?? 1), '-t', '10', '-j', '-n', options.url];
        const stdout = await runToEnd('autocannon', process.execPath, args, (options.durationS + 30) * 1000);
        return fromAutocannon(JSON.parse(stdout.slice(stdout.indexOf('{'))) as AutocannonResult);
      },
    };
  }
  if (id === 'autocannon-inprocess') {
    return { id, description: `autocannon ${version} (in the bench process)`, run: runLoad };
  }
  throw new Error(`BENCH_GENERATOR must be wrk, autocannon or autocannon-inprocess, got "${id}"`);
}

// ───────────────────────────── CPU & memory accounting ─────────────────────────────

let clockTicks: number | undefined;
let pageBytes: number | undefined;

const getconf = (name: string, fallback: number) => Number(spawnSync('getconf', [name], { encoding: 'utf8' }).stdout.trim()) || fallback;

/** The fields of /proc/<pid>/stat after the ")" closing the command name (so index 0 = state, field 3). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime+stime (fields 14 and 15) in ms; covers every thread of the process, GC included. */
function fieldsCpuMs(fields: readonly string[]): number {
  clockTicks ??= getconf('CLK_TCK', 100);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
}

/**
 * CPU time (user+system, ms) a process has used so far, from /proc (Linux only; undefined elsewhere).
 * Unlike req/s it barely depends on what else runs on the box, so it compares proxies' cost fairly.
 */
export function cpuTimeMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const fields = statFields(pid);
  return fields ? fieldsCpuMs(fields) : undefined;
}

/**
 * CPU (ms) of this process itself and of its children it has already reaped (cutime+cstime): once a
 * load-generator child has exited, its whole CPU time shows up in the second number.
 */
export function selfCpuMs(): { own: number; reapedChildren: number } | undefined {
  const fields = statFields(process.pid);
  if (!fields) return undefined;
  clockTicks ??= getconf('CLK_TCK', 100);
  return { own: fieldsCpuMs(fields), reapedChildren: ((Number(fields[13]) + Number(fields[14])) * 1000) / clockTicks };
}

/**
 * Busy CPU time of the whole machine so far, ms summed over all cores (user, nice, system, irq,
 * softirq and steal from the first line of /proc/stat). Minus what the bench's own processes used,
 * it is what everything else on the box took: the noise indicator of a run.
 */
export function machineBusyMs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    clockTicks ??= getconf('CLK_TCK', 100);
    return (((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) * 1000) / clockTicks;
  } catch {
    return undefined;
  }
}

export interface GroupUsage {
  /** Pids found in the group (the leader and everything it forked that did not leave the group). */
  readonly pids: number[];
  /** utime+stime summed over those pids, ms. */
  readonly cpuMs: number;
  /** Resident set size summed over those pids, bytes (pages shared between them count once per process). */
  readonly rssBytes: number;
}

/**
 * CPU and RSS of every live process in process group `pgid`, from /proc/<pid>/stat (field 5 = pgrp,
 * 14/15 = utime/stime) and /proc/<pid>/statm. Linux only: undefined when /proc is not there.
 */
export function groupUsage(pgid: number | undefined): GroupUsage | undefined {
  if (pgid === undefined) return undefined;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  pageBytes ??= getconf('PAGESIZE', 4096);
  const pids: number[] = [];
  let cpuMs = 0;
  let rssBytes = 0;
  for (const entry of entries) {
    const code = entry.charCodeAt(0);
    if (code < 48 || code > 57) continue; // not a pid
    const pid = Number(entry);
    const fields = statFields(pid);
    if (!fields || Number(fields[2]) !== pgid) continue;
    pids.push(pid);
    cpuMs += fieldsCpuMs(fields);
    try {
      rssBytes += Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * pageBytes;
    } catch {
      // exited between the two reads
    }
  }
  return pids.length ? { pids, cpuMs, rssBytes } : undefined;
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

/** Nearest-rank percentile of an ascending list (NaN when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** VmRSS of a process from /proc, in bytes (undefined when it is gone or not on Linux). */
export function vmRssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
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

/**
 * Builds dist/ with `npm run build` unless BENCH_SKIP_BUILD=1; a failed build falls back to the
 * existing dist/ with a warning. Returns which build is measured, for the report.
 */
export function ensureBuilt(): string {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  if (process.env['BENCH_SKIP_BUILD'] === '1') {
    if (!existsSync(cli)) throw new Error('dist/cli.js is missing; run `npm run build` (or unset BENCH_SKIP_BUILD)');
    return 'existing dist/ (BENCH_SKIP_BUILD=1)';
  }
  process.stdout.write('building waygate (npm run build) ...\n');
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status === 0) return 'fresh npm run build';
  if (!existsSync(cli)) throw new Error('`npm run build` failed and dist/ has no previous build; fix the build first');
  process.stdout.write('WARNING: `npm run build` failed; measuring the existing dist/, which may be stale\n');
  return 'existing dist/ (build FAILED)';
}

/**
 * Copies the built gateway (bin/, dist/, package.json) into dir, with node_modules linked back, and
 * returns the launcher: every round measures the build made at the start, even if dist/ is rebuilt meanwhile.
 */
export function snapshotWaygate(dir: string): string {
  const home = path.join(dir, 'waygate');
  mkdirSync(home, { recursive: true });
  for (const entry of ['bin', 'dist', 'package.json']) cpSync(path.join(ROOT, entry), path.join(home, entry), { recursive: true });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(home, 'node_modules'), 'dir');
  return path.join(home, 'bin', 'waygate.js');
}

/** A positive number from `--flag N`, else the environment variable, else the fallback. */
export function argNumber(flag: string, envName: string, fallback: number): number {
  const at = process.argv.indexOf(flag);
  if (at !== -1) {
    const value = Number(process.argv[at + 1]);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${flag} needs a positive number`);
    return value;
  }
  return envNumber(envName, fallback);
}

/** Runs a benchmark's main: a failure prints its stack and sets exit code 1; children and servers are always stopped. */
export async function runBenchmark(main: () => Promise<void>, cleanup: () => void | Promise<void> = () => undefined): Promise<void> {
  try {
    await main();
  } catch (error) {
    process.exitCode = 1;
    console.error((error as Error).stack ?? String(error));
  } finally {
    await stopAll();
    await cleanup();
  }
}
