/**
 * `npm run bench`: one load generator, the same keep-alive GET load, against every peer in turn:
 *
 *   direct        the upstream itself, no proxy
 *   plain         node:http + one undici Pool (benchmarks/plain-proxy.ts): the floor for a Node proxy
 *   fastify       a bare @fastify/http-proxy, one upstream
 *   fast-gateway  fast-gateway 3.4.7, one upstream
 *   waygate       `node bin/waygate.js start` (built dist/), one route, 3 static instances round-robin
 *   waygate-log   the same with the access log on, to a file
 *   waygate-5k    the same with 5,000 more routes in front of that one (route scale; BENCH_ROUTE_SCALE=0 drops it)
 *   nginx         nginx, 1 worker, keep-alive upstream pool (skipped when not installed)
 *   haproxy       haproxy, 1 thread, keep-alive to the upstream (skipped when not installed)
 *
 * Rounds are interleaved (every peer once per round, the order rotating between rounds) and every
 * column is reported as its median over the rounds. Per peer and round: fresh start, one probe request,
 * warm-up, measured window. CPU and RSS cover the proxy's whole process group (see benchmarks/README.md).
 *
 * Env: BENCH_DURATION (s measured per peer and round, default 5), BENCH_WARMUP (s, default 2),
 *      BENCH_CONNECTIONS (default 50), BENCH_ROUNDS (default 3), BENCH_SKIP_BUILD=1 (use dist/ as is),
 *      BENCH_ROUTE_SCALE (0 = skip the 5,000-route peer), BENCH_ROUTES (routes added for it, default 5000),
 *      BENCH_GENERATOR (wrk | autocannon | autocannon-inprocess; default wrk if installed, else autocannon),
 *      BENCH_PEERS (comma-separated ids to run, default all).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {
  type Child,
  type LoadResult,
  cpuTimeMs,
  envNumber,
  freePort,
  groupUsage,
  isMain,
  machineBusyMs,
  selfCpuMs,
  loadGenerator,
  machineInfo,
  printTable,
  ROOT,
  spawnNode,
  spawnProgram,
  startUpstreams,
  stopAll,
  stopChild,
  waitUntilReady,
  which,
  ensureBuilt,
  snapshotWaygate,
} from './lib.ts';

const PEERS_SOURCE = path.join(ROOT, 'benchmarks', 'plain-proxy.ts');
const requireHere = createRequire(import.meta.url);

/** The targets of the issue, all computed from the medians of one run. */
const LIMITS = {
  cpuVsPlain: 1.25,
  rpsVsPlain: 0.8,
  rpsVsFastGateway: 1.0,
  rpsVsFastify: 1.3,
  routeScaleCpu: 1.1,
} as const;

/** Above this median share of the machine used by other processes, the run is flagged as noisy. */
const NOISY_OTHER_CPU_PCT = 10;

// ───────────────────────────── types ─────────────────────────────

interface Started {
  readonly url: string;
  /** The proxy, leading its own process group; undefined for the direct peer. */
  readonly child?: Child;
  /** Extra text to show when the peer misbehaves (e.g. nginx's error log). */
  readonly diagnostics?: () => string;
  /** A check run after the measured window (so that it cannot disturb it), before the peer stops. */
  readonly verify?: () => Promise<void>;
}

interface Peer {
  readonly id: string;
  readonly label: string;
  readonly start: () => Promise<Started>;
}

interface Sample extends LoadResult {
  readonly round: number;
  /** CPU µs per request of the proxy's process group (undefined for direct or off Linux). */
  readonly proxyCpuUsPerReq: number | undefined;
  readonly upstreamCpuUsPerReq: number | undefined;
  /** RSS of the proxy's process group at the end of the measured window, MB. */
  readonly rssMb: number | undefined;
  /** How many processes the group had (nginx: master + worker). */
  readonly processes: number | undefined;
  /** CPU µs per request of the load side: the generator child plus the bench process itself. */
  readonly loadCpuUsPerReq: number | undefined;
  /** CPU that everything else on the machine used during the window, % of all cores. */
  readonly otherCpuPct: number | undefined;
}

interface Summary {
  readonly id: string;
  readonly label: string;
  /** Each a median over the rounds, column by column. */
  readonly reqPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly proxyCpuUsPerReq: number | undefined;
  readonly upstreamCpuUsPerReq: number | undefined;
  readonly rssMb: number | undefined;
  readonly processes: number | undefined;
  readonly loadCpuUsPerReq: number | undefined;
  readonly otherCpuPct: number | undefined;
  /** Sums over the rounds: any error makes the row suspect. */
  readonly errors: number;
  readonly non2xx: number;
  readonly samples: Sample[];
}

interface TargetCheck {
  readonly name: string;
  readonly value: number | undefined;
  readonly op: '<=' | '>=';
  readonly limit: number;
  /** undefined when a peer it needs was not measured. */
  readonly met: boolean | undefined;
  /** The same ratio per round (pairs measured in the same round), to show its spread. */
  readonly perRound: number[];
}

// ───────────────────────────── helpers ─────────────────────────────

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianOf(samples: readonly Sample[], pick: (s: Sample) => number | undefined): number | undefined {
  const values = samples.map(pick).filter((v): v is number => v !== undefined && Number.isFinite(v));
  return values.length ? median(values) : undefined;
}

function summarise(peer: Peer, samples: Sample[]): Summary {
  return {
    id: peer.id,
    label: peer.label,
    reqPerSec: medianOf(samples, (s) => s.reqPerSec) ?? Number.NaN,
    p50: medianOf(samples, (s) => s.p50) ?? Number.NaN,
    p99: medianOf(samples, (s) => s.p99) ?? Number.NaN,
    proxyCpuUsPerReq: medianOf(samples, (s) => s.proxyCpuUsPerReq),
    upstreamCpuUsPerReq: medianOf(samples, (s) => s.upstreamCpuUsPerReq),
    rssMb: medianOf(samples, (s) => s.rssMb),
    processes: medianOf(samples, (s) => s.processes),
    loadCpuUsPerReq: medianOf(samples, (s) => s.loadCpuUsPerReq),
    otherCpuPct: medianOf(samples, (s) => s.otherCpuPct),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    non2xx: samples.reduce((sum, s) => sum + s.non2xx, 0),
    samples,
  };
}

const fmt = (value: number | undefined, digits = 0) =>
  value === undefined || !Number.isFinite(value) ? '-' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

const packageVersion = (name: string) => {
  try {
    return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
};

/** First line of `program -v`-style output with the version in it (nginx prints it on stderr). */
function programVersion(bin: string, args: readonly string[], pattern: RegExp): string {
  const run = spawnSync(bin, [...args], { encoding: 'utf8' });
  return pattern.exec(`${run.stdout}\n${run.stderr}`)?.[1] ?? '?';
}



/**
 * Transpiles benchmarks/plain-proxy.ts (types stripped, nothing else) so the Node peers run on bare
 * `node` like waygate's dist/ does, without tsx's loader and its esbuild helper in their process group.
 */
function buildPeerProgram(dir: string): string {
  const ts = requireHere('typescript') as typeof import('typescript');
  const { outputText } = ts.transpileModule(readFileSync(PEERS_SOURCE, 'utf8'), {
    fileName: 'plain-proxy.ts',
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const file = path.join(dir, 'plain-proxy.mjs');
  writeFileSync(file, outputText);
  return file;
}

/**
 * waygate's YAML: one service with the given instances; `extraRoutes` routes /svc-0 … /svc-N-1 in
 * front of the catch-all. Routes are tried longest prefix first, so '/' (declared last as well) is
 * the route a linear scan reaches last, and the load (GET /) is aimed at it.
 */
function waygateConfig(port: number, adminPort: number, instances: readonly string[], extraRoutes = 0, workers = 1): string {
  const lines = [
    `server: { host: 127.0.0.1, port: ${port}, workers: ${workers} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'registry:',
    '  static:',
    '    services:',
    '      bench:',
    `        instances: [${instances.map((url) => JSON.stringify(url)).join(', ')}]`,
    'routes:',
  ];
  for (let i = 0; i < extraRoutes; i++) lines.push(`  - { name: svc-${i}, match: { pathPrefix: /svc-${i} }, service: bench }`);
  lines.push('  - { name: bench, match: { pathPrefix: / }, service: bench }');
  return `${lines.join('\n')}\n`;
}

function nginxConfig(dir: string, port: number, upstreamPort: number): string {
  return `# written by benchmarks/proxy.ts; lives only for one measurement
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # nginx closes a keep-alive connection after 1,000 requests by default, on both sides; not here.
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream bench {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

function haproxyConfig(dir: string, port: number, upstreamPort: number): string {
  // No `log` line: no access log. Start-up alerts go to stderr, which the bench keeps.
  return `# written by benchmarks/proxy.ts; lives only for one measurement
global
  nbthread 1
  maxconn 4000
  pidfile ${dir}/haproxy.pid
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream
backend upstream
  http-reuse always
  server u1 127.0.0.1:${upstreamPort}
`;
}

/**
 * Makes sure the route-scale gateway really holds every route, with '/' ordered last (the one the
 * load hits). Only warns if /admin/routes does not look as expected: the admin API may change.
 */
async function checkRouteTable(url: string, expected: number): Promise<void> {
  try {
    const body = (await (await fetch(url)).json()) as { routes?: { match?: { pathPrefix?: string } }[] };
    const routes = body.routes ?? [];
    const last = routes.at(-1)?.match?.pathPrefix;
    if (routes.length !== expected || last !== '/') process.stdout.write(`\nWARNING: /admin/routes lists ${routes.length} routes (expected ${expected}), last prefix ${last ?? '?'} (expected /)\n`);
  } catch (error) {
    process.stdout.write(`\nWARNING: could not read ${url}: ${(error as Error).message}\n`);
  }
}

function checkTarget(
  name: string,
  summaries: ReadonlyMap<string, Summary>,
  numerator: [string, 'reqPerSec' | 'proxyCpuUsPerReq'],
  denominator: [string, 'reqPerSec' | 'proxyCpuUsPerReq'],
  op: '<=' | '>=',
  limit: number,
): TargetCheck {
  const [top, bottom] = [summaries.get(numerator[0]), summaries.get(denominator[0])];
  const a = top?.[numerator[1]];
  const b = bottom?.[denominator[1]];
  const value = a === undefined || b === undefined || !b ? undefined : a / b;
  const perRound: number[] = [];
  for (const sample of top?.samples ?? []) {
    const other = bottom?.samples.find((s) => s.round === sample.round);
    const [x, y] = [sample[numerator[1]], other?.[denominator[1]]];
    if (x !== undefined && y !== undefined && y) perRound.push(x / y);
  }
  const met = value === undefined || !Number.isFinite(value) ? undefined : op === '<=' ? value <= limit : value >= limit;
  return { name, value, op, limit, met, perRound };
}

function printChecks(checks: readonly TargetCheck[]): void {
  for (const check of checks) {
    const verdict = check.met === undefined ? 'n/a (peer not measured)' : check.met ? 'met' : 'MISSED';
    const rounds = check.perRound.length > 1 ? `  [per round: ${check.perRound.map((r) => r.toFixed(2)).join(', ')}]` : '';
    process.stdout.write(`  ${check.name} ${check.op} ${check.limit.toFixed(2)}: ${check.value === undefined ? '-' : check.value.toFixed(3)} -> ${verdict}${rounds}\n`);
  }
}

// ───────────────────────────── bench ─────────────────────────────

async function bench(): Promise<void> {
  const startedAt = Date.now();
  const durationS = envNumber('BENCH_DURATION', 5);
  const connections = Math.round(envNumber('BENCH_CONNECTIONS', 50));
  const warmupS = envNumber('BENCH_WARMUP', 2);
  const rounds = Math.round(envNumber('BENCH_ROUNDS', 3));
  const routeScale = process.env['BENCH_ROUTE_SCALE'] !== '0';
  const extraRoutes = Math.round(envNumber('BENCH_ROUTES', 5000));
  const only = new Set((process.env['BENCH_PEERS'] ?? '').split(',').map((id) => id.trim()).filter(Boolean));
  const generator = loadGenerator();
  const machine = machineInfo();
  const loadBefore = os.loadavg()[0] ?? 0;
  const nginxBin = which('nginx');
  const haproxyBin = which('haproxy');
  const versions = {
    fastify: packageVersion('fastify'),
    fastifyHttpProxy: packageVersion('@fastify/http-proxy'),
    fastGateway: packageVersion('fast-gateway'),
    undici: packageVersion('undici'),
    nginx: nginxBin ? programVersion(nginxBin, ['-v'], /nginx\/(\S+)/) : undefined,
    haproxy: haproxyBin ? programVersion(haproxyBin, ['-v'], /version (\S+)/) : undefined,
  };

  process.stdout.write(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}\n`);
  process.stdout.write(`generator: ${generator.description}; ${connections} connections, keep-alive, GET /, no pipelining\n`);
  process.stdout.write(`per peer and round: fresh start, ${warmupS} s warm-up, ${durationS} s measured; ${rounds} interleaved round(s), medians reported\n`);
  // Other work on the box skews every number; the 1-min load average makes that visible.
  process.stdout.write(`1-min load average before: ${loadBefore.toFixed(2)}\n\n`);

  ensureBuilt();

  // One upstream process hosting 3 listeners: the single-upstream peers use the first, waygate all three.
  const upstreams = await startUpstreams(3);
  const [single] = upstreams.urls;
  const [singlePort] = upstreams.ports;
  if (!single || singlePort === undefined) throw new Error('no upstream started');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'waygate-bench-'));
  // 'exit' also runs when a signal handler ends the process early, unlike a finally block.
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
  const peerProgram = buildPeerProgram(tmp);
  const waygateBin = snapshotWaygate(tmp);
  let runs = 0;

  const startNodePeer = async (role: 'plain' | 'fastify' | 'fast-gateway'): Promise<Started> => {
    const port = await freePort();
    const child = spawnNode(role, [peerProgram, role, String(port), single, ROOT], { ipc: true, group: true });
    const url = `http://127.0.0.1:${port}/`;
    await waitUntilReady(url, { child });
    return { url, child };
  };

  const startWaygate = async (routes: number, accessLog = false, workers = 1): Promise<Started> => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = path.join(tmp, `waygate-${routes}${accessLog ? '-log' : ''}-w${workers}.yaml`);
    const logLine = accessLog ? `accessLog: { enabled: true, path: "${path.join(tmp, `access-${++runs}.log`)}" }\n` : '';
    writeFileSync(file, logLine + waygateConfig(port, adminPort, upstreams.urls, routes, workers));
    const child = spawnNode('waygate', [waygateBin, 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' }, group: true });
    await waitUntilReady(`http://127.0.0.1:${adminPort}/health/ready`, { child, timeoutMs: 60_000 });
    const verify = routes > 0 ? () => checkRouteTable(`http://127.0.0.1:${adminPort}/admin/routes`, routes + 1) : undefined;
    return { url: `http://127.0.0.1:${port}/`, child, verify };
  };

  const startNative = async (name: 'nginx' | 'haproxy', bin: string): Promise<Started> => {
    const dir = path.join(tmp, `${name}-${++runs}`);
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const conf = path.join(dir, `${name}.conf`);
    writeFileSync(conf, name === 'nginx' ? nginxConfig(dir, port, singlePort) : haproxyConfig(dir, port, singlePort));
    const args = name === 'nginx' ? ['-p', `${dir}/`, '-c', conf, '-e', path.join(dir, 'error.log')] : ['-db', '-f', conf];
    const child = spawnProgram(name, bin, args, { cwd: dir, group: true });
    const diagnostics = () => (existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '');
    const url = `http://127.0.0.1:${port}/`;
    try {
      await waitUntilReady(url, { child });
    } catch (error) {
      await stopChild(child);
      throw new Error(`${(error as Error).message}\n${diagnostics()}`);
    }
    return { url, child, diagnostics };
  };

  const skipped: { id: string; reason: string }[] = [];
  const all: (Peer | { id: string; skip: string })[] = [
    { id: 'direct', label: 'upstream direct (no proxy)', start: async () => ({ url: `${single}/` }) },
    { id: 'plain', label: `plain node:http + undici ${versions.undici} Pool`, start: () => startNodePeer('plain') },
    { id: 'fastify', label: `@fastify/http-proxy ${versions.fastifyHttpProxy}`, start: () => startNodePeer('fastify') },
    { id: 'fast-gateway', label: `fast-gateway ${versions.fastGateway}`, start: () => startNodePeer('fast-gateway') },
    { id: 'waygate', label: 'waygate, 1 route, 3 instances RR', start: () => startWaygate(0) },
    { id: 'waygate-log', label: 'waygate, same, access log to a file', start: () => startWaygate(0, true) },
    { id: 'waygate-w2', label: 'waygate, same, server.workers: 2', start: () => startWaygate(0, false, 2) },
    routeScale
      ? { id: 'waygate-5k', label: `waygate, ${fmt(extraRoutes + 1)} routes, last hit`, start: () => startWaygate(extraRoutes) }
      : { id: 'waygate-5k', skip: 'BENCH_ROUTE_SCALE=0' },
    nginxBin
      ? { id: 'nginx', label: `nginx ${versions.nginx}, 1 worker`, start: () => startNative('nginx', nginxBin) }
      : { id: 'nginx', skip: 'nginx not installed (apt-get install nginx-light)' },
    haproxyBin
      ? { id: 'haproxy', label: `haproxy ${versions.haproxy}, 1 thread`, start: () => startNative('haproxy', haproxyBin) }
      : { id: 'haproxy', skip: 'haproxy not installed (apt-get install haproxy)' },
  ];
  const peers: Peer[] = [];
  for (const entry of all) {
    if (only.size && !only.has(entry.id)) continue;
    if ('skip' in entry) skipped.push({ id: entry.id, reason: entry.skip });
    else peers.push(entry);
  }
  for (const id of only) if (!all.some((entry) => entry.id === id)) throw new Error(`BENCH_PEERS: unknown peer "${id}" (known: ${all.map((e) => e.id).join(', ')})`);
  for (const { id, reason } of skipped) process.stdout.write(`skipping ${id}: ${reason}\n`);

  const upstreamPid = upstreams.children[0]?.proc.pid;
  const perRequestUs = (before: number | undefined, after: number | undefined, requests: number) =>
    before === undefined || after === undefined || requests === 0 ? undefined : ((after - before) * 1000) / requests;

  const measure = async (peer: Peer, round: number): Promise<Sample> => {
    process.stdout.write(`[round ${round}/${rounds}] ${peer.id}: starting ... `);
    const { url, child, diagnostics, verify } = await peer.start();
    try {
      // Sanity: the peer must answer 200 with the upstream's body before we load it.
      const probe = await fetch(url);
      const text = await probe.text();
      if (probe.status !== 200 || !text.includes('"service":"bench"')) throw new Error(`${peer.label} answered ${probe.status}: ${text.slice(0, 200)}`);
      process.stdout.write('warm-up ... ');
      await generator.run({ url, connections, durationS: warmupS });
      process.stdout.write('measuring ... ');
      const pgid = child?.proc.pid;
      const [busyBefore, selfBefore, groupBefore, upstreamBefore] = [machineBusyMs(), selfCpuMs(), groupUsage(pgid), cpuTimeMs(upstreamPid)];
      const wallBefore = performance.now();
      const result = await generator.run({ url, connections, durationS });
      // The generator child has exited and been reaped here, so its CPU is in our cutime+cstime.
      const [groupAfter, upstreamAfter, selfAfter, busyAfter] = [groupUsage(pgid), cpuTimeMs(upstreamPid), selfCpuMs(), machineBusyMs()];
      const wallMs = performance.now() - wallBefore;
      const loadMs = selfBefore && selfAfter ? selfAfter.own + selfAfter.reapedChildren - selfBefore.own - selfBefore.reapedChildren : undefined;
      const proxyMs = groupBefore && groupAfter ? groupAfter.cpuMs - groupBefore.cpuMs : child ? undefined : 0;
      const upstreamMs = upstreamBefore !== undefined && upstreamAfter !== undefined ? upstreamAfter - upstreamBefore : undefined;
      const otherMs = busyBefore === undefined || busyAfter === undefined || loadMs === undefined || proxyMs === undefined || upstreamMs === undefined
        ? undefined
        : busyAfter - busyBefore - loadMs - proxyMs - upstreamMs;
      if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null)) throw new Error(`${peer.label} exited during the run\n${child.tail.join('\n')}`);
      const sample: Sample = {
        ...result,
        round,
        proxyCpuUsPerReq: perRequestUs(groupBefore?.cpuMs, groupAfter?.cpuMs, result.totalRequests),
        upstreamCpuUsPerReq: perRequestUs(upstreamBefore, upstreamAfter, result.totalRequests),
        rssMb: groupAfter ? groupAfter.rssBytes / 1024 / 1024 : undefined,
        processes: groupAfter?.pids.length,
        loadCpuUsPerReq: loadMs === undefined || result.totalRequests === 0 ? undefined : (loadMs * 1000) / result.totalRequests,
        otherCpuPct: otherMs === undefined ? undefined : Math.max(0, (otherMs / (wallMs * machine.cores)) * 100),
      };
      const cpu = sample.proxyCpuUsPerReq === undefined ? '' : `, ${fmt(sample.proxyCpuUsPerReq)} µs CPU/req`;
      const other = sample.otherCpuPct === undefined ? '' : `, other load ${fmt(sample.otherCpuPct)} %`;
      process.stdout.write(`${fmt(result.reqPerSec)} req/s${cpu}${other}${result.errors || result.non2xx ? `, ${result.errors} errors, ${result.non2xx} non-2xx` : ''}\n`);
      if ((result.errors || result.non2xx) && diagnostics) process.stdout.write(diagnostics());
      await verify?.();
      return sample;
    } finally {
      if (child) {
        await stopChild(child);
        // Shown after the fact so it does not break the progress line; duplicates collapsed.
        const said = [...new Set(child.tail)];
        if (said.length) process.stdout.write(`  ${child.name} output:\n${said.map((line) => `    ${line}`).join('\n')}\n`);
      }
    }
  };

  const samples = new Map<string, Sample[]>(peers.map((peer) => [peer.id, []]));
  try {
    for (let round = 1; round <= rounds; round++) {
      // Rotate the order so that no peer always runs first (fresh box) or last.
      const shift = (round - 1) % peers.length;
      for (const peer of [...peers.slice(shift), ...peers.slice(0, shift)]) samples.get(peer.id)?.push(await measure(peer, round));
    }
  } finally {
    await stopAll();
  }

  const summaries = new Map(peers.map((peer) => [peer.id, summarise(peer, samples.get(peer.id) ?? [])]));
  const loadAfter = os.loadavg()[0] ?? 0;
  const elapsedS = (Date.now() - startedAt) / 1000;

  process.stdout.write(`\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; generator: ${generator.description}, ${connections} connections\n`);
  process.stdout.write(`medians of ${rounds} interleaved round(s) x ${durationS} s; 1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after\n`);
  process.stdout.write('CPU = user+system of the proxy\'s whole process group / requests completed; RSS = sum over that group at the end of the window\n');
  process.stdout.write('load-gen = generator child + bench process, per request; other CPU = what the rest of the machine used meanwhile, % of all cores (noise)\n');
  const rows = [...summaries.values()];
  printTable(
    [
      { header: 'peer', align: 'left' },
      { header: 'req/s' },
      { header: 'p50 ms' },
      { header: 'p99 ms' },
      { header: 'CPU µs/req' },
      { header: 'RSS MB' },
      { header: 'procs' },
      { header: 'upstream µs/req' },
      { header: 'load-gen µs/req' },
      { header: 'other CPU %' },
      { header: 'errors' },
    ],
    rows.map((r) => [
      r.label,
      fmt(r.reqPerSec),
      fmt(r.p50, 2),
      fmt(r.p99, 2),
      fmt(r.proxyCpuUsPerReq, 1),
      fmt(r.rssMb, 1),
      fmt(r.processes),
      fmt(r.upstreamCpuUsPerReq, 1),
      fmt(r.loadCpuUsPerReq, 1),
      fmt(r.otherCpuPct),
      r.errors || r.non2xx ? `${r.errors}+${r.non2xx} non-2xx` : '0',
    ]),
  );
  process.stdout.write(`req/s per round: ${rows.map((r) => `${r.id} ${r.samples.map((s) => fmt(s.reqPerSec)).join('/')}`).join('; ')}\n`);

  process.stdout.write('\ntargets (ratios of the medians above):\n');
  const checks = [
    checkTarget('waygate CPU/req / plain CPU/req', summaries, ['waygate', 'proxyCpuUsPerReq'], ['plain', 'proxyCpuUsPerReq'], '<=', LIMITS.cpuVsPlain),
    checkTarget('waygate req/s / plain req/s', summaries, ['waygate', 'reqPerSec'], ['plain', 'reqPerSec'], '>=', LIMITS.rpsVsPlain),
    checkTarget('waygate req/s / fast-gateway req/s', summaries, ['waygate', 'reqPerSec'], ['fast-gateway', 'reqPerSec'], '>=', LIMITS.rpsVsFastGateway),
    checkTarget('waygate req/s / @fastify/http-proxy req/s', summaries, ['waygate', 'reqPerSec'], ['fastify', 'reqPerSec'], '>=', LIMITS.rpsVsFastify),
  ];
  printChecks(checks);

  const scaleChecks: TargetCheck[] = [];
  if (summaries.has('waygate-5k')) {
    process.stdout.write(`\nroute scale (waygate with ${fmt(extraRoutes + 1)} routes vs 1, load on the route a linear scan reaches last):\n`);
    scaleChecks.push(checkTarget(`CPU/req ${fmt(extraRoutes + 1)} routes / 1 route`, summaries, ['waygate-5k', 'proxyCpuUsPerReq'], ['waygate', 'proxyCpuUsPerReq'], '<=', LIMITS.routeScaleCpu));
    printChecks(scaleChecks);
    const rps = checkTarget('', summaries, ['waygate-5k', 'reqPerSec'], ['waygate', 'reqPerSec'], '>=', 0);
    process.stdout.write(`  req/s ${fmt(extraRoutes + 1)} routes / 1 route: ${rps.value === undefined ? '-' : rps.value.toFixed(2)} (no target)${rps.perRound.length > 1 ? `  [per round: ${rps.perRound.map((r) => r.toFixed(2)).join(', ')}]` : ''}\n`);
  }

  if (summaries.has('waygate-log')) {
    const cost = checkTarget('', summaries, ['waygate-log', 'proxyCpuUsPerReq'], ['waygate', 'proxyCpuUsPerReq'], '>=', 0);
    process.stdout.write(`\naccess log on / off, CPU/req: ${cost.value === undefined ? '-' : cost.value.toFixed(3)} (no target)${cost.perRound.length > 1 ? `  [per round: ${cost.perRound.map((r) => r.toFixed(2)).join(', ')}]` : ''}\n`);
  }

  if (summaries.has('waygate-w2')) {
    // On 2 cores shared with wrk and the upstream, extra workers mostly compete for the same CPU; CPU per request does not depend on that.
    const rps = checkTarget('', summaries, ['waygate-w2', 'reqPerSec'], ['waygate', 'reqPerSec'], '>=', 0);
    const cpu = checkTarget('', summaries, ['waygate-w2', 'proxyCpuUsPerReq'], ['waygate', 'proxyCpuUsPerReq'], '>=', 0);
    const perRound = (check: TargetCheck) => (check.perRound.length > 1 ? `  [per round: ${check.perRound.map((r) => r.toFixed(2)).join(', ')}]` : '');
    process.stdout.write(`
workers: 2 vs workers: 1 (no target; ${machine.cores} cores shared with the load generator and upstream):
`);
    process.stdout.write(`  req/s: ${rps.value === undefined ? '-' : rps.value.toFixed(2)}${perRound(rps)}
`);
    process.stdout.write(`  CPU µs/req: ${cpu.value === undefined ? '-' : cpu.value.toFixed(2)}${perRound(cpu)}
`);
  }

  const noisy = rows.filter((r) => (r.otherCpuPct ?? 0) > NOISY_OTHER_CPU_PCT);
  if (noisy.length) {
    const worst = Math.max(...noisy.map((r) => r.otherCpuPct ?? 0));
    process.stdout.write(`\nWARNING: other processes used more than ${NOISY_OTHER_CPU_PCT} % of the machine while ${noisy.length === rows.length ? 'every peer was' : `${noisy.map((r) => r.id).join(', ')} were`} measured (up to ${fmt(worst)} %); ` +
      'req/s is unreliable and CPU/req inflated; rerun on a quiet machine\n');
  }
  const failed = rows.filter((r) => r.errors > 0 || r.non2xx > 0);
  if (failed.length) process.stdout.write(`note: errors or non-2xx answers in ${failed.map((r) => r.id).join(', ')}; their numbers are not comparable\n`);
  process.stdout.write(`\ntook ${elapsedS.toFixed(0)} s\n`);

  const outDir = path.join(ROOT, 'benchmarks', 'results');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'proxy-latest.json');
  const report = {
    benchmark: 'proxy',
    date: new Date().toISOString(),
    elapsedS: Math.round(elapsedS),
    machine,
    versions,
    load: { generator: generator.id, description: generator.description, connections, warmupS, durationS, pipelining: 1, rounds, path: '/' },
    loadAverage1m: { before: loadBefore, after: loadAfter },
    skipped,
    results: rows,
    targets: checks,
    routeScale: summaries.has('waygate-5k') ? { routes: extraRoutes + 1, targets: scaleChecks } : undefined,
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(ROOT, out)}\n`);
}

if (isMain(import.meta.url)) {
  try {
    await bench();
  } catch (error) {
    process.stderr.write(`\nbench failed: ${(error as Error).stack ?? String(error)}\n`);
    await stopAll();
    process.exitCode = 1;
  }
}
