/**
 * `npm run bench:faults`: waygate under steady autocannon load while upstream instances fail.
 *
 *   1. kill-one  — 3 healthy instances; one is SIGKILLed ~2 s into the run. Target: 0 failed client requests.
 *   2. one-500   — one of 3 instances answers 500 from the start. Target: < 1 % non-2xx after the first second.
 *   3. all-dead  — all 3 are SIGKILLed; once every breaker is open, measure the 503 CIRCUIT_OPEN answers.
 *                  Target: p99 < 5 ms.
 *
 * Topology: bench process (autocannon) → waygate child (bin/waygate.js, fresh dist/) → 3 upstream children,
 * one node:http listener each, so one can be killed abruptly and the cores are shared by the OS scheduler.
 * Every scenario starts a fresh gateway and fresh upstreams, so no breaker or ejection state leaks across.
 *
 * Env: BENCH_DURATION (s per load phase, default 8), BENCH_CONNECTIONS (default 20),
 *      BENCH_SKIP_BUILD=1 to use the existing dist/ without rebuilding,
 *      BENCH_DIAGNOSE=1 to add run 1b: scenario 1 again with an unlimited retry budget (diagnostic only),
 *      BENCH_ONLY=1,3 to run only some scenarios (ids 1, 1b, 2, 3),
 *      BENCH_FIXED_RATE (req/s, default 1000) for scenario 3's paced context run.
 *
 * Run with a role (`upstream PORT`) this file is the upstream program; it takes IPC commands
 * `{ cmd: 'mode', mode: 'ok' | '500' | 'hang', id }` and acknowledges each with `{ ack: id, mode }`.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Child,
  ROOT,
  UPSTREAM_BODY,
  envNumber,
  freePort,
  isMain,
  machineInfo,
  printTable,
  sleep,
  spawnNode,
  stopAll,
  stopChild,
  waitUntilReady,
} from './lib.ts';

const SELF = fileURLToPath(import.meta.url);
const SERVICE = 'svc';

// ───────────────────────────── upstream child ─────────────────────────────

type Mode = 'ok' | '500' | 'hang';
const MODES: readonly Mode[] = ['ok', '500', 'hang'];

interface ModeCommand {
  cmd: 'mode';
  mode: Mode;
  id: number;
}

async function upstreamMain(port: number): Promise<void> {
  let mode: Mode = 'ok';
  const okBody = Buffer.from(UPSTREAM_BODY);
  // Not a gateway error body (no error.code), so the bench can tell passed-through 500s apart.
  const failBody = Buffer.from(JSON.stringify({ injected: true, message: 'upstream answering 500 on purpose' }));
  const hanging = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume(); // consume any body so keep-alive connections stay usable
    if (mode === 'hang') {
      // Never answer; the gateway's timeout (or the client) has to give up.
      hanging.add(res);
      res.once('close', () => hanging.delete(res));
      return;
    }
    const [status, body] = mode === '500' ? [500, failBody] : [200, okBody];
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000; // longer than the gateway pool's idle timeout
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  process.on('message', (message: ModeCommand) => {
    if (message?.cmd !== 'mode' || !MODES.includes(message.mode)) return;
    mode = message.mode;
    process.send?.({ ack: message.id, mode });
  });
  process.send?.({ ready: port });
  process.on('disconnect', () => process.exit(0)); // bench gone (even SIGKILLed): do not linger
  process.on('SIGTERM', () => process.exit(0));
}

interface Upstream {
  readonly url: string;
  readonly child: Child;
  setMode(mode: Mode): Promise<void>;
  kill(): void;
}

let commandId = 0;

async function startUpstream(index: number): Promise<Upstream> {
  const port = await freePort();
  const child = spawnNode(`upstream-${index}:${port}`, ['--import', 'tsx', SELF, 'upstream', String(port)], { ipc: true, echoStderr: true });
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(`${url}/`, { child });
  return {
    url,
    child,
    setMode: (mode) =>
      new Promise<void>((resolve, reject) => {
        const id = ++commandId;
        const timer = setTimeout(() => reject(new Error(`${child.name} did not acknowledge mode ${mode}`)), 5000);
        const onMessage = (message: { ack?: number }) => {
          if (message?.ack !== id) return;
          clearTimeout(timer);
          child.proc.off('message', onMessage);
          resolve();
        };
        child.proc.on('message', onMessage);
        child.proc.send({ cmd: 'mode', mode, id } satisfies ModeCommand);
      }),
    kill: () => {
      child.proc.kill('SIGKILL');
    },
  };
}

// ───────────────────────────── gateway child ─────────────────────────────

interface Gateway {
  readonly url: string;
  readonly admin: string;
  readonly child: Child;
  /** Every stdout/stderr line with its pino timestamp, else arrival time (pino JSON at level warn and above). */
  readonly log: Array<{ at: number; line: string }>;
}

const DEFAULT_RETRY_BUDGET = '{ percent: 20, minConcurrent: 3 }';
/** Diagnostic only (BENCH_DIAGNOSE=1): a budget that 20 connections can never exhaust. */
const UNLIMITED_RETRY_BUDGET = '{ percent: 100, minConcurrent: 1000 }';

/** The config of the brief with every default spelled out, so the run is explicit about what it tests. */
function gatewayConfig(port: number, adminPort: number, instances: readonly string[], retryBudget = DEFAULT_RETRY_BUDGET): string {
  return `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 5s }
defaults:
  timeout: 30s
  connectTimeout: 2s
  retries: 2
  retryOn: [connect-failure]
  retryBudget: ${retryBudget}
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 10, window: 10s, resetTimeout: 10s }
  outlierDetection: { consecutiveFailures: 5, baseEjectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }
  panicThreshold: 50
registry:
  static:
    services:
      ${SERVICE}:
        instances: [${instances.map((url) => JSON.stringify(url)).join(', ')}]
routes:
  - name: ${SERVICE}
    match: { pathPrefix: / }
    service: ${SERVICE}
`;
}

async function startGateway(dir: string, instances: readonly string[], retryBudget?: string): Promise<Gateway> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = path.join(dir, `waygate-${port}.yaml`);
  writeFileSync(file, gatewayConfig(port, adminPort, instances, retryBudget));
  const child = spawnNode('waygate', ['bin/waygate.js', 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' } });
  const log: Array<{ at: number; line: string }> = [];
  // lib.ts keeps only a short tail; keep the whole (bounded) log for the timeline and for evidence.
  for (const stream of [child.proc.stdout, child.proc.stderr]) {
    let partial = '';
    stream?.on('data', (chunk: string | Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line || log.length >= 5000) continue;
        // pino's own timestamp (same clock) is exact; arrival time can lag behind a busy gateway.
        const stamped = /"time":(\d+)/.exec(line)?.[1];
        log.push({ at: stamped ? Number(stamped) : Date.now(), line });
      }
    });
  }
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitUntilReady(`${admin}/health/ready`, { child });
  return { url: `http://127.0.0.1:${port}/`, admin, child, log };
}

interface InstanceView {
  url: string;
  breaker: string;
  ejected: boolean;
}

async function instanceStates(gateway: Gateway): Promise<InstanceView[]> {
  const response = await fetch(`${gateway.admin}/admin/routes`, { signal: AbortSignal.timeout(2000) });
  const body = (await response.json()) as { services?: Record<string, { instances?: InstanceView[] }> };
  return (body.services?.[SERVICE]?.instances ?? []).map(({ url, breaker, ejected }) => ({ url, breaker, ejected }));
}

/** Prometheus text → `name{labels}` → value (good enough for our own counters). */
async function scrape(gateway: Gateway): Promise<Map<string, number>> {
  const text = await (await fetch(`${gateway.admin}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('waygate_')) continue;
    // Of the process metrics only GC and event-loop lag are kept: they explain latency tails.
    // (Prefix waygate_ or waygate_process_, depending on the gateway version.)
    const processMetric = /^waygate_(process_)?(nodejs|process)_/.test(line);
    if (processMetric && !/^waygate_(process_)?nodejs_(gc_duration_seconds_(sum|count)|eventloop_lag_max_seconds)/.test(line)) continue;
    const cut = line.lastIndexOf(' ');
    series.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return series;
}

/** Sum of the series whose key starts with prefix and contains every fragment, after minus before. */
function delta(before: Map<string, number>, after: Map<string, number>, prefix: string, ...fragments: string[]): number {
  let sum = 0;
  for (const [key, value] of after) {
    if (!key.startsWith(prefix) || !fragments.every((f) => key.includes(f))) continue;
    sum += value - (before.get(key) ?? 0);
  }
  return sum;
}

/** Gateway-side share of requests finished within 5 ms, from the request-duration histogram. */
function gatewayShareWithin5ms(before: Map<string, number>, after: Map<string, number>): number | undefined {
  const total = delta(before, after, 'waygate_request_duration_seconds_count');
  const within = delta(before, after, 'waygate_request_duration_seconds_bucket', 'le="0.005"');
  return total > 0 ? within / total : undefined;
}

/** Breaker / ejection lines of the gateway log, relative to t0, for the report. */
function timeline(gateway: Gateway, t0: number, urls: readonly string[]): string[] {
  const out: string[] = [];
  for (const { at, line } of gateway.log) {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      out.push(`${fmtMs(at - t0)} ${line.slice(0, 200)}`);
      continue;
    }
    const instance = String(entry['url'] ?? entry['instance'] ?? '');
    const index = urls.findIndex((url) => instance.includes(url.replace('http://', '')));
    const who = index >= 0 ? `instance #${index + 1}` : instance;
    out.push(`${fmtMs(at - t0)} ${String(entry['msg'] ?? '')}${who ? ` (${who})` : ''}`);
  }
  return out;
}

// ───────────────────────────── load ─────────────────────────────

interface Load {
  connections: number;
  durationS: number;
}

interface LoadRecord {
  readonly startedAt: number;
  /** Completion time (ms since start), status and gateway error code ('' for upstream answers) per response. */
  readonly responses: Array<{ t: number; status: number; code: string }>;
  readonly latencies: number[];
  readonly socketErrors: Array<{ t: number; reason: string }>;
  autocannon?: { reqPerSec: number; p50: number; p99: number; total: number; durationS: number };
}

interface AutocannonTracker extends PromiseLike<AutocannonResult> {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
  on(event: 'reqError', fn: (error: Error & { code?: string }) => void): void;
  stop(): void;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  duration: number;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonTracker;
let autocannonFn: Autocannon | undefined;
// Loaded lazily: the upstream children import this file too but never generate load.
const autocannon = (options: Record<string, unknown>) => (autocannonFn ??= createRequire(import.meta.url)('autocannon') as Autocannon)(options);

/** Classifies a non-2xx body: the gateway's error.code, or `upstream` for an answer passed through. */
function bodyCode(status: number, body: string): string {
  if (status < 300) return '';
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string }; injected?: boolean };
    if (parsed.error?.code) return parsed.error.code;
    if (parsed.injected) return 'upstream-500-passed-through';
  } catch {
    // not JSON
  }
  return 'unknown-body';
}

/**
 * Starts an autocannon run that ends by itself after durationS (or earlier via stop()), recording every
 * response with its completion time so per-second error rates can be computed.
 */
function startLoad(url: string, load: Load): { record: LoadRecord; tracker: AutocannonTracker; done: Promise<LoadRecord> } {
  const record: LoadRecord = { startedAt: Date.now(), responses: [], latencies: [], socketErrors: [] };
  const tracker = autocannon({
    url,
    connections: load.connections,
    duration: load.durationS,
    pipelining: 1,
    timeout: 10,
    requests: [
      {
        method: 'GET',
        path: '/',
        onResponse: (status: number, body: string) => {
          record.responses.push({ t: Date.now() - record.startedAt, status, code: bodyCode(status, body) });
        },
      },
    ],
  });
  tracker.on('response', (_client, _status, _bytes, ms) => record.latencies.push(ms));
  tracker.on('reqError', (error) => record.socketErrors.push({ t: Date.now() - record.startedAt, reason: error.code ?? error.message }));
  const done = Promise.resolve(tracker).then((result) => {
    record.autocannon = {
      reqPerSec: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      total: result.requests.total,
      durationS: result.duration,
    };
    return record;
  });
  return { record, tracker, done };
}

/**
 * Open-loop load at a fixed rate, spread evenly over time (autocannon's overallRate sends each second's
 * quota in a burst, which is closed-loop queueing again). Requests go out on a keep-alive undici Pool of
 * `connections` sockets; a request waits for a free socket, which counts in its latency. Stops by itself.
 */
async function pacedLoad(url: string, load: Load, rate: number, onStart?: () => void): Promise<LoadRecord> {
  const { Pool } = await import('undici');
  const origin = new URL(url).origin;
  const pool = new Pool(origin, { connections: load.connections, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  // Warm-up, untimed: open every socket and let undici compile its HTTP parser (WebAssembly), which
  // otherwise stalls this process for tens of ms right when the first timed requests are in flight.
  await Promise.allSettled(Array.from({ length: load.connections * 2 }, () => pool.request({ path: '/', method: 'GET' }).then(({ body }) => body.text())));
  onStart?.();
  const record: LoadRecord = { startedAt: Date.now(), responses: [], latencies: [], socketErrors: [] };
  const startNs = process.hrtime.bigint();
  const endMs = load.durationS * 1000;
  const inflight = new Set<Promise<void>>();
  let issued = 0;
  const fire = () => {
    const sentNs = process.hrtime.bigint();
    const p = pool
      .request({ path: '/', method: 'GET' })
      .then(async ({ statusCode, body }) => {
        const text = await body.text();
        record.latencies.push(Number(process.hrtime.bigint() - sentNs) / 1e6);
        record.responses.push({ t: Date.now() - record.startedAt, status: statusCode, code: bodyCode(statusCode, text) });
      })
      .catch((error: Error & { code?: string }) => {
        record.socketErrors.push({ t: Date.now() - record.startedAt, reason: error.code ?? error.message });
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  await new Promise<void>((resolve) => {
    // Every millisecond, send whatever the schedule says is due by now, so timer jitter does not lower the rate.
    const timer = setInterval(() => {
      const elapsedMs = Number(process.hrtime.bigint() - startNs) / 1e6;
      const due = Math.floor((Math.min(elapsedMs, endMs) * rate) / 1000);
      while (issued < due) {
        issued += 1;
        fire();
      }
      if (elapsedMs >= endMs) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.allSettled([...inflight]);
  await pool.close();
  const seconds = (Date.now() - record.startedAt) / 1000;
  record.autocannon = {
    reqPerSec: record.responses.length / seconds,
    p50: Number.NaN,
    p99: Number.NaN,
    total: record.responses.length + record.socketErrors.length,
    durationS: seconds,
  };
  return record;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

const isFailure = (r: { status: number }) => r.status < 200 || r.status >= 300;

/** Per-second table of ok / non-2xx / socket errors. */
function perSecond(record: LoadRecord): Array<{ second: number; ok: number; non2xx: number; socketErrors: number }> {
  const rows: Array<{ second: number; ok: number; non2xx: number; socketErrors: number }> = [];
  const row = (t: number) => {
    const second = Math.floor(t / 1000);
    while (rows.length <= second) rows.push({ second: rows.length, ok: 0, non2xx: 0, socketErrors: 0 });
    return rows[second] as (typeof rows)[number];
  };
  for (const r of record.responses) {
    if (isFailure(r)) row(r.t).non2xx += 1;
    else row(r.t).ok += 1;
  }
  for (const e of record.socketErrors) row(e.t).socketErrors += 1;
  return rows;
}

// ───────────────────────────── scenarios ─────────────────────────────

interface Row {
  scenario: string;
  metric: string;
  value: string;
  target: string;
  met: string;
}

interface ScenarioResult {
  id: string;
  title: string;
  rows: Row[];
  details: Record<string, unknown>;
  notes: string[];
}

const fmt = (value: number, digits = 0) =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-';
const fmtMs = (ms: number) => `+${(ms / 1000).toFixed(3)}s`;
const pct = (n: number, d: number) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(3)} %`);
const yesNo = (ok: boolean) => (ok ? 'yes' : 'NO');

interface Env {
  dir: string;
  load: Load;
}

async function withTopology<T>(env: Env, fn: (gateway: Gateway, upstreams: Upstream[]) => Promise<T>, retryBudget?: string): Promise<T> {
  const upstreams = await Promise.all([0, 1, 2].map((i) => startUpstream(i + 1)));
  let gateway: Gateway | undefined;
  try {
    gateway = await startGateway(env.dir, upstreams.map((u) => u.url), retryBudget);
    return await fn(gateway, upstreams);
  } finally {
    if (gateway) await stopChild(gateway.child);
    await Promise.all(upstreams.map((u) => stopChild(u.child, 2000)));
  }
}

/**
 * 1. SIGKILL one of three instances ~2 s into the run. With `diagnostic` the retry budget is made
 * unlimited (the only change), to tell budget denials apart from other causes of failed requests.
 */
async function killOne(env: Env, diagnostic = false): Promise<ScenarioResult> {
  const KILL_AT_MS = 2000;
  const label = diagnostic ? '1b kill-one DIAG' : '1 kill-one';
  return withTopology(env, async (gateway, upstreams) => {
    const victim = upstreams[1] as Upstream;
    const before = await scrape(gateway);
    const { record, done } = startLoad(gateway.url, env.load);
    let killedAtMs: number | undefined;
    const killTimer = setTimeout(() => {
      killedAtMs = Date.now() - record.startedAt;
      victim.kill();
    }, KILL_AT_MS);
    await done;
    clearTimeout(killTimer);
    const after = await scrape(gateway);
    const states = await instanceStates(gateway);

    const failedResponses = record.responses.filter(isFailure);
    const failed = failedResponses.length + record.socketErrors.length;
    const total = record.responses.length + record.socketErrors.length;
    const ac = record.autocannon;
    const rows: Row[] = [
      {
        scenario: label,
        metric: 'failed client requests (non-2xx + socket errors)',
        value: `${fmt(failed)} of ${fmt(total)}`,
        target: diagnostic ? '(diagnostic)' : '0',
        met: diagnostic ? '-' : yesNo(failed === 0),
      },
      { scenario: label, metric: 'req/s (whole run)', value: fmt(ac?.reqPerSec ?? Number.NaN), target: '-', met: '-' },
      {
        scenario: label,
        metric: 'failed upstream attempts / retries',
        value: `${fmt(delta(before, after, 'waygate_upstream_attempts_total', 'outcome="failure"'))} / ${fmt(delta(before, after, 'waygate_retries_total'))}`,
        target: '-',
        met: '-',
      },
    ];
    const killedState = states.find((s) => s.url === victim.url);
    return {
      id: diagnostic ? 'kill-one-diagnostic' : 'kill-one',
      title: `SIGKILL instance #2 at ~${KILL_AT_MS / 1000} s under load${diagnostic ? ` (DIAGNOSTIC: retryBudget ${UNLIMITED_RETRY_BUDGET})` : ''}`,
      rows,
      details: {
        retryBudget: diagnostic ? UNLIMITED_RETRY_BUDGET : DEFAULT_RETRY_BUDGET,
        killAtMs: KILL_AT_MS,
        killedAtMs,
        totalRequests: total,
        failed,
        failedByStatusAndCode: countBy(failedResponses, (r) => `${r.status} ${r.code}`),
        socketErrorsByReason: countBy(record.socketErrors, (e) => e.reason),
        failureTimesMs: [...failedResponses.map((r) => r.t), ...record.socketErrors.map((e) => e.t)].sort((a, b) => a - b).slice(0, 50),
        perSecond: perSecond(record),
        autocannon: ac,
        gateway: {
          retries: delta(before, after, 'waygate_retries_total'),
          attemptsByOutcome: Object.fromEntries(['success', 'failure', 'timeout', 'rejected'].map((o) => [o, delta(before, after, 'waygate_upstream_attempts_total', `outcome="${o}"`)])),
          outlierEjections: delta(before, after, 'waygate_outlier_ejections_total'),
          killedInstanceAtEnd: killedState,
          timeline: timeline(gateway, record.startedAt, upstreams.map((u) => u.url)),
        },
      },
      notes: diagnostic ? ['diagnostic run, not a target: the retry budget is the only setting changed'] : [],
    };
  }, diagnostic ? UNLIMITED_RETRY_BUDGET : undefined);
}

/** 2. One instance answers 500 from the start. */
async function one500(env: Env): Promise<ScenarioResult> {
  return withTopology(env, async (gateway, upstreams) => {
    const bad = upstreams[0] as Upstream;
    await bad.setMode('500');
    const before = await scrape(gateway);
    const { record, done } = startLoad(gateway.url, env.load);
    await done;
    const after = await scrape(gateway);
    const states = await instanceStates(gateway);

    const late = record.responses.filter((r) => r.t >= 1000);
    const lateErrors = record.socketErrors.filter((e) => e.t >= 1000);
    const lateFailed = late.filter(isFailure).length + lateErrors.length;
    const lateTotal = late.length + lateErrors.length;
    const early = record.responses.filter((r) => r.t < 1000);
    const earlyFailed = early.filter(isFailure).length + record.socketErrors.filter((e) => e.t < 1000).length;
    const failures = record.responses.filter(isFailure);
    const lastFailureMs = failures.length ? Math.max(...failures.map((r) => r.t)) : undefined;
    const rate = lateTotal === 0 ? Number.NaN : lateFailed / lateTotal;
    const rows: Row[] = [
      { scenario: '2 one-500', metric: 'client error rate after 1st second', value: `${pct(lateFailed, lateTotal)} (${fmt(lateFailed)}/${fmt(lateTotal)})`, target: '< 1 %', met: yesNo(rate < 0.01) },
      { scenario: '2 one-500', metric: 'failed requests in 1st second', value: `${fmt(earlyFailed)} of ${fmt(early.length)}`, target: '-', met: '-' },
      { scenario: '2 one-500', metric: 'last non-2xx answer at', value: lastFailureMs === undefined ? 'none' : fmtMs(lastFailureMs), target: '-', met: '-' },
      { scenario: '2 one-500', metric: 'req/s (whole run)', value: fmt(record.autocannon?.reqPerSec ?? Number.NaN), target: '-', met: '-' },
    ];
    return {
      id: 'one-500',
      title: 'instance #1 answers 500 from the start',
      rows,
      details: {
        totalRequests: record.responses.length + record.socketErrors.length,
        errorRateAfterFirstSecond: rate,
        afterFirstSecond: { failed: lateFailed, total: lateTotal },
        firstSecond: { failed: earlyFailed, total: early.length },
        failedByStatusAndCode: countBy(failures, (r) => `${r.status} ${r.code}`),
        socketErrorsByReason: countBy(record.socketErrors, (e) => e.reason),
        failureTimesMs: failures.map((r) => r.t).slice(0, 50),
        lastFailureMs,
        perSecond: perSecond(record),
        autocannon: record.autocannon,
        gateway: {
          attemptsByOutcome: Object.fromEntries(['success', 'failure', 'timeout', 'rejected'].map((o) => [o, delta(before, after, 'waygate_upstream_attempts_total', `outcome="${o}"`)])),
          outlierEjections: delta(before, after, 'waygate_outlier_ejections_total'),
          badInstanceAtEnd: states.find((s) => s.url === bad.url),
          timeline: timeline(gateway, record.startedAt, upstreams.map((u) => u.url)),
        },
      },
      notes: [],
    };
  });
}

/** 3. Every instance dead: wait for all breakers to open, then measure the CIRCUIT_OPEN answers. */
async function allDead(env: Env): Promise<ScenarioResult> {
  const KILL_AT_MS = 1000;
  const OPEN_DEADLINE_MS = 30_000;
  return withTopology(env, async (gateway, upstreams) => {
    // Phase A: load, kill everyone, poll the routing table until every breaker is open.
    const opening = startLoad(gateway.url, { connections: env.load.connections, durationS: Math.ceil((KILL_AT_MS + OPEN_DEADLINE_MS) / 1000) + 5 });
    await sleep(KILL_AT_MS);
    const killedAt = Date.now();
    for (const u of upstreams) u.kill();
    let openAt: number | undefined;
    let lastStates: InstanceView[] = [];
    while (Date.now() - killedAt < OPEN_DEADLINE_MS) {
      lastStates = await instanceStates(gateway);
      if (lastStates.length === 3 && lastStates.every((s) => s.breaker === 'open')) {
        openAt = Date.now();
        break;
      }
      await sleep(50);
    }
    opening.tracker.stop();
    const openingRecord = await opening.done;
    if (openAt === undefined) {
      return {
        id: 'all-dead',
        title: 'all 3 instances SIGKILLed',
        rows: [{ scenario: '3 all-dead', metric: 'all breakers open', value: `not within ${OPEN_DEADLINE_MS / 1000} s: ${lastStates.map((s) => s.breaker).join(',')}`, target: 'open', met: 'NO' }],
        details: { lastStates, openingPhase: countBy(openingRecord.responses, (r) => `${r.status} ${r.code}`), timeline: timeline(gateway, killedAt, upstreams.map((u) => u.url)) },
        notes: [],
      };
    }

    // Phase B (the target): a fresh closed-loop run, as many requests as the connections can push.
    const saturated = await measureOpen(gateway, env.load);
    // Phase C (context only): the same connections held to a fixed rate well below saturation, so the
    // latency shows the cost of a fail-fast answer rather than queueing on a CPU-bound 2-core box.
    const fixedRate = envNumber('BENCH_FIXED_RATE', 1000);
    const paced = await measureOpen(gateway, env.load, fixedRate);
    const states = await instanceStates(gateway);
    const s = '3 all-dead';
    const mixText = (m: MeasuredOpen) => Object.entries(m.statusMix).map(([k, v]) => `${k}: ${fmt(v)}`).join('; ');
    const share = (m: MeasuredOpen) => (m.gatewayShareWithin5ms === undefined ? '-' : `${(m.gatewayShareWithin5ms * 100).toFixed(2)} %`);
    const littleMs = (saturated.requests > 0 && saturated.seconds > 0) ? (env.load.connections / (saturated.requests / saturated.seconds)) * 1000 : Number.NaN;
    const rows: Row[] = [
      { scenario: s, metric: 'time from kill to all breakers open', value: `${fmt((openAt - killedAt) / 1000, 2)} s`, target: '-', met: '-' },
      { scenario: s, metric: `latency p50 (client, ${env.load.connections} conns closed loop)`, value: `${fmt(saturated.p50Ms, 2)} ms`, target: '-', met: '-' },
      { scenario: s, metric: `latency p99 (client, ${env.load.connections} conns closed loop)`, value: `${fmt(saturated.p99Ms, 2)} ms`, target: '< 5 ms', met: yesNo(saturated.p99Ms < 5) },
      { scenario: s, metric: 'req/s (closed loop)', value: fmt(saturated.reqPerSec), target: '-', met: '-' },
      { scenario: s, metric: 'status mix (closed loop)', value: mixText(saturated), target: 'all 503 CIRCUIT_OPEN', met: yesNo(saturated.notCircuitOpen === 0) },
      { scenario: s, metric: 'gateway-side share <= 5 ms (closed loop)', value: share(saturated), target: '-', met: '-' },
      {
        scenario: s,
        metric: 'stalls in closed loop: bench loop p99 / gateway lag max / gateway GC',
        value: `${fmt(saturated.stalls.benchEventLoopDelayP99Ms, 1)} ms / ${fmt(saturated.stalls.gatewayEventLoopLagMaxMs, 1)} ms / ${fmt(saturated.stalls.gatewayGc['minor']?.count ?? 0)} minor + ${fmt(saturated.stalls.gatewayGc['major']?.count ?? 0)} major, ${fmt((saturated.stalls.gatewayGc['minor']?.totalMs ?? 0) + (saturated.stalls.gatewayGc['major']?.totalMs ?? 0), 1)} ms`,
        target: '-',
        met: '-',
      },
      { scenario: s, metric: 'half-open trial inside closed-loop window', value: saturated.halfOpenSeen ? 'yes' : 'no', target: '-', met: '-' },
      { scenario: s, metric: `latency p50 / p99 at fixed ${fmt(fixedRate)} req/s (context)`, value: `${fmt(paced.p50Ms, 2)} / ${fmt(paced.p99Ms, 2)} ms`, target: '-', met: '-' },
      { scenario: s, metric: `status mix at fixed ${fmt(fixedRate)} req/s (context)`, value: mixText(paced), target: '-', met: '-' },
    ];
    return {
      id: 'all-dead',
      title: 'all 3 instances SIGKILLed; measured once every breaker is open',
      rows,
      details: {
        killAtMs: KILL_AT_MS,
        timeToAllOpenMs: openAt - killedAt,
        openingPhase: { statusMix: countBy(openingRecord.responses, (r) => `${r.status} ${r.code}`), socketErrors: countBy(openingRecord.socketErrors, (e) => e.reason) },
        measured: { ...saturated, startedAfterKillMs: saturated.startedAt - killedAt },
        fixedRate: { rate: fixedRate, ...paced, startedAfterKillMs: paced.startedAt - killedAt },
        littleLawMeanLatencyMs: littleMs,
        gateway: {
          statesAtEnd: states,
          timeline: timeline(gateway, killedAt, upstreams.map((u) => u.url)),
        },
      },
      notes: [
        `closed-loop window started ${fmt((saturated.startedAt - killedAt) / 1000, 2)} s after the kill; resetTimeout is 10 s, so the first half-open trial falls ~10 s after the first breaker opened`,
        `closed loop: mean latency = connections / throughput = ${fmt(littleMs, 2)} ms (Little's law), whatever the gateway does per request`,
      ],
    };
  });
}

interface MeasuredOpen {
  startedAt: number;
  seconds: number;
  requests: number;
  reqPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  statusMix: Record<string, number>;
  notCircuitOpen: number;
  nonCircuitOpenTimesMs: number[];
  gatewayShareWithin5ms: number | undefined;
  halfOpenSeen: boolean;
  attemptsByOutcome: Record<string, number>;
  perSecond: ReturnType<typeof perSecond>;
  stalls: {
    benchEventLoopDelayMaxMs: number;
    benchEventLoopDelayP99Ms: number;
    gatewayEventLoopLagMaxMs: number;
    gatewayGc: Record<string, { count: number; totalMs: number }>;
  };
  /** The slowest answers with their completion time in the run, to tell bursts from steady tails. */
  slowest: Array<{ t: number; ms: number; status: number; code: string }>;
}

/** One fixed-duration run against a service whose breakers are all open (fixedRate: open loop, else closed loop). */
async function measureOpen(gateway: Gateway, load: Load, fixedRate?: number): Promise<MeasuredOpen> {
  const before = await scrape(gateway);
  // Stalls of the bench's own event loop delay every answer it times; measure them to tell them apart.
  const benchLoop = monitorEventLoopDelay({ resolution: 1 });
  const record =
    fixedRate === undefined
      ? await (benchLoop.enable(), startLoad(gateway.url, load).done)
      : await pacedLoad(gateway.url, load, fixedRate, () => benchLoop.enable());
  benchLoop.disable();
  const endedAt = Date.now();
  const after = await scrape(gateway);
  const gcKinds = ['minor', 'major', 'incremental'];
  const sorted = [...record.latencies].sort((a, b) => a - b);
  const statusMix = countBy(record.responses, (r) => `${r.status}${r.code ? ` ${r.code}` : ''}`);
  for (const e of record.socketErrors) statusMix[`socket error ${e.reason}`] = (statusMix[`socket error ${e.reason}`] ?? 0) + 1;
  const other = record.responses.filter((r) => r.code !== 'CIRCUIT_OPEN');
  const requests = record.responses.length + record.socketErrors.length;
  const seconds = (endedAt - record.startedAt) / 1000;
  return {
    startedAt: record.startedAt,
    seconds,
    requests,
    reqPerSec: record.autocannon?.reqPerSec ?? requests / seconds,
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    p999Ms: percentile(sorted, 99.9),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
    statusMix,
    notCircuitOpen: other.length + record.socketErrors.length,
    nonCircuitOpenTimesMs: other.map((r) => r.t).slice(0, 50),
    gatewayShareWithin5ms: gatewayShareWithin5ms(before, after),
    halfOpenSeen: gateway.log.some(({ at, line }) => at >= record.startedAt && at <= endedAt && line.includes('half-open')),
    attemptsByOutcome: Object.fromEntries(['success', 'failure', 'timeout', 'rejected'].map((o) => [o, delta(before, after, 'waygate_upstream_attempts_total', `outcome="${o}"`)])),
    perSecond: perSecond(record),
    stalls: {
      benchEventLoopDelayMaxMs: benchLoop.max / 1e6,
      benchEventLoopDelayP99Ms: benchLoop.percentile(99) / 1e6,
      // prom-client resets its lag histogram at every scrape, so these cover this run only.
      // Sampled by prom-client with a 10 ms timer, so ~10 ms is its floor.
      gatewayEventLoopLagMaxMs: delta(new Map(), after, 'waygate_', 'nodejs_eventloop_lag_max_seconds') * 1000,
      gatewayGc: Object.fromEntries(
        gcKinds.map((kind) => [
          kind,
          {
            count: delta(before, after, 'waygate_', 'nodejs_gc_duration_seconds_count', `kind="${kind}"`),
            totalMs: Math.round(delta(before, after, 'waygate_', 'nodejs_gc_duration_seconds_sum', `kind="${kind}"`) * 1e5) / 100,
          },
        ]),
      ),
    },
    // responses[i] and latencies[i] belong to the same answer (both hooks fire per response, in order).
    slowest: record.responses
      .map((r, i) => ({ ...r, ms: record.latencies[i] ?? Number.NaN }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 25)
      .map(({ t, ms, status, code }) => ({ t, ms: Math.round(ms * 100) / 100, status, code })),
  };
}

// ───────────────────────────── bench ─────────────────────────────

function build(): string {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  if (process.env.BENCH_SKIP_BUILD === '1') {
    if (!existsSync(cli)) throw new Error('dist/cli.js is missing; unset BENCH_SKIP_BUILD');
    return 'skipped (BENCH_SKIP_BUILD=1)';
  }
  process.stdout.write('building waygate (npx tsc -p tsconfig.build.json) ...\n');
  const result = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status === 0) return 'fresh';
  // tsc still emits on type errors; others edit src/ concurrently, so say so rather than abort.
  if (!existsSync(cli)) throw new Error('build failed and dist/ has no previous build');
  process.stdout.write('WARNING: tsc reported errors; dist/ may be stale or partly rebuilt\n');
  return `tsc exited ${result.status}; dist may be stale`;
}

async function bench(): Promise<void> {
  const started = Date.now();
  const load: Load = { durationS: envNumber('BENCH_DURATION', 8), connections: envNumber('BENCH_CONNECTIONS', 20) };
  const machine = machineInfo();
  process.stdout.write(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}\n`);
  process.stdout.write(`load: autocannon, ${load.connections} connections, ${load.durationS} s per load phase, pipelining 1\n`);
  process.stdout.write(`1-min load average before: ${(os.loadavg()[0] ?? 0).toFixed(2)}\n`);
  const buildStatus = build();

  // Safety net: whatever hangs, the bench ends and lib.ts's exit guard SIGKILLs the children.
  const watchdog = setTimeout(() => {
    process.stderr.write('\nfaults bench exceeded 10 minutes; aborting\n');
    void stopAll().finally(() => process.exit(1));
  }, 10 * 60_000);
  watchdog.unref();

  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-faults-'));
  const env: Env = { dir, load };
  const results: ScenarioResult[] = [];
  try {
    const scenarios: Array<[string, string, (env: Env) => Promise<ScenarioResult>]> = [
      ['1', '1 kill-one', killOne],
      ['2', '2 one-500', one500],
      ['3', '3 all-dead', allDead],
    ];
    if (process.env.BENCH_DIAGNOSE === '1') scenarios.splice(1, 0, ['1b', '1b kill-one DIAG (unlimited retry budget)', (e) => killOne(e, true)]);
    const only = process.env.BENCH_ONLY?.split(',').map((id) => id.trim()).filter(Boolean);
    for (const [id, label, run] of scenarios) {
      if (only?.length && !only.includes(id)) continue;
      process.stdout.write(`\nscenario ${label} ... `);
      const t = Date.now();
      const result = await run(env);
      results.push(result);
      process.stdout.write(`done in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
      const tl = (result.details['gateway'] as { timeline?: string[] } | undefined)?.timeline ?? (result.details['timeline'] as string[] | undefined) ?? [];
      if (tl.length) process.stdout.write(`  gateway log (warn+), relative to ${result.id === 'all-dead' ? 'the kill' : 'load start'}:\n${tl.slice(0, 12).map((l) => `    ${l}`).join('\n')}${tl.length > 12 ? `\n    ... ${tl.length - 12} more` : ''}\n`);
      for (const note of result.notes) process.stdout.write(`  note: ${note}\n`);
    }
  } finally {
    clearTimeout(watchdog);
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  const rows = results.flatMap((r) => r.rows);
  process.stdout.write('\n');
  printTable(
    [{ header: 'scenario', align: 'left' }, { header: 'metric', align: 'left' }, { header: 'value', align: 'left' }, { header: 'target', align: 'left' }, { header: 'met?', align: 'left' }],
    rows.map((r) => [r.scenario, r.metric, r.value, r.target, r.met]),
  );
  const runtimeS = (Date.now() - started) / 1000;
  process.stdout.write(`\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}\n`);
  process.stdout.write(`config: waygate defaults (breaker 50 %/10 req/10 s window/10 s reset, outlier 5 consecutive/30 s, retries 2 on connect-failure, budget 20 %/min 3, panic 50 %)\n`);
  process.stdout.write(`build: ${buildStatus}; runtime ${runtimeS.toFixed(1)} s; 1-min load average after: ${(os.loadavg()[0] ?? 0).toFixed(2)}\n`);

  const outDir = path.join(ROOT, 'benchmarks', 'results');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'faults-latest.json');
  const report = {
    benchmark: 'faults',
    date: new Date().toISOString(),
    machine,
    build: buildStatus,
    runtimeS,
    load: { tool: 'autocannon', ...load, pipelining: 1 },
    config: 'waygate defaults; 3 static instances, one route /',
    only: process.env.BENCH_ONLY ?? null,
    diagnose: process.env.BENCH_DIAGNOSE === '1',
    table: rows,
    scenarios: results,
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(ROOT, out)}\n`);
}

if (isMain(import.meta.url)) {
  const [role, port] = process.argv.slice(2);
  if (role === 'upstream' && port) await upstreamMain(Number(port));
  else if (role === undefined) {
    try {
      await bench();
    } catch (error) {
      process.stderr.write(`\nfaults bench failed: ${(error as Error).stack ?? String(error)}\n`);
      await stopAll();
      process.exitCode = 1;
    }
  } else {
    process.stderr.write('usage: faults.ts [upstream PORT]\n');
    process.exitCode = 1;
  }
}
