/**
 * `npm run bench:workers`: what `server.workers: N` costs and how it behaves when a worker dies.
 *
 * Topology (every listener on 127.0.0.1):
 *
 *   bench process ── public port: node:http keep-alive connections (each pinned to one worker, see below)
 *        │           admin port: one undici connection (GET /metrics, GET /health/ready)
 *        ▼
 *   waygate primary (bin/waygate.js on a copy of dist/, leader of its own process group)
 *        │ node:cluster, round-robin hand-off of accepted connections
 *        ▼
 *   N worker processes ── keep-alive pools ──► upstream child process (benchmarks/lib.ts `upstream`, 3 listeners)
 *
 * Config: one static service `app` with 3 instances (no health check) and ROUTES routes `/r0` … `/r999`
 * (pathPrefix + stripPrefix, all on `app`), `shutdown: { drainDelay: 0s, timeout: 2s }`.
 *
 * Which worker holds a connection: the bench reads the client socket's local port, finds the server
 * side of that connection in /proc/net/tcp (its inode) and the worker whose /proc/<pid>/fd holds that
 * socket. So traffic can be aimed at every worker, and a failed request can be tied to the killed worker.
 *
 * Part 1, scrape cost (configs BENCH_SCRAPE_WORKERS, default 8, 1, 2; interleaved over --rounds rounds,
 *   the order rotating each round, a fresh gateway per config and round):
 *   traffic: 8 keep-alive connections, opened until every worker holds at least one; every route is
 *   requested 8 times, copy c on a connection of worker (c mod N), so with 8 workers every worker has
 *   every route's series and every config gets the same 8 × ROUTES requests. Then 2 unmeasured scrapes
 *   and --scrapes (20) sequential `GET /metrics`: latency, body bytes, series (non-comment lines), and
 *   the CPU (utime+stime) the gateway's whole process group used per scrape. The sum of
 *   waygate_requests_total in the last body is checked against the requests sent (a merge that drops
 *   or double-counts a worker shows here).
 * Part 2, worker replacement (workers: BENCH_KILL_WORKERS, default 2; --kills 6 kills, 1.5 s after the
 *   previous replacement serves, so the primary's 1 s respawn back-off never applies): `kill -9` one worker (from `ps --ppid`), then
 *   time until the primary logs "worker died", until a new pid logs "worker serving" (the time the
 *   bench receives the line on the primary's stdout), until /health/ready is 200, until a request on a
 *   new connection succeeds, and until a request on a new connection is served by the replacement.
 * Part 3, requests failed during a kill (same gateway after part 2): BENCH_LOAD_KILLS (3) kills, each
 *   under a fresh load of 16 keep-alive connections (one request loop each; fresh, because the
 *   connections a kill resets all reconnect to the surviving worker and stay there); per kill the window
 *   runs from the kill until 1.5 s after the replacement serves. Failed = socket error or non-2xx.
 *
 * Args/env: --rounds N (BENCH_ROUNDS, 2), --scrapes N (BENCH_SCRAPES, 20), --kills N (BENCH_KILLS, 6),
 *   BENCH_LOAD_KILLS (3), BENCH_ROUTES (1000), BENCH_SCRAPE_WORKERS (8,1,2), BENCH_KILL_WORKERS (2),
 *   BENCH_SKIP_BUILD=1. Results: benchmarks/results/workers-latest.txt (the printed report) and
 *   workers-latest.json (every sample).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import {
  type Child,
  ROOT,
  ensureBuilt,
  envNumber,
  formatTable,
  freePort,
  groupUsage,
  machineInfo,
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

const ROUNDS = Math.round(argNumber('--rounds', 'BENCH_ROUNDS', 2));
const SCRAPES = Math.round(argNumber('--scrapes', 'BENCH_SCRAPES', 20));
const KILLS = Math.round(argNumber('--kills', 'BENCH_KILLS', 6));
const LOAD_KILLS = Math.round(envNumber('BENCH_LOAD_KILLS', 3));
const ROUTES = Math.round(envNumber('BENCH_ROUTES', 1000));
const SCRAPE_WORKERS = (process.env['BENCH_SCRAPE_WORKERS'] ?? '8,1,2').split(',').map((s) => Math.round(Number(s.trim())));
const KILL_WORKERS = Math.round(envNumber('BENCH_KILL_WORKERS', 2));
if (SCRAPE_WORKERS.some((n) => !Number.isFinite(n) || n < 1 || n > 64)) throw new Error('BENCH_SCRAPE_WORKERS: numbers from 1 to 64');
if (KILL_WORKERS < 2) throw new Error('BENCH_KILL_WORKERS must be at least 2');

/** Every route is requested this many times in part 1, whatever the worker count (the largest default config). */
const COPIES = 8;
/** Connections that carry part 1's traffic (more are opened while some worker still has none). */
const TRAFFIC_CONNECTIONS = 8;
const WARMUP_SCRAPES = 2;
const LOAD_CONNECTIONS = 16;
const KILL_GAP_MS = 1500;
const KILL_TIMEOUT_MS = 10_000;
const WINDOW_TAIL_MS = 1500;
const PROBE_EVERY_MS = 10;
const REQUEST_TIMEOUT_MS = 10_000;
/** New-connection probes after a kill: one every PROBE_EVERY_MS for at least this long, each with PROBE_TIMEOUT_MS. */
const NEW_CONNECTION_PROBE_MS = 300;
const PROBE_TIMEOUT_MS = 3000;
const UPSTREAMS = 3;

// ───────────────────────────── small helpers ─────────────────────────────

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const median = (values: readonly number[]) => percentile(values, 50);
const max = (values: readonly number[]) => (values.length ? Math.max(...values) : NaN);
const fmt = (v: number, digits = 0): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');

let report = '';
/** Prints a line and keeps it for benchmarks/results/workers-latest.txt. */
function out(text = ''): void {
  report += `${text}\n`;
  process.stdout.write(`${text}\n`);
}
const progress = (text: string) => process.stderr.write(`  ${text}\n`);

// ───────────────────────────── config ─────────────────────────────

function configYaml(workers: number, port: number, adminPort: number, upstreams: readonly string[]): string {
  const lines = [
    `server: { host: 127.0.0.1, port: ${port}, workers: ${workers} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 2s }',
    'registry:',
    '  static:',
    '    services:',
    '      app:',
    `        instances: [${upstreams.map((u) => `"${u}"`).join(', ')}]`,
    'routes:',
  ];
  for (let i = 0; i < ROUTES; i++) lines.push(`  - name: r${i}`, `    match: { pathPrefix: /r${i} }`, '    service: app', '    stripPrefix: true');
  return `${lines.join('\n')}\n`;
}

// ───────────────────────────── gateway ─────────────────────────────

interface LogLine {
  readonly at: number;
  readonly msg: string;
  readonly pid: number | undefined;
}

interface Gateway {
  readonly child: Child;
  readonly pid: number;
  readonly workers: number;
  readonly port: number;
  readonly adminUrl: string;
  readonly logs: LogLine[];
  readonly startMs: number;
}

function assertAlive(gw: Gateway): void {
  const { proc } = gw.child;
  if (proc.exitCode !== null || proc.signalCode !== null) {
    throw new Error(`waygate exited (${proc.exitCode ?? proc.signalCode})\n${gw.child.tail.join('\n')}`);
  }
}

const servingLines = (gw: Gateway) => gw.logs.filter((l) => l.msg === 'worker serving');

async function startGateway(launcher: string, dir: string, workers: number, upstreams: readonly string[]): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, `gateway-${workers}.yaml`);
  writeFileSync(file, configYaml(workers, port, adminPort, upstreams));
  const logs: LogLine[] = [];
  let partial = '';
  const t0 = performance.now();
  // Its own process group: the workers are in it, so groupUsage() sees them and stopChild() reaches them.
  const child = spawnNode('waygate', [launcher, 'start', '--config', file], {
    env: { WAYGATE_LOG_LEVEL: 'info' },
    echoStderr: true,
    group: true,
    onStdout: (text) => {
      const at = performance.now();
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          const doc = JSON.parse(line) as { msg?: unknown; pid?: unknown };
          logs.push({ at, msg: String(doc.msg ?? ''), pid: typeof doc.pid === 'number' ? doc.pid : undefined });
        } catch {
          // not a log line
        }
      }
    },
  });
  const gw: Gateway = { child, pid: child.proc.pid!, workers, port, adminUrl: `http://127.0.0.1:${adminPort}`, logs, startMs: 0 };
  await waitUntilReady(`${gw.adminUrl}/health/ready`, { child, timeoutMs: 60_000 });
  if (workers > 1) {
    const deadline = performance.now() + 30_000;
    while (servingLines(gw).length < workers || workerPids(gw).length < workers) {
      assertAlive(gw);
      if (performance.now() > deadline) throw new Error(`only ${servingLines(gw).length} of ${workers} workers logged "worker serving"\n${child.tail.join('\n')}`);
      await sleep(20);
    }
  }
  return { ...gw, startMs: performance.now() - t0 };
}

/** The primary's children: its workers (`ps -o pid= --ppid <primary>`). */
function workerPids(gw: Gateway): number[] {
  const ps = spawnSync('ps', ['-o', 'pid=', '--ppid', String(gw.pid)], { encoding: 'utf8' });
  return ps.stdout.split('\n').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
}

// ───────────────────────────── which process holds a connection ─────────────────────────────

/** Server-side sockets of connections to 127.0.0.1:port: client port -> socket inode (from /proc/net/tcp). */
function serverSockets(port: number): Map<number, string> {
  const byClient = new Map<number, string>();
  let text = '';
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return byClient;
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [local, remote, state, inode] = [f[1]!, f[2]!, f[3]!, f[9]!];
    if (state !== '01' || !local.endsWith(`:${hexPort}`)) continue; // ESTABLISHED, our listener's side
    byClient.set(parseInt(remote.slice(remote.indexOf(':') + 1), 16), inode);
  }
  return byClient;
}

/** socket inode -> pid, for the sockets the given processes hold. */
function socketOwners(pids: readonly number[]): Map<string, number> {
  const owners = new Map<string, number>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith('socket:[')) owners.set(link.slice(8, -1), pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return owners;
}

/** client local port -> pid of the gateway process that serves that connection. */
function ownersOf(gw: Gateway, clientPorts: readonly number[]): Map<number, number> {
  const pids = gw.workers > 1 ? workerPids(gw) : [gw.pid];
  const sockets = serverSockets(gw.port);
  const owners = socketOwners(pids);
  const result = new Map<number, number>();
  for (const clientPort of clientPorts) {
    const inode = sockets.get(clientPort);
    const pid = inode === undefined ? undefined : owners.get(inode);
    if (pid !== undefined) result.set(clientPort, pid);
  }
  return result;
}

// ───────────────────────────── requests ─────────────────────────────

interface Answer {
  readonly status: number;
  /** The client socket's local port (undefined if the socket never connected). */
  readonly localPort: number | undefined;
  readonly error?: string;
}

/** One GET over the agent (or a new connection when agent is false); never throws. */
function get(port: number, pathName: string, agent: http.Agent | false, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Answer> {
  return new Promise((resolve) => {
    let localPort: number | undefined;
    let settled = false;
    const done = (answer: Omit<Answer, 'localPort'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...answer, localPort });
    };
    const req = http.request({ host: '127.0.0.1', port, path: pathName, method: 'GET', agent, timeout: timeoutMs }, (res) => {
      localPort ??= res.socket.localPort;
      res.resume();
      res.on('end', () => done({ status: res.statusCode ?? 0 }));
      res.on('error', (e) => done({ status: 0, error: (e as { code?: string }).code ?? e.message }));
    });
    req.on('socket', (socket) => {
      if (socket.localPort !== undefined) localPort = socket.localPort;
      else socket.once('connect', () => (localPort = socket.localPort));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => done({ status: 0, error: (e as { code?: string }).code ?? e.message }));
    req.end();
  });
}

const ok = (a: Answer) => a.error === undefined && a.status >= 200 && a.status < 300;

// ───────────────────────────── part 1: scrape cost ─────────────────────────────

interface ScrapeRun {
  readonly workers: number;
  readonly round: number;
  readonly startMs: number;
  readonly connections: number;
  readonly connectionsPerWorker: number[];
  readonly requestsSent: number;
  readonly requestsFailed: number;
  readonly trafficMs: number;
  readonly latenciesMs: number[];
  readonly cpuPerScrapeMs: number;
  readonly bodyBytes: number;
  readonly series: number;
  readonly statusCodes: number[];
  /** Sum of waygate_requests_total in the last body. */
  readonly countedRequests: number;
  readonly groupRssMiB: number;
  readonly procs: number;
}

/** Opens keep-alive connections (one agent each) until every worker holds one and there are TRAFFIC_CONNECTIONS. */
async function pinnedConnections(gw: Gateway): Promise<{ byWorker: Map<number, http.Agent[]>; all: http.Agent[]; sent: number }> {
  const byWorker = new Map<number, http.Agent[]>();
  const all: http.Agent[] = [];
  let sent = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    const batch = Array.from({ length: TRAFFIC_CONNECTIONS }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const answers = await Promise.all(batch.map((agent) => get(gw.port, '/r0/x', agent)));
    sent += batch.length;
    const owners = ownersOf(gw, answers.map((a) => a.localPort ?? -1));
    batch.forEach((agent, i) => {
      const pid = owners.get(answers[i]!.localPort ?? -1);
      if (!ok(answers[i]!) || pid === undefined) {
        agent.destroy();
        return;
      }
      all.push(agent);
      byWorker.set(pid, [...(byWorker.get(pid) ?? []), agent]);
    });
    if (byWorker.size >= gw.workers && all.length >= TRAFFIC_CONNECTIONS) break;
  }
  if (byWorker.size < gw.workers) throw new Error(`could not reach every worker: ${byWorker.size} of ${gw.workers} hold a connection after ${sent} attempts`);
  return { byWorker, all, sent };
}

async function scrapeRun(gw: Gateway, round: number): Promise<ScrapeRun> {
  // Traffic: copy c of every route goes to worker (c mod N), on that worker's connections in turn.
  const pinned = await pinnedConnections(gw);
  const workers = [...pinned.byWorker.keys()];
  const queues = new Map<http.Agent, string[]>(pinned.all.map((agent) => [agent, []]));
  const turn = new Map<number, number>();
  for (let c = 0; c < COPIES; c++) {
    const pid = workers[c % workers.length]!;
    const agents = pinned.byWorker.get(pid)!;
    for (let i = 0; i < ROUTES; i++) {
      const k = turn.get(pid) ?? 0;
      turn.set(pid, k + 1);
      queues.get(agents[k % agents.length]!)!.push(`/r${i}/x`);
    }
  }
  const t0 = performance.now();
  let failed = 0;
  let sent = pinned.sent;
  await Promise.all([...queues].map(async ([agent, paths]) => {
    for (const p of paths) {
      const answer = await get(gw.port, p, agent);
      sent += 1;
      if (!ok(answer)) failed += 1;
    }
  }));
  const trafficMs = performance.now() - t0;
  for (const agent of pinned.all) agent.destroy();
  assertAlive(gw);

  // Scrapes: one keep-alive admin connection, as a Prometheus server would hold.
  const admin = new Pool(gw.adminUrl, { connections: 1, pipelining: 1 });
  const scrape = async () => {
    const started = performance.now();
    const res = await admin.request({ path: '/metrics', method: 'GET', headersTimeout: 30_000, bodyTimeout: 30_000 });
    const body = await res.body.text();
    return { ms: performance.now() - started, status: res.statusCode, body };
  };
  try {
    for (let i = 0; i < WARMUP_SCRAPES; i++) await scrape();
    const latenciesMs: number[] = [];
    const statusCodes: number[] = [];
    let last = '';
    const cpu0 = groupUsage(gw.pid);
    for (let i = 0; i < SCRAPES; i++) {
      const s = await scrape();
      latenciesMs.push(s.ms);
      statusCodes.push(s.status);
      last = s.body;
    }
    const cpu1 = groupUsage(gw.pid);
    let series = 0;
    let counted = 0;
    for (const line of last.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      series += 1;
      if (line.startsWith('waygate_requests_total{')) counted += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return {
      workers: gw.workers,
      round,
      startMs: gw.startMs,
      connections: pinned.all.length,
      connectionsPerWorker: workers.map((pid) => pinned.byWorker.get(pid)!.length),
      requestsSent: sent,
      requestsFailed: failed,
      trafficMs,
      latenciesMs,
      cpuPerScrapeMs: ((cpu1?.cpuMs ?? NaN) - (cpu0?.cpuMs ?? NaN)) / SCRAPES,
      bodyBytes: Buffer.byteLength(last),
      series,
      statusCodes,
      countedRequests: counted,
      groupRssMiB: (cpu1?.rssBytes ?? NaN) / 1024 / 1024,
      procs: cpu1?.pids.length ?? 0,
    };
  } finally {
    await admin.destroy();
  }
}

// ───────────────────────────── part 2: replacement ─────────────────────────────

interface Probe {
  readonly startMs: number;
  readonly endMs: number;
  readonly what: string;
}

interface KillResult {
  readonly victim: number;
  readonly replacement: number | undefined;
  /** ms after the kill; undefined = not within KILL_TIMEOUT_MS. */
  readonly diedLogged: number | undefined;
  readonly serving: number | undefined;
  readonly ready: number | undefined;
  readonly newConnectionOk: number | undefined;
  readonly servedByReplacement: number | undefined;
  /** Every new-connection probe, ms after the kill. */
  readonly probes: Probe[];
  readonly t0: number;
  readonly servingAt: number | undefined;
}

async function killOne(gw: Gateway): Promise<KillResult> {
  assertAlive(gw);
  const before = workerPids(gw);
  if (before.length < gw.workers) throw new Error(`expected ${gw.workers} workers, ps shows ${before.length}`);
  const victim = before[0]!;
  const seen = new Set(servingLines(gw).map((l) => l.pid));
  const logsFrom = gw.logs.length;
  const admin = new Pool(gw.adminUrl, { connections: 1, pipelining: 1 });
  const t0 = performance.now();
  process.kill(victim, 'SIGKILL');
  const deadline = t0 + KILL_TIMEOUT_MS;
  const since = (at: number | undefined) => (at === undefined ? undefined : at - t0);

  const waitLog = async (match: (l: LogLine) => boolean): Promise<LogLine | undefined> => {
    while (performance.now() < deadline) {
      const line = gw.logs.slice(logsFrom).find(match);
      if (line) return line;
      await sleep(2);
    }
    return undefined;
  };
  const died = waitLog((l) => l.msg === 'worker died; starting a replacement');
  const serving = waitLog((l) => l.msg === 'worker serving' && l.pid !== undefined && !seen.has(l.pid) && l.pid !== victim);
  const ready = (async () => {
    while (performance.now() < deadline) {
      try {
        const res = await admin.request({ path: '/health/ready', method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
        await res.body.dump();
        if (res.statusCode === 200) return performance.now();
      } catch {
        // retried
      }
      await sleep(PROBE_EVERY_MS);
    }
    return undefined;
  })();
  // A new connection every PROBE_EVERY_MS (none waits for the previous one) until one succeeds, but
  // for NEW_CONNECTION_PROBE_MS at least, so connections accepted around the death are all seen.
  const probes: Probe[] = [];
  const newConnection = (async () => {
    const pending: Promise<void>[] = [];
    let firstOk: number | undefined;
    while (performance.now() < deadline && (firstOk === undefined || performance.now() - t0 < NEW_CONNECTION_PROBE_MS)) {
      const start = performance.now();
      pending.push(get(gw.port, '/r1/x', false, PROBE_TIMEOUT_MS).then((answer) => {
        const end = performance.now();
        probes.push({ startMs: start - t0, endMs: end - t0, what: ok(answer) ? 'ok' : (answer.error ?? `status ${answer.status}`) });
        if (ok(answer) && (firstOk === undefined || end < firstOk)) firstOk = end;
      }));
      await sleep(PROBE_EVERY_MS);
    }
    await Promise.all(pending);
    return firstOk;
  })();
  // New connections until one lands on the replacement (round-robin: every other one once it listens).
  const byReplacement = (async () => {
    const line = await serving;
    if (!line?.pid) return undefined;
    while (performance.now() < deadline) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const answer = await get(gw.port, '/r2/x', agent);
      const owner = ok(answer) ? ownersOf(gw, [answer.localPort ?? -1]).get(answer.localPort ?? -1) : undefined;
      const at = performance.now();
      agent.destroy();
      if (owner === line.pid) return at;
      await sleep(PROBE_EVERY_MS);
    }
    return undefined;
  })();
  const [diedLine, servingLine, readyAt, newConnectionAt, replacementAt] = await Promise.all([died, serving, ready, newConnection, byReplacement]);
  await admin.destroy();
  return {
    victim,
    replacement: servingLine?.pid,
    diedLogged: since(diedLine?.at),
    serving: since(servingLine?.at),
    ready: since(readyAt),
    newConnectionOk: since(newConnectionAt),
    servedByReplacement: since(replacementAt),
    probes: probes.sort((a, b) => a.startMs - b.startMs),
    t0,
    servingAt: servingLine?.at,
  };
}

// ───────────────────────────── part 3: failures under load ─────────────────────────────

interface Done {
  readonly start: number;
  readonly ok: boolean;
  readonly localPort: number | undefined;
  readonly what: string;
}

class Load {
  readonly done: Done[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONNECTIONS });

  constructor(private readonly port: number, hardStopMs: number) {
    const deadline = performance.now() + hardStopMs;
    for (let w = 0; w < LOAD_CONNECTIONS; w++) this.loops.push(this.loop(w, deadline));
  }

  private async loop(w: number, deadline: number): Promise<void> {
    let n = w;
    while (this.running && performance.now() < deadline) {
      const start = performance.now();
      const answer = await get(this.port, `/r${(n * 37) % ROUTES}/x`, this.agent);
      n += LOAD_CONNECTIONS;
      this.done.push({ start, ok: ok(answer), localPort: answer.localPort, what: answer.error ?? `status ${answer.status}` });
      // A failed request is not retried; a short pause keeps a refused connect from spinning.
      if (!ok(answer)) await sleep(5);
    }
  }

  /** Local ports of the sockets the agent holds now (busy or idle). */
  openPorts(): number[] {
    const ports: number[] = [];
    for (const list of [...Object.values(this.agent.sockets), ...Object.values(this.agent.freeSockets)]) {
      for (const socket of list ?? []) if (socket.localPort !== undefined) ports.push(socket.localPort);
    }
    return ports;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.agent.destroy();
  }
}

interface LoadKillResult {
  readonly kill: KillResult;
  readonly heldByVictim: number;
  readonly connections: number;
  readonly requests: number;
  readonly failed: number;
  readonly failedOnVictim: number;
  readonly kinds: Record<string, number>;
}

async function killUnderLoad(gw: Gateway, load: Load): Promise<LoadKillResult> {
  await sleep(2000);
  const open = load.openPorts();
  const owners = ownersOf(gw, open);
  const victim = workerPids(gw)[0]!;
  const victimPorts = new Set(open.filter((p) => owners.get(p) === victim));
  const kill = await killOne(gw); // kills workerPids()[0], the same pid
  if (kill.victim !== victim) throw new Error('victim changed between the socket census and the kill');
  await sleep(Math.max(0, (kill.servingAt ?? kill.t0 + KILL_TIMEOUT_MS) + WINDOW_TAIL_MS - performance.now()));
  const to = (kill.servingAt ?? kill.t0 + KILL_TIMEOUT_MS) + WINDOW_TAIL_MS;
  // Requests that started before the kill and ended after it belong to the window too: start from 2 s before.
  const inWindow = load.done.filter((d) => d.start >= kill.t0 - 2000 && d.start < to);
  const failed = inWindow.filter((d) => !d.ok);
  const kinds: Record<string, number> = {};
  for (const f of failed) kinds[f.what] = (kinds[f.what] ?? 0) + 1;
  return {
    kill,
    heldByVictim: victimPorts.size,
    connections: open.length,
    requests: load.done.filter((d) => d.start >= kill.t0 && d.start < to).length,
    failed: failed.length,
    failedOnVictim: failed.filter((d) => d.localPort !== undefined && victimPorts.has(d.localPort)).length,
    kinds,
  };
}

// ───────────────────────────── main ─────────────────────────────

const hung = (p: Probe) => p.what === 'client timeout';
function failedProbes(k: KillResult): string {
  const failed = k.probes.filter((p) => p.what !== 'ok');
  return failed.map((p) => `${fmt(p.startMs, 1)} -> ${fmt(p.endMs)} ${p.what}`).join('; ') || '-';
}

async function main(): Promise<void> {
  const started = performance.now();
  const machine = machineInfo();
  out(`# waygate workers benchmark\nmachine: ${machine.cpu} x ${machine.cores} cores, node ${machine.node}, ${machine.platform}`);
  out(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const build = ensureBuilt();
  out(`build: ${build}`);
  out(`config: ${ROUTES.toLocaleString('en-US')} routes /r0 … /r${ROUTES - 1} on one static service with ${UPSTREAMS} local instances`);
  out(`part 1: workers ${SCRAPE_WORKERS.join(', ')} interleaved over ${ROUNDS} round(s); ${COPIES} x ${ROUTES} requests each (copy c on worker c mod N), then ${SCRAPES} sequential GET /metrics (+${WARMUP_SCRAPES} warm-up)`);
  out(`parts 2+3: workers: ${KILL_WORKERS}; ${KILLS} idle kills, then ${LOAD_KILLS} kills under ${LOAD_CONNECTIONS} keep-alive connections`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-workers-bench-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const launcher = snapshotWaygate(dir);
  const upstreams = await startUpstreams(UPSTREAMS);
  const runs: ScrapeRun[] = [];
  const kills: KillResult[] = [];
  const loadKills: LoadKillResult[] = [];
  let loadTotals = { requests: 0, failed: 0, outsideWindows: 0 };
  try {
    // ── part 1 ──
    for (let round = 0; round < ROUNDS; round++) {
      const order = SCRAPE_WORKERS.map((_, i) => SCRAPE_WORKERS[(i + round) % SCRAPE_WORKERS.length]!);
      for (const workers of order) {
        const gw = await startGateway(launcher, dir, workers, upstreams.urls);
        try {
          const run = await scrapeRun(gw, round + 1);
          runs.push(run);
          progress(`round ${round + 1} workers ${workers}: start ${fmt(run.startMs)} ms, traffic ${fmt(run.trafficMs)} ms (${run.requestsFailed} failed), scrape median ${fmt(median(run.latenciesMs), 1)} ms, ${int(run.bodyBytes)} B, ${int(run.series)} series, CPU ${fmt(run.cpuPerScrapeMs, 1)} ms/scrape`);
        } finally {
          await stopChild(gw.child);
        }
      }
    }

    // ── parts 2 and 3 ──
    const gw = await startGateway(launcher, dir, KILL_WORKERS, upstreams.urls);
    try {
      for (let i = 0; i < KILLS; i++) {
        await sleep(KILL_GAP_MS);
        const k = await killOne(gw);
        kills.push(k);
        progress(`kill ${i + 1}/${KILLS}: died logged ${fmt(k.diedLogged ?? NaN, 1)} ms, serving ${fmt(k.serving ?? NaN, 1)} ms, served by replacement ${fmt(k.servedByReplacement ?? NaN, 1)} ms`);
      }
      const totals = { requests: 0, failed: 0, outsideWindows: 0 };
      for (let i = 0; i < LOAD_KILLS; i++) {
        await sleep(KILL_GAP_MS);
        const load = new Load(gw.port, KILL_TIMEOUT_MS + 15_000);
        try {
          const r = await killUnderLoad(gw, load);
          loadKills.push(r);
          progress(`kill under load ${i + 1}/${LOAD_KILLS}: ${r.failed} failed of ${r.requests}, ${r.heldByVictim} of ${r.connections} connections on the killed worker, ${r.failedOnVictim} failures on them`);
          await sleep(500);
        } finally {
          await load.stop();
        }
        const { kill } = loadKills.at(-1)!;
        const [from, to] = [kill.t0 - 2000, (kill.servingAt ?? kill.t0 + KILL_TIMEOUT_MS) + WINDOW_TAIL_MS];
        totals.requests += load.done.length;
        totals.failed += load.done.filter((d) => !d.ok).length;
        totals.outsideWindows += load.done.filter((d) => !d.ok && (d.start < from || d.start >= to)).length;
      }
      loadTotals = totals;
      assertAlive(gw);
    } finally {
      await stopChild(gw.child);
    }
  } finally {
    await Promise.all(upstreams.children.map((c) => stopChild(c)));
  }

  // ── report ──
  const rows: string[][] = [];
  const lower = '— (lower is better)';
  for (const workers of SCRAPE_WORKERS) {
    const mine = runs.filter((r) => r.workers === workers);
    const config = `workers: ${workers}`;
    rows.push(['GET /metrics latency (ms), median of rounds', config, fmt(median(mine.map((r) => median(r.latenciesMs))), 1), fmt(median(mine.map((r) => percentile(r.latenciesMs, 95))), 1), lower]);
    rows.push(['gateway CPU per scrape, process group (ms)', config, fmt(median(mine.map((r) => r.cpuPerScrapeMs)), 1), fmt(max(mine.map((r) => r.cpuPerScrapeMs)), 1), lower]);
    rows.push(['/metrics body (bytes)', config, int(median(mine.map((r) => r.bodyBytes))), int(max(mine.map((r) => r.bodyBytes))), lower]);
    rows.push(['/metrics series (non-comment lines)', config, int(median(mine.map((r) => r.series))), int(max(mine.map((r) => r.series))), '—']);
  }
  const ks = (pick: (k: KillResult) => number | undefined) => kills.map((k) => pick(k) ?? KILL_TIMEOUT_MS);
  const kc = `workers: ${KILL_WORKERS}`;
  rows.push(['kill -9 -> primary logs "worker died" (ms)', kc, fmt(median(ks((k) => k.diedLogged)), 1), fmt(max(ks((k) => k.diedLogged)), 1), '—']);
  rows.push(['kill -9 -> replacement logs "worker serving" (ms)', kc, fmt(median(ks((k) => k.serving)), 1), fmt(max(ks((k) => k.serving)), 1), '< 2000']);
  rows.push(['kill -9 -> first request served by the replacement (ms)', kc, fmt(median(ks((k) => k.servedByReplacement)), 1), fmt(max(ks((k) => k.servedByReplacement)), 1), '< 2000']);
  rows.push(['kill -9 -> /health/ready 200 (ms)', kc, fmt(median(ks((k) => k.ready)), 1), fmt(max(ks((k) => k.ready)), 1), '—']);
  rows.push(['kill -9 -> a request on a new connection succeeds (ms)', kc, fmt(median(ks((k) => k.newConnectionOk)), 1), fmt(max(ks((k) => k.newConnectionOk)), 1), '—']);
  rows.push([`new connections opened around a kill that failed (of ~${NEW_CONNECTION_PROBE_MS / PROBE_EVERY_MS})`, kc, fmt(median(kills.map((k) => k.probes.filter((p) => p.what !== 'ok').length))), fmt(max(kills.map((k) => k.probes.filter((p) => p.what !== 'ok').length))), '0']);
  rows.push([`  of which hung until the client's ${PROBE_TIMEOUT_MS / 1000} s timeout`, kc, fmt(median(kills.map((k) => k.probes.filter(hung).length))), fmt(max(kills.map((k) => k.probes.filter(hung).length))), '0']);
  const lk = (pick: (r: LoadKillResult) => number) => loadKills.map(pick);
  rows.push([`failed requests per kill (${LOAD_CONNECTIONS} keep-alive conns)`, kc, fmt(median(lk((r) => r.failed))), fmt(max(lk((r) => r.failed))), '— (see below)']);
  rows.push(['failed share of requests in the kill window (%)', kc, fmt(median(lk((r) => (100 * r.failed) / Math.max(1, r.requests))), 2), fmt(max(lk((r) => (100 * r.failed) / Math.max(1, r.requests))), 2), '—']);
  rows.push(['  of which on the killed worker\'s connections', kc, fmt(median(lk((r) => r.failedOnVictim))), fmt(max(lk((r) => r.failedOnVictim))), '—']);
  rows.push(['connections held by the killed worker', kc, fmt(median(lk((r) => r.heldByVictim))), fmt(max(lk((r) => r.heldByVictim))), '—']);

  out('');
  out(formatTable([{ header: 'metric', align: 'left' }, { header: 'config', align: 'left' }, { header: 'median' }, { header: 'p95 / max' }, { header: 'target', align: 'left' }], rows));
  out('');
  out('p95 / max: the p95 column of the scrape latency is the median of the rounds\' p95s; every other row shows the max.');
  out('scrape runs (one per config and round):');
  out(formatTable(
    [{ header: 'round' }, { header: 'workers' }, { header: 'start ms' }, { header: 'conns per worker', align: 'left' }, { header: 'requests sent' }, { header: 'failed' }, { header: 'counted in /metrics' }, { header: 'median ms' }, { header: 'p95 ms' }, { header: 'max ms' }, { header: 'CPU ms/scrape' }, { header: 'bytes' }, { header: 'series' }, { header: 'non-200' }, { header: 'group RSS MiB' }, { header: 'procs' }],
    runs.map((r) => [
      String(r.round), String(r.workers), fmt(r.startMs), r.connectionsPerWorker.join(','), int(r.requestsSent), String(r.requestsFailed), int(r.countedRequests),
      fmt(median(r.latenciesMs), 1), fmt(percentile(r.latenciesMs, 95), 1), fmt(max(r.latenciesMs), 1), fmt(r.cpuPerScrapeMs, 1), int(r.bodyBytes), int(r.series),
      String(r.statusCodes.filter((s) => s !== 200).length), fmt(r.groupRssMiB), String(r.procs),
    ]),
  ));
  const miscounted = runs.filter((r) => r.countedRequests !== r.requestsSent);
  out(miscounted.length === 0
    ? 'merge check: the sum of waygate_requests_total equals the requests sent in every run (no worker dropped or counted twice)'
    : `merge check: MISMATCH in ${miscounted.length} run(s): ${miscounted.map((r) => `workers ${r.workers} round ${r.round}: counted ${r.countedRequests}, sent ${r.requestsSent}`).join('; ')}`);
  out('');
  out(`kills (idle, workers: ${KILL_WORKERS}), ms after kill -9:`);
  out(formatTable(
    [{ header: '#' }, { header: 'victim' }, { header: 'replacement' }, { header: 'died logged' }, { header: 'serving logged' }, { header: 'served by replacement' }, { header: 'ready 200' }, { header: 'new conn ok' }, { header: 'new-conn probes' }, { header: 'failed probes (ms after kill: start -> end, kind)', align: 'left' }],
    kills.map((k, i) => [String(i + 1), String(k.victim), String(k.replacement ?? '-'), fmt(k.diedLogged ?? NaN, 1), fmt(k.serving ?? NaN, 1), fmt(k.servedByReplacement ?? NaN, 1), fmt(k.ready ?? NaN, 1), fmt(k.newConnectionOk ?? NaN, 1), String(k.probes.length), failedProbes(k)]),
  ));
  out('');
  out(`kills under load (${LOAD_CONNECTIONS} keep-alive connections, window = kill -> replacement serving + ${WINDOW_TAIL_MS} ms; failures counted from 2 s before the kill):`);
  out(formatTable(
    [{ header: '#' }, { header: 'serving logged ms' }, { header: 'requests in window' }, { header: 'failed' }, { header: 'conns on killed worker' }, { header: 'failed on them' }, { header: 'failures by kind', align: 'left' }],
    loadKills.map((r, i) => [String(i + 1), fmt(r.kill.serving ?? NaN, 1), int(r.requests), String(r.failed), `${r.heldByVictim} of ${r.connections}`, String(r.failedOnVictim), Object.entries(r.kinds).map(([k, n]) => `${k} x${n}`).join(', ') || '-']),
  ));
  out(`load total: ${int(loadTotals.requests)} requests, ${loadTotals.failed} failed, ${loadTotals.outsideWindows} of them outside the kill windows`);
  out('Failed requests are the ones in flight on the killed worker\'s connections: the client does not retry a GET whose connection reset, and waygate cannot move a connection to another process.');
  out(`\nruntime: ${((performance.now() - started) / 1000).toFixed(1)} s; load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const resultsDir = path.join(ROOT, 'benchmarks/results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, 'workers-latest.json'), `${JSON.stringify({
    date: new Date().toISOString(),
    machine,
    build,
    settings: { rounds: ROUNDS, scrapes: SCRAPES, kills: KILLS, loadKills: LOAD_KILLS, routes: ROUTES, scrapeWorkers: SCRAPE_WORKERS, killWorkers: KILL_WORKERS },
    scrapeRuns: runs,
    kills,
    loadKills,
    loadTotals,
  }, null, 2)}\n`);
  out('results: benchmarks/results/workers-latest.txt, benchmarks/results/workers-latest.json');
  writeFileSync(path.join(resultsDir, 'workers-latest.txt'), report);
}

await runBenchmark(main);
