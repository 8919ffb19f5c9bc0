/**
 * `npm run bench:reload`: reloading a 1,000-route config under steady load. Per reload: the time to
 * apply it (trigger -> `GET /admin/config` shows the new `version`), the time until a route the reload
 * added answers 200, and the requests that failed meanwhile (target 0). Also what a reload costs the
 * gateway in CPU time and memory.
 *
 * Topology (every listener on 127.0.0.1):
 *
 *   bench process ── load: undici Pool, CONCURRENCY keep-alive connections, one request loop each ──► waygate child
 *        │            probes: one admin connection (GET /admin/config, POST /admin/reload) and one     (bin/waygate.js on a
 *        │            public connection (GET of the route the reload added), each polled every 5 ms     copy of dist/)
 *        └─ upstream child process (benchmarks/lib.ts `upstream`): 7 node:http listeners, same small JSON body
 *
 * Config: 4 static services (svc0..svc2 with 2 instances, svc3 with 2 of which one changes), each with a
 * health check; 1,000 routes, pathPrefix + stripPrefix, route i on service svc(i % 4):
 *   /r0 … /r898    899 stable routes, in every config; /r0 … /r99 get a different `timeout` at every reload
 *   /m<gen>        1 marker route, renamed at every reload, so every reload adds one route and removes one
 *   /r899 … /r998  100 routes present in the "A" configs,  } kind (c) swaps these two sets and svc3's
 *   /x0 … /x99     100 routes present in the "B" configs   } second instance
 *
 * Reloads (N, default 10), one every GAP ms, kinds in turn (every new file is written to a temporary
 * file and renamed onto the config path, as Kubernetes does with a ConfigMap):
 *   (a) sighup  small change (timeouts, marker), then SIGHUP
 *   (b) post    small change, then POST /admin/reload (its latency is reported too)
 *   (c) swap    100 routes removed, 100 added, svc3's instances changed; applied by the gateway's own
 *               file watcher (stat polled every 500 ms), so its time to apply includes that poll
 * The gateway also polls the file after (a) and (b), so those may apply twice; the bench reports how many
 * versions each trigger produced.
 *
 * Failed requests: any non-2xx or socket error on a stable route (the load goes to /r0 … /r898, every
 * 10th request to a swapped route instead, whose 404 while it is absent is expected and reported apart).
 * Counted over the whole run and inside reload windows (trigger -> applied + 500 ms); target 0.
 *
 * After the loaded phase, IDLE_RELOADS more reloads (POST) without load show the CPU time one reload costs.
 *
 * Args/env: --reloads N (BENCH_RELOADS, default 10), --concurrency C (BENCH_CONCURRENCY, 32),
 *           --gap-ms MS (BENCH_GAP_MS, 3000), BENCH_IDLE_RELOADS (5), BENCH_SKIP_BUILD=1 (reuse dist/),
 *           BENCH_GATEWAY_NODE_ARGS (extra node flags for the gateway, e.g. "--cpu-prof --cpu-prof-dir=DIR").
 * Results: benchmarks/results/reload-latest.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import {
  type Child,
  ROOT,
  cpuTimeMs,
  ensureBuilt,
  envNumber,
  freePort,
  machineInfo,
  printTable,
  sleep,
  snapshotWaygate,
  spawnNode,
  startUpstreams,
  stopChild,
  waitUntilReady,
  argNumber,
  runBenchmark,
} from './lib.ts';

// ───────────────────────────── settings ─────────────────────────────

const RELOADS = Math.round(argNumber('--reloads', 'BENCH_RELOADS', 10));
const CONCURRENCY = Math.round(argNumber('--concurrency', 'BENCH_CONCURRENCY', 32));
const GAP_MS = argNumber('--gap-ms', 'BENCH_GAP_MS', 3000);
const IDLE_RELOADS = Math.round(envNumber('BENCH_IDLE_RELOADS', 5));
/** Extra node flags for the gateway child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where a reload goes. */
const GATEWAY_NODE_ARGS = (process.env['BENCH_GATEWAY_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
const WARMUP_MS = 3000;
const BASELINE_MS = 4000;
/** A reload window ends this long after the new version showed up. */
const WINDOW_TAIL_MS = 500;
/** Give up on one reload (apply or new route) after this long. */
const PROBE_TIMEOUT_MS = 10_000;
const PROBE_EVERY_MS = 5;

const STABLE = 899; // /r0 … /r898
const SWAP = 100; // /r899 … /r998 or /x0 … /x99
const TOUCHED = 100; // /r0 … /r99 change their timeout at every reload
const SERVICES = 4;

type Kind = 'sighup' | 'post' | 'swap';
const KINDS: readonly Kind[] = ['sighup', 'post', 'swap'];
const KIND_LABEL: Record<Kind, string> = { sighup: '(a) SIGHUP', post: '(b) POST /admin/reload', swap: '(c) swap 100 routes + svc3 instances (file watcher)' };

// ───────────────────────────── small helpers ─────────────────────────────

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const median = (values: readonly number[]) => percentile(values, 50);
const fmt = (v: number, digits = 0): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');
const mib = (kb: number | undefined): string => (kb === undefined ? '-' : (kb / 1024).toFixed(1));

/** VmRSS and VmHWM (peak RSS) of a process, kB, from /proc/<pid>/status. */
function memoryKb(pid: number | undefined): { rss: number; hwm: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    return rss && hwm ? { rss: Number(rss[1]), hwm: Number(hwm[1]) } : undefined;
  } catch {
    return undefined;
  }
}

// ───────────────────────────── config ─────────────────────────────

interface Generation {
  readonly gen: number;
  /** false: /r899 … /r998 and svc3 = [u6, u0]; true: /x0 … /x99 and svc3 = [u6, u1]. */
  readonly swapped: boolean;
}

function swapPath(i: number, swapped: boolean): string {
  return swapped ? `/x${i}` : `/r${STABLE + i}`;
}

function configYaml(g: Generation, port: number, adminPort: number, upstreams: readonly string[]): string {
  const svc3 = [upstreams[6]!, g.swapped ? upstreams[1]! : upstreams[0]!];
  const lines = [
    `server: { host: 127.0.0.1, port: ${port} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'registry:',
    '  static:',
    '    services:',
  ];
  const instances = [[upstreams[0]!, upstreams[1]!], [upstreams[2]!, upstreams[3]!], [upstreams[4]!, upstreams[5]!], svc3];
  instances.forEach((urls, s) => {
    lines.push(`      svc${s}:`, `        instances: [${urls.map((u) => `"${u}"`).join(', ')}]`, '        healthCheck: { path: /health, interval: 5s, timeout: 2s }');
  });
  lines.push('routes:');
  const route = (name: string, prefix: string, service: number, extra = '') =>
    lines.push(`  - name: ${name}`, `    match: { pathPrefix: ${prefix} }`, `    service: svc${service}`, '    stripPrefix: true', ...(extra ? [`    ${extra}`] : []));
  for (let i = 0; i < STABLE; i++) route(`r${i}`, `/r${i}`, i % SERVICES, i < TOUCHED ? `timeout: ${10 + (g.gen % 5)}s` : '');
  route(`m${g.gen}`, `/m${g.gen}`, g.gen % SERVICES);
  for (let i = 0; i < SWAP; i++) {
    const p = swapPath(i, g.swapped);
    route(p.slice(1), p, i % SERVICES);
  }
  return `${lines.join('\n')}\n`;
}

// ───────────────────────────── gateway ─────────────────────────────

interface Gateway {
  readonly child: Child;
  readonly pid: number;
  readonly file: string;
  readonly dir: string;
  readonly publicUrl: string;
  readonly adminUrl: string;
  readonly port: number;
  readonly adminPort: number;
}

const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function assertAlive(child: Child): void {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
    throw new Error(`waygate exited (${child.proc.exitCode ?? child.proc.signalCode})\n${child.tail.join('\n')}`);
  }
}

let tmpCounter = 0;
/** Writes the config to a temporary file in the same directory and renames it onto the path. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${tmpCounter++}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

// ───────────────────────────── load ─────────────────────────────

interface Failure {
  readonly at: number;
  readonly path: string;
  readonly what: string;
}

class Load {
  /** Start times and latencies (ms) of every stable-route request. */
  readonly starts: number[] = [];
  readonly latencies: number[] = [];
  readonly failures: Failure[] = [];
  stableOk = 0;
  swapOk = 0;
  swap404 = 0;
  readonly swapOther: Failure[] = [];
  private running = true;
  private done: Promise<void>[] = [];
  private counter = 0;
  /** Which swap set is live according to the bench (only to know which names to ask for). */
  swapped = false;

  constructor(private readonly pool: Pool, concurrency: number, hardStopMs: number) {
    const deadline = performance.now() + hardStopMs;
    for (let w = 0; w < concurrency; w++) this.done.push(this.worker(deadline));
  }

  private nextPath(): { path: string; stable: boolean } {
    const n = this.counter++;
    if (n % 10 === 9) {
      // A swapped route: one of the set live now or of the other one, alternately.
      const i = (n * 7) % SWAP;
      return { path: `${swapPath(i, (n & 16) === 0 ? this.swapped : !this.swapped)}/x`, stable: false };
    }
    // Stride through the stable routes so consecutive requests hit different routes and services.
    return { path: `/r${(n * 37) % STABLE}/x`, stable: true };
  }

  private async worker(deadline: number): Promise<void> {
    while (this.running && performance.now() < deadline) {
      const { path: p, stable } = this.nextPath();
      const started = performance.now();
      let status = 0;
      let error: string | undefined;
      try {
        const res = await this.pool.request({ path: p, method: 'GET', headersTimeout: 10_000, bodyTimeout: 10_000 });
        status = res.statusCode;
        await res.body.dump();
      } catch (e) {
        error = (e as { code?: string }).code ?? (e as Error).message;
      }
      const ended = performance.now();
      if (stable) {
        this.starts.push(started);
        this.latencies.push(ended - started);
        if (error === undefined && status >= 200 && status < 300) this.stableOk += 1;
        else this.failures.push({ at: started, path: p, what: error ?? `status ${status}` });
      } else if (error === undefined && status >= 200 && status < 300) this.swapOk += 1;
      else if (error === undefined && status === 404) this.swap404 += 1;
      else this.swapOther.push({ at: started, path: p, what: error ?? `status ${status}` });
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }

  /** Stable-route requests that started in [from, to). */
  between(from: number, to: number): { count: number; failed: number; maxLatency: number; p99: number } {
    const lat: number[] = [];
    for (let i = 0; i < this.starts.length; i++) {
      const s = this.starts[i]!;
      if (s >= from && s < to) lat.push(this.latencies[i]!);
    }
    const failed = this.failures.filter((f) => f.at >= from && f.at < to).length;
    return { count: lat.length, failed, maxLatency: lat.length ? Math.max(...lat) : NaN, p99: percentile(lat, 99) };
  }
}

// ───────────────────────────── probes ─────────────────────────────

/** waygate_nodejs_heap_size_used_bytes from the admin /metrics, MiB (after whatever GC last ran). */
async function heapUsedMiB(admin: Pool): Promise<number | undefined> {
  try {
    const res = await admin.request({ path: '/metrics', method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
    const m = /^waygate_nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([0-9.eE+-]+)$/m.exec(await res.body.text());
    return m ? Number(m[1]) / 1024 / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function configVersion(admin: Pool): Promise<number> {
  const res = await admin.request({ path: '/admin/config', method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
  const doc = (await res.body.json()) as { version?: number };
  if (res.statusCode !== 200 || typeof doc.version !== 'number') throw new Error(`/admin/config answered ${res.statusCode}`);
  return doc.version;
}

/** Polls /admin/config until its version is above `above`; ms since t0, or undefined on timeout. */
async function waitVersion(admin: Pool, above: number, t0: number): Promise<{ ms: number; version: number } | undefined> {
  while (performance.now() - t0 < PROBE_TIMEOUT_MS) {
    try {
      const version = await configVersion(admin);
      if (version > above) return { ms: performance.now() - t0, version };
    } catch {
      // retried
    }
    await sleep(PROBE_EVERY_MS);
  }
  return undefined;
}

/** Polls GET path until 200; ms since t0, or undefined on timeout. */
async function waitRoute(pool: Pool, pathName: string, t0: number): Promise<number | undefined> {
  while (performance.now() - t0 < PROBE_TIMEOUT_MS) {
    try {
      const res = await pool.request({ path: pathName, method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
      await res.body.dump();
      if (res.statusCode === 200) return performance.now() - t0;
    } catch {
      // retried
    }
    await sleep(PROBE_EVERY_MS);
  }
  return undefined;
}

// ───────────────────────────── one reload ─────────────────────────────

interface ReloadResult {
  readonly index: number;
  readonly kind: Kind;
  readonly loaded: boolean;
  readonly applyMs: number | undefined;
  readonly postMs: number | undefined;
  readonly postStatus: number | undefined;
  readonly newRouteMs: number | undefined;
  readonly newRoute: string;
  /** Config versions the trigger produced, counted just before the next reload (watcher re-reads). */
  versions: number;
  readonly t0: number;
  readonly appliedAt: number | undefined;
  readonly cpuMs: number | undefined;
  readonly rssBeforeKb: number | undefined;
  readonly rssAfterKb: number | undefined;
  window?: { count: number; failed: number; maxLatency: number; p99: number };
}

async function reloadOnce(
  gw: Gateway,
  upstreams: readonly string[],
  admin: Pool,
  probe: Pool,
  state: { gen: number; swapped: boolean; version: number },
  index: number,
  kind: Kind,
  loaded: boolean,
  load: Load | undefined,
): Promise<ReloadResult> {
  assertAlive(gw.child);
  const gen = state.gen + 1;
  const swapped = kind === 'swap' ? !state.swapped : state.swapped;
  const text = configYaml({ gen, swapped }, gw.port, gw.adminPort, upstreams);
  // The route this reload adds: the first of the swapped-in set for (c), the new marker otherwise.
  const newRoute = kind === 'swap' ? `${swapPath(0, swapped)}/x` : `/m${gen}/x`;
  const before = state.version;
  const cpuBefore = cpuTimeMs(gw.pid);
  const memBefore = memoryKb(gw.pid);
  const t0 = performance.now();
  writeAtomically(gw.file, text);
  let postMs: number | undefined;
  let postStatus: number | undefined;
  let postPromise: Promise<void> | undefined;
  if (kind === 'sighup') process.kill(gw.pid, 'SIGHUP');
  else if (kind === 'post') {
    // Its own connection: the version probe below keeps the admin pool's one connection busy.
    postPromise = (async () => {
      const res = await admin.request({ path: '/admin/reload', method: 'POST', headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS });
      await res.body.dump();
      postMs = performance.now() - t0;
      postStatus = res.statusCode;
    })();
  }
  const [applied, newRouteMs] = await Promise.all([waitVersion(admin, before, t0), waitRoute(probe, newRoute, t0), postPromise]);
  const appliedAt = applied ? t0 + applied.ms : undefined;
  state.gen = gen;
  state.swapped = swapped;
  if (load) load.swapped = swapped;
  if (applied) state.version = applied.version;
  // Let the watcher's own poll (500 ms) see the rename too, so its re-read lands in this reload's account.
  await sleep(1200);
  const cpuAfter = cpuTimeMs(gw.pid);
  const memAfter = memoryKb(gw.pid);
  return {
    index,
    kind,
    loaded,
    applyMs: applied?.ms,
    postMs,
    postStatus,
    newRouteMs,
    newRoute,
    versions: 0,
    t0,
    appliedAt,
    cpuMs: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
    rssBeforeKb: memBefore?.rss,
    rssAfterKb: memAfter?.rss,
  };
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  const started = performance.now();
  const machine = machineInfo();
  console.log(`# waygate reload benchmark\nmachine: ${machine.cpu} x ${machine.cores} cores, node ${machine.node}, ${machine.platform}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const build = ensureBuilt();
  console.log(`build: ${build}`);
  console.log(`config: 1,000 routes (${STABLE} stable, 1 marker, ${SWAP} swapped by kind c), ${SERVICES} static services with health checks`);
  console.log(`reloads: ${RELOADS} under load (kinds a, b, c in turn, one every ${GAP_MS} ms), then ${IDLE_RELOADS} without load; load: ${CONCURRENCY} keep-alive connections`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-reload-bench-'));
  tempDirs.add(dir);
  const launcher = snapshotWaygate(dir);
  const upstreams = await startUpstreams(7);
  const port = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, 'gateway.yaml');
  const state = { gen: 0, swapped: false, version: 0 };
  writeFileSync(file, configYaml({ gen: 0, swapped: false }, port, adminPort, upstreams.urls));
  const child = spawnNode('waygate', [...GATEWAY_NODE_ARGS, launcher, 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' }, echoStderr: true });
  const gw: Gateway = { child, pid: child.proc.pid!, file, dir, port, adminPort, publicUrl: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
  const pool = new Pool(gw.publicUrl, { connections: CONCURRENCY, pipelining: 1 });
  const admin = new Pool(gw.adminUrl, { connections: 2, pipelining: 1 });
  const probe = new Pool(gw.publicUrl, { connections: 1, pipelining: 1 });
  let load: Load | undefined;
  try {
    await waitUntilReady(`${gw.adminUrl}/health/ready`, { child, timeoutMs: 30_000 });
    state.version = await configVersion(admin);
    const memStart = memoryKb(gw.pid);
    const heapStart = await heapUsedMiB(admin);

    // Loaded phase: warm-up, baseline, reloads. The load stops by itself after this long at the latest.
    const hardStopMs = WARMUP_MS + BASELINE_MS + RELOADS * (GAP_MS + PROBE_TIMEOUT_MS) + 10_000;
    load = new Load(pool, CONCURRENCY, hardStopMs);
    await sleep(WARMUP_MS);
    assertAlive(child);
    const baseFrom = performance.now();
    const baseCpu0 = cpuTimeMs(gw.pid);
    await sleep(BASELINE_MS);
    const baseTo = performance.now();
    const baseCpuMs = (cpuTimeMs(gw.pid) ?? NaN) - (baseCpu0 ?? NaN);
    const baseline = load.between(baseFrom, baseTo);
    const memBeforeReloads = memoryKb(gw.pid);
    const heapBeforeReloads = await heapUsedMiB(admin);
    const results: ReloadResult[] = [];
    for (let i = 0; i < RELOADS; i++) {
      const kind = KINDS[i % KINDS.length]!;
      const versionBefore = state.version;
      const r = await reloadOnce(gw, upstreams.urls, admin, probe, state, i + 1, kind, true, load);
      state.version = await configVersion(admin);
      r.versions = state.version - versionBefore;
      results.push(r);
      process.stderr.write(`  reload ${i + 1}/${RELOADS} ${kind}: apply ${fmt(r.applyMs ?? NaN, 1)} ms, new route ${fmt(r.newRouteMs ?? NaN, 1)} ms, versions +${r.versions}\n`);
      await sleep(Math.max(0, GAP_MS - (performance.now() - r.t0)));
    }
    const loadEnd = performance.now();
    await load.stop();
    const memAfterReloads = memoryKb(gw.pid);
    const heapAfterReloads = await heapUsedMiB(admin);
    for (const r of results) r.window = load.between(r.t0, (r.appliedAt ?? r.t0 + PROBE_TIMEOUT_MS) + WINDOW_TAIL_MS);

    // Idle phase: the CPU one reload costs with nothing else running (POST, small change, then a swap).
    await sleep(1000);
    const idle: ReloadResult[] = [];
    for (let i = 0; i < IDLE_RELOADS; i++) {
      const kind: Kind = i % 2 === 0 ? 'post' : 'swap';
      const versionBefore = state.version;
      const r = await reloadOnce(gw, upstreams.urls, admin, probe, state, i + 1, kind, false, undefined);
      state.version = await configVersion(admin);
      r.versions = state.version - versionBefore;
      idle.push(r);
    }
    const idleCpuNoReload0 = cpuTimeMs(gw.pid);
    await sleep(1200);
    const idleCpuNoReloadMs = (cpuTimeMs(gw.pid) ?? NaN) - (idleCpuNoReload0 ?? NaN);
    const memEnd = memoryKb(gw.pid);
    const heapEnd = await heapUsedMiB(admin);

    // ── report ──
    const windows = results.map((r) => r.window!);
    const failedInWindows = windows.reduce((sum, w) => sum + w.failed, 0);
    const totalStable = load.starts.length;
    const loadSeconds = (loadEnd - baseFrom) / 1000;
    const byKind = (kind: Kind, pick: (r: ReloadResult) => number | undefined, from = results) =>
      from.filter((r) => r.kind === kind).map((r) => pick(r) ?? PROBE_TIMEOUT_MS);
    const all = (pick: (r: ReloadResult) => number | undefined, from = results) => from.map((r) => pick(r) ?? PROBE_TIMEOUT_MS);
    const row = (metric: string, values: readonly number[], target: string, digits = 1): string[] => [
      metric,
      values.length ? fmt(median(values), digits) : '-',
      values.length ? `${fmt(percentile(values, 95), digits)} / ${fmt(Math.max(...values), digits)}` : '-',
      target,
    ];
    const misses = results.filter((r) => r.applyMs === undefined || r.newRouteMs === undefined).length;
    const idleRate = idleCpuNoReloadMs / 1200;
    const idleExtraCpu = idle.map((r) => (r.cpuMs ?? NaN) - idleRate * (1200 + (r.applyMs ?? 0)));

    console.log(`\n## ${RELOADS} reloads of a 1,000-route config under load (${CONCURRENCY} connections, ${fmt(totalStable / ((loadEnd - (baseFrom - WARMUP_MS)) / 1000))} stable-route req/s), ${IDLE_RELOADS} idle\n`);
    const rows: string[][] = [];
    for (const kind of KINDS) {
      const label = kind === 'swap' ? '(c) watcher' : kind === 'post' ? '(b) POST' : '(a) SIGHUP';
      rows.push(row(`time to apply, ${label}: trigger -> /admin/config new version (ms)`, byKind(kind, (r) => r.applyMs), '— (lower is better)'));
    }
    rows.push(row('time to apply, all kinds (ms)', all((r) => r.applyMs), '— (lower is better)'));
    rows.push(row('POST /admin/reload latency (ms)', byKind('post', (r) => r.postMs), '— (lower is better)'));
    rows.push(row('trigger -> first 200 from an added route, (a)+(b) marker (ms)', [...byKind('sighup', (r) => r.newRouteMs), ...byKind('post', (r) => r.newRouteMs)], '— (lower is better)'));
    rows.push(row('trigger -> first 200 from an added route, (c) swapped-in (ms)', byKind('swap', (r) => r.newRouteMs), '— (lower is better)'));
    rows.push(row('failed requests per reload window (non-2xx + socket errors, stable routes)', windows.map((w) => w.failed), '0', 0));
    rows.push(row('max request latency in a reload window (ms)', windows.map((w) => w.maxLatency), '— (lower is better)'));
    rows.push(row('time to apply, idle, POST (ms)', all((r) => r.applyMs, idle.filter((r) => r.kind === 'post')), '— (lower is better)'));
    rows.push(row('time to apply, idle, (c) watcher (ms)', all((r) => r.applyMs, idle.filter((r) => r.kind === 'swap')), '— (lower is better)'));
    rows.push(row('gateway CPU per trigger, idle, above idle rate (ms)', idleExtraCpu, '— (lower is better)'));
    rows.push(row('gateway CPU per applied config version, idle (ms)', idle.map((r, i) => idleExtraCpu[i]! / Math.max(1, r.versions)), '— (lower is better)'));
    rows.push(row('config versions per trigger, (a)+(b)', [...byKind('sighup', (r) => r.versions), ...byKind('post', (r) => r.versions)], '1', 0));
    rows.push(row('config versions per trigger, (c)', byKind('swap', (r) => r.versions), '1', 0));
    printTable([{ header: 'metric', align: 'left' }, { header: 'median' }, { header: 'p95 / max' }, { header: 'target', align: 'left' }], rows);

    console.log(`\nfailed requests on stable routes: ${failedInWindows} in reload windows (trigger -> applied + ${WINDOW_TAIL_MS} ms), ${load.failures.length} in the whole loaded phase, of ${totalStable.toLocaleString('en-US')} (target 0): ${load.failures.length === 0 && misses === 0 ? 'MET' : 'MISSED'}`);
    if (load.failures.length > 0) {
      const kinds = new Map<string, number>();
      for (const f of load.failures) kinds.set(f.what, (kinds.get(f.what) ?? 0) + 1);
      console.log(`  failures by kind: ${[...kinds].map(([what, n]) => `${what} x${n}`).join(', ')}; first: ${load.failures.slice(0, 5).map((f) => `${f.path} ${f.what} at +${fmt(f.at - baseFrom)} ms`).join('; ')}`);
    }
    if (misses > 0) console.log(`  ${misses} reload(s) did not apply or serve the added route within ${PROBE_TIMEOUT_MS} ms (counted as ${PROBE_TIMEOUT_MS} ms above)`);
    console.log(`swapped routes (every 10th request; half ask for the set that is absent): 200 x${load.swapOk}, 404 x${load.swap404}, other x${load.swapOther.length}${load.swapOther.length ? ` (${load.swapOther.slice(0, 3).map((f) => `${f.path} ${f.what}`).join('; ')})` : ''}`);
    console.log(`baseline (${BASELINE_MS} ms of load, no reload): stable-route p99 ${fmt(baseline.p99, 1)} ms, max ${fmt(baseline.maxLatency, 1)} ms, ${baseline.failed} failed; gateway CPU ${fmt((100 * baseCpuMs) / (baseTo - baseFrom))} % of a core`);
    console.log(`gateway RSS (MiB): ${mib(memStart?.rss)} after start, ${mib(memBeforeReloads?.rss)} before the reloads (under load), ${mib(memAfterReloads?.rss)} after ${RELOADS} reloads, ${mib(memEnd?.rss)} after ${IDLE_RELOADS} idle ones; peak (VmHWM) ${mib(memEnd?.hwm)}`);
    console.log(`gateway heap used (MiB, /metrics): ${fmt(heapStart ?? NaN, 1)} after start, ${fmt(heapBeforeReloads ?? NaN, 1)} before the reloads, ${fmt(heapAfterReloads ?? NaN, 1)} after them, ${fmt(heapEnd ?? NaN, 1)} at the end`);
    console.log(`gateway CPU time over the whole run: ${fmt(cpuTimeMs(gw.pid) ?? NaN)} ms`);
    console.log('per reload (under load):');
    printTable(
      [{ header: '#' }, { header: 'kind', align: 'left' }, { header: 'apply ms' }, { header: 'POST ms' }, { header: 'added route ms' }, { header: 'versions' }, { header: 'requests in window' }, { header: 'failed' }, { header: 'max latency ms' }, { header: 'CPU ms' }, { header: 'RSS MiB before -> after' }],
      results.map((r) => [
        String(r.index),
        KIND_LABEL[r.kind],
        fmt(r.applyMs ?? NaN, 1),
        r.postMs === undefined ? '-' : `${fmt(r.postMs, 1)} (${r.postStatus})`,
        `${fmt(r.newRouteMs ?? NaN, 1)} ${r.newRoute}`,
        `+${r.versions}`,
        String(r.window!.count),
        String(r.window!.failed),
        fmt(r.window!.maxLatency, 1),
        fmt(r.cpuMs ?? NaN),
        `${mib(r.rssBeforeKb)} -> ${mib(r.rssAfterKb)}`,
      ]),
    );
    console.log('CPU ms = gateway utime+stime from trigger to 1.2 s after the new version showed up (includes the load served meanwhile)');
    const runtimeS = (performance.now() - started) / 1000;
    console.log(`\nruntime: ${runtimeS.toFixed(1)} s; load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

    const out = path.join(ROOT, 'benchmarks/results');
    mkdirSync(out, { recursive: true });
    const resultFile = path.join(out, 'reload-latest.json');
    writeFileSync(
      resultFile,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine,
          build,
          settings: { reloads: RELOADS, concurrency: CONCURRENCY, gapMs: GAP_MS, idleReloads: IDLE_RELOADS, routes: 1000 },
          runtimeS,
          stableRequests: totalStable,
          stableReqPerSec: totalStable / loadSeconds,
          failures: load.failures,
          swapped: { ok: load.swapOk, notFound: load.swap404, other: load.swapOther },
          baseline: { ...baseline, cpuMs: baseCpuMs, ms: baseTo - baseFrom },
          memoryKb: { start: memStart, beforeReloads: memBeforeReloads, afterReloads: memAfterReloads, end: memEnd },
          heapUsedMiB: { start: heapStart, beforeReloads: heapBeforeReloads, afterReloads: heapAfterReloads, end: heapEnd },
          reloads: results,
          idle,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`results: ${path.relative(ROOT, resultFile)}`);
  } finally {
    await load?.stop();
    await Promise.allSettled([pool.destroy(), admin.destroy(), probe.destroy()]);
    await stopChild(child);
    await Promise.all(upstreams.children.map((c) => stopChild(c)));
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

await runBenchmark(main);
