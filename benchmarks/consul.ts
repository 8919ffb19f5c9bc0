/**
 * `npm run bench:consul`: how fast and how cheaply waygate follows a Consul catalog.
 *
 *   Part 1, convergence: 10 routed services x 3 instances (real node:http servers answering their own
 *   label). 100 registry changes of three kinds (critical / deregistered / new instance); for each we
 *   time, from the moment the Consul double applied the write, when /admin/routes reflects it and when
 *   proxied requests reflect it.
 *   Part 2, scale: 10 … 5,000 routed services (1 instance each, one shared upstream). Time to ready,
 *   connections held to Consul, gateway memory, and convergence of ~30 critical/recover changes.
 *   Part 3, failover: doubles for dc1 and dc2 (linked), `web` with one instance in each, a route with
 *   `datacenters: [dc1, dc2]`, a steady request loop; 20 x (dc1 critical -> first answer from dc2, dc1
 *   passing -> first answer from dc1), with every failed request counted.
 *   Part 4, cold start at 1,000 services: spawn -> /health/ready 200 and -> first 200 through a route,
 *   from the snapshot file with Consul refusing connections, next to a Consul-up start without the file
 *   (and one with both), interleaved rounds.
 *   Part 5, split accuracy: static registry, `split` 90/10, 50/50 and 99/1, 10,000 requests each;
 *   observed shares against the weights in binomial standard deviations.
 *
 * Topology: the bench process hosts the Consul double (test/support/consul-double.ts), the upstream
 * servers and the (sequential) client; waygate runs as its own child process (bin/waygate.js on dist/).
 *
 * Env: BENCH_SCALES (default 10,100,1000,5000), BENCH_CHANGES (part 1, default 100),
 *      BENCH_SCALE_CHANGES (part 2, default 30), BENCH_GAP_MS (pause between changes, default 250),
 *      BENCH_TIMEOUT_MS (per change, default 10000),
 *      BENCH_PARTS (default "convergence,scale,failover,snapshot,split"),
 *      BENCH_FAILOVER_SWITCHES (default 20), BENCH_FAILOVER_INTERVAL_MS (request loop period, default 2),
 *      BENCH_SNAPSHOT_SERVICES (default 1000), BENCH_SNAPSHOT_ROUNDS (default 3),
 *      BENCH_SPLIT_REQUESTS (per case, default 10000), BENCH_SPLIT_CONCURRENCY (default 16),
 *      BENCH_SPLIT_CASES (default "90:10,50:50,99:1"),
 *      BENCH_SEED (default 1), BENCH_SKIP_BUILD=1 to reuse dist/.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { ConsulDouble } from '../test/support/consul-double.ts';
import { type Child, ROOT, envNumber, freePort, machineInfo, percentile, printTable, sleep, spawnNode, stopChild, vmRssBytes, runBenchmark
} from './lib.ts';

const NODE = 'bench-node';
const CONVERGENCE_TARGET_MS = 50;
const SCALE_CONN_TARGET = 32;
const SCALE_P99_TARGET_MS = 1000;

const CHANGES = Math.round(envNumber('BENCH_CHANGES', 100));
const SCALE_CHANGES = Math.round(envNumber('BENCH_SCALE_CHANGES', 30));
const GAP_MS = process.env['BENCH_GAP_MS'] === '0' ? 0 : envNumber('BENCH_GAP_MS', 250);
const TIMEOUT_MS = envNumber('BENCH_TIMEOUT_MS', 10_000);
const SCALES = (process.env['BENCH_SCALES'] ?? '10,100,1000,5000').split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'convergence,scale,failover,snapshot,split').split(',').map((s) => s.trim()));
const FAILOVER_SWITCHES = Math.round(envNumber('BENCH_FAILOVER_SWITCHES', 20));
const FAILOVER_INTERVAL_MS = envNumber('BENCH_FAILOVER_INTERVAL_MS', 2);
const SNAPSHOT_SERVICES = Math.round(envNumber('BENCH_SNAPSHOT_SERVICES', 1000));
const SNAPSHOT_ROUNDS = Math.round(envNumber('BENCH_SNAPSHOT_ROUNDS', 3));
/** Per cold start: spawn to ready and to the first 200. */
const SNAPSHOT_TIMEOUT_MS = 60_000;
const SPLIT_REQUESTS = Math.round(envNumber('BENCH_SPLIT_REQUESTS', 10_000));
const SPLIT_CONCURRENCY = Math.round(envNumber('BENCH_SPLIT_CONCURRENCY', 16));
const SPLIT_Z_LIMIT = 3;
const SPLIT_CASES = parseSplitCases(process.env['BENCH_SPLIT_CASES'] ?? '90:10,50:50,99:1');

// ───────────────────────────── small helpers ─────────────────────────────

/** Deterministic PRNG (mulberry32) so runs pick the same services. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(envNumber('BENCH_SEED', 1));

interface Stats {
  readonly n: number;
  readonly misses: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}
function stats(values: readonly (number | undefined)[]): Stats {
  const misses = values.filter((v) => v === undefined).length;
  const sorted = values.map((v) => v ?? TIMEOUT_MS).sort((a, b) => a - b);
  return { n: values.length, misses, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN };
}
const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : (bytes / 1024 / 1024).toFixed(1));

/** Upstream instance: a node:http server that answers its label, so a response tells who served it. */
const servers = new Set<Server>();
async function labelServer(label: string): Promise<{ server: Server; port: number }> {
  const body = Buffer.from(label);
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  // Longer than the gateway's pool idle timeout, so we never close a pooled socket mid-run.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  servers.add(server);
  return { server, port: (server.address() as AddressInfo).port };
}
async function closeServer(server: Server): Promise<void> {
  servers.delete(server);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

// ───────────────────────────── gateway child ─────────────────────────────

interface Gateway {
  readonly child: Child;
  readonly publicPool: Pool;
  readonly adminPool: Pool;
  readonly adminUrl: string;
  readonly dir: string;
}

// Config dirs of live gateways; removed on any exit, including lib's SIGINT path (it calls process.exit).
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** The YAML every bench gateway starts with: both listeners on 127.0.0.1, no drain delay. */
function configHead(port: number, adminPort: number): string[] {
  return [
    `server: { host: 127.0.0.1, port: ${port} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 5s }',
  ];
}

/** `registry.consul` plus one route `/<name>` per service. */
function consulRoutesYaml(services: readonly string[], consulAddress: string, snapshotFile?: string): string {
  const lines = [
    'registry:',
    `  consul: { address: "${consulAddress}", wait: 30s${snapshotFile ? `, snapshotFile: "${snapshotFile}"` : ''} }`,
    'routes:',
  ];
  for (const name of services) {
    lines.push(`  - name: ${name}`, `    match: { pathPrefix: /${name} }`, `    service: ${name}`, '    stripPrefix: true');
  }
  return lines.join('\n');
}

interface LaunchedGateway extends Gateway {
  readonly publicUrl: string;
  /** performance.now() just before the child was spawned (config already written, ports chosen). */
  readonly spawnedAt: number;
}

/** Writes `head + body` as the config and spawns `node bin/waygate.js start` on it. */
async function launchGateway(body: string): Promise<LaunchedGateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-consul-bench-'));
  tempDirs.add(dir);
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, `${[...configHead(port, adminPort), body].join('\n')}\n`);
  const spawnedAt = performance.now();
  const child = spawnNode('waygate', [path.join(ROOT, 'bin/waygate.js'), 'start', '--config', file], {
    env: { WAYGATE_LOG_LEVEL: 'warn' },
    echoStderr: true,
  });
  // One connection each: requests are strictly sequential, as a single client would send them.
  const publicPool = new Pool(`http://127.0.0.1:${port}`, { connections: 1, pipelining: 1 });
  const adminPool = new Pool(`http://127.0.0.1:${adminPort}`, { connections: 1, pipelining: 1 });
  return { child, publicPool, adminPool, adminUrl: `http://127.0.0.1:${adminPort}`, publicUrl: `http://127.0.0.1:${port}`, dir, spawnedAt };
}

async function startGateway(services: readonly string[], double: ConsulDouble): Promise<Gateway> {
  return launchGateway(consulRoutesYaml(services, double.address));
}

async function stopGateway(gw: Gateway): Promise<void> {
  await stopChild(gw.child);
  await Promise.allSettled([gw.publicPool.destroy(), gw.adminPool.destroy()]);
  rmSync(gw.dir, { recursive: true, force: true });
  tempDirs.delete(gw.dir);
}

function assertAlive(child: Child): void {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
    throw new Error(`waygate exited (${child.proc.exitCode ?? child.proc.signalCode})\n${child.tail.join('\n')}`);
  }
}

/** Polls /health/ready every 20 ms; returns ms until 200. */
async function waitReady(gw: Gateway, timeoutMs: number, onTick?: () => void): Promise<number> {
  const start = performance.now();
  let last = 'no answer';
  while (performance.now() - start < timeoutMs) {
    assertAlive(gw.child);
    onTick?.();
    try {
      const res = await gw.adminPool.request({ path: '/health/ready', method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
      const text = await res.body.text();
      if (res.statusCode === 200) return performance.now() - start;
      last = `${res.statusCode} ${text.slice(0, 120)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(20);
  }
  throw new Error(`waygate not ready after ${timeoutMs} ms (${last})\n${gw.child.tail.join('\n')}`);
}

interface Answer {
  readonly status: number;
  readonly body: string;
  /** performance.now() when the answer was fully read. */
  readonly at: number;
}
async function get(pool: Pool, pathName: string): Promise<Answer> {
  const res = await pool.request({ path: pathName, method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
  const body = await res.body.text();
  return { status: res.statusCode, body, at: performance.now() };
}

interface AdminInstance {
  id: string;
  url: string;
  healthy?: boolean;
}
/** Passing instance ids of one service according to /admin/routes. */
async function adminInstances(gw: Gateway, service: string): Promise<{ ids: Set<string>; at: number }> {
  const answer = await get(gw.adminPool, '/admin/routes');
  const doc = JSON.parse(answer.body) as { services?: Record<string, { instances?: AdminInstance[] }> };
  const list = doc.services?.[service]?.instances ?? [];
  return { ids: new Set(list.filter((i) => i.healthy !== false).map((i) => i.id)), at: answer.at };
}

/** First of `names` present in the admin /metrics text, with its value. */
async function adminMetric(gw: Gateway, names: readonly string[]): Promise<{ name: string; value: number } | undefined> {
  try {
    const answer = await get(gw.adminPool, '/metrics');
    for (const name of names) {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(answer.body);
      if (m) return { name, value: Number(m[1]) };
    }
    return undefined;
  } catch {
    return undefined;
  }
}
// The name the brief documents, then the one prom-client's prefix actually produces ("process_" twice).
const RSS_METRICS = ['waygate_process_resident_memory_bytes', 'waygate_process_process_resident_memory_bytes'];

// ───────────────────────────── part 1: convergence ─────────────────────────────

type Kind = 'critical' | 'deregister' | 'register';
const KINDS: readonly Kind[] = ['critical', 'deregister', 'register'];

interface ChangeResult {
  readonly kind: Kind;
  readonly service: string;
  readonly instance: string;
  /** ms from the write to the /admin/routes answer that first showed it; undefined = miss. */
  readonly adminMs: number | undefined;
  /** ms from the write to the first proxied answer that reflects it; undefined = miss. */
  readonly requestMs: number | undefined;
  readonly requests: number;
  readonly non200: number;
}

const adminId = (serviceId: string): string => `${NODE}/${serviceId}`;

/**
 * Alternates /admin/routes polls and proxied requests until both reflect the change.
 * Gone (critical/deregistered): the instance is absent from the admin table, and `runLength`
 * consecutive 200 answers came from other instances (time = the first of those answers).
 * Added: the admin table lists it, and an answer came from it.
 */
async function observe(gw: Gateway, service: string, kind: Kind, id: string, label: string, runLength: number, t0: number): Promise<Omit<ChangeResult, 'kind' | 'service' | 'instance'>> {
  const deadline = t0 + TIMEOUT_MS;
  const gone = kind !== 'register';
  let adminMs: number | undefined;
  let requestMs: number | undefined;
  let run = 0;
  let runStart = 0;
  let requests = 0;
  let non200 = 0;
  while ((adminMs === undefined || requestMs === undefined) && performance.now() < deadline) {
    if (adminMs === undefined) {
      const { ids, at } = await adminInstances(gw, service);
      if (ids.has(adminId(id)) !== gone) adminMs = at - t0;
    }
    if (requestMs === undefined) {
      const answer = await get(gw.publicPool, `/${service}/`);
      requests += 1;
      if (answer.status !== 200) {
        non200 += 1; // not evidence either way
      } else if (gone) {
        if (answer.body === label) {
          run = 0;
        } else {
          if (run === 0) runStart = answer.at;
          run += 1;
          if (run >= runLength) requestMs = runStart - t0;
        }
      } else if (answer.body === label) {
        requestMs = answer.at - t0;
      }
    }
  }
  return { adminMs, requestMs, requests, non200 };
}

async function waitAdminIds(gw: Gateway, service: string, want: ReadonlySet<string>): Promise<boolean> {
  const deadline = performance.now() + TIMEOUT_MS;
  while (performance.now() < deadline) {
    const { ids } = await adminInstances(gw, service);
    if (ids.size === want.size && [...want].every((id) => ids.has(id))) return true;
    await sleep(2);
  }
  return false;
}

interface ConvergenceReport {
  readonly services: number;
  readonly instancesPerService: number;
  readonly changes: ChangeResult[];
  readonly restoreTimeouts: number;
  readonly summary: Record<string, { admin: Stats; request: Stats }>;
  readonly targetMs: number;
  readonly met: boolean;
}

async function convergence(): Promise<ConvergenceReport> {
  const SERVICES = 10;
  const PER = 3;
  const double = new ConsulDouble({ agentNode: NODE });
  await double.start();
  let gw: Gateway | undefined;
  try {
    interface Svc {
      name: string;
      instances: Array<{ id: string; label: string; port: number }>;
      spare: { label: string; port: number };
    }
    const svcs: Svc[] = [];
    for (let s = 0; s < SERVICES; s++) {
      const name = `svc-${s}`;
      const instances: Svc['instances'] = [];
      for (let i = 0; i < PER; i++) {
        const id = `${name}-${i}`;
        const { port } = await labelServer(id);
        instances.push({ id, label: id, port });
        double.register({ id, name, address: '127.0.0.1', port, status: 'passing', node: NODE });
      }
      // The "new instance" of kind (c): one server per service, registered under a fresh ID each time.
      const spareLabel = `${name}-spare`;
      const { port } = await labelServer(spareLabel);
      svcs.push({ name, instances, spare: { label: spareLabel, port } });
    }
    gw = await startGateway(svcs.map((s) => s.name), double);
    await waitReady(gw, 30_000);
    // Warm the gateway's upstream pools and JIT before timing anything.
    for (let round = 0; round < 20; round++) for (const s of svcs) await get(gw.publicPool, `/${s.name}/`);
    for (let round = 0; round < 20; round++) await adminInstances(gw, 'svc-0');

    const results: ChangeResult[] = [];
    let restoreTimeouts = 0;
    for (let k = 0; k < CHANGES; k++) {
      assertAlive(gw.child);
      const svc = svcs[k % SERVICES]!;
      const kind = KINDS[k % KINDS.length]!;
      const baseline = new Set(svc.instances.map((i) => adminId(i.id)));
      const victim = svc.instances[Math.floor(k / SERVICES) % PER]!;
      let id: string;
      let label: string;
      let t0: number;
      if (kind === 'critical') {
        ({ id, label } = victim);
        double.setServiceStatus(id, 'critical', NODE);
        t0 = performance.now();
      } else if (kind === 'deregister') {
        ({ id, label } = victim);
        double.deregister(id, NODE);
        t0 = performance.now();
      } else {
        id = `${svc.name}-new-${k}`;
        label = svc.spare.label;
        double.register({ id, name: svc.name, address: '127.0.0.1', port: svc.spare.port, status: 'passing', node: NODE });
        t0 = performance.now();
      }
      const runLength = 3 * PER; // >= 3x the instance count: round-robin would have hit it several times
      const seen = await observe(gw, svc.name, kind, id, label, runLength, t0);
      results.push({ kind, service: svc.name, instance: id, ...seen });

      // Restore the 3 baseline instances (each service keeps >= 2 passing throughout) and wait for it.
      if (kind === 'critical') double.setServiceStatus(id, 'passing', NODE);
      else if (kind === 'deregister') double.register({ id, name: svc.name, address: '127.0.0.1', port: victim.port, status: 'passing', node: NODE });
      else double.deregister(id, NODE);
      if (!(await waitAdminIds(gw, svc.name, baseline))) restoreTimeouts += 1;
      if (GAP_MS > 0) await sleep(GAP_MS);
      if ((k + 1) % 25 === 0) process.stderr.write(`  convergence: ${k + 1}/${CHANGES} changes\n`);
    }

    const summary: ConvergenceReport['summary'] = {};
    for (const kind of [...KINDS, 'all'] as const) {
      const of = results.filter((r) => kind === 'all' || r.kind === kind);
      summary[kind] = { admin: stats(of.map((r) => r.adminMs)), request: stats(of.map((r) => r.requestMs)) };
    }
    const all = summary['all']!;
    const met = all.admin.p99 < CONVERGENCE_TARGET_MS && all.request.p99 < CONVERGENCE_TARGET_MS && all.admin.misses === 0 && all.request.misses === 0;
    return { services: SERVICES, instancesPerService: PER, changes: results, restoreTimeouts, summary, targetMs: CONVERGENCE_TARGET_MS, met };
  } finally {
    if (gw) await stopGateway(gw);
    await double.stop();
    for (const server of [...servers]) await closeServer(server);
  }
}

function printConvergence(r: ConvergenceReport): void {
  console.log(`\n## Part 1 — convergence: ${r.services} services x ${r.instancesPerService} instances, ${r.changes.length} changes (ms from the Consul write)\n`);
  const rows: string[][] = [];
  for (const [kind, s] of Object.entries(r.summary)) {
    rows.push([kind, String(s.admin.n), ms(s.admin.p50), ms(s.admin.p99), ms(s.admin.max), String(s.admin.misses), ms(s.request.p50), ms(s.request.p99), ms(s.request.max), String(s.request.misses)]);
  }
  printTable(
    [
      { header: 'kind', align: 'left' },
      { header: 'n' },
      { header: 'admin p50' },
      { header: 'admin p99' },
      { header: 'admin max' },
      { header: 'admin miss' },
      { header: 'req p50' },
      { header: 'req p99' },
      { header: 'req max' },
      { header: 'req miss' },
    ],
    rows,
  );
  const requests = r.changes.reduce((sum, c) => sum + c.requests, 0);
  const non200 = r.changes.reduce((sum, c) => sum + c.non200, 0);
  console.log(`proxied requests while observing: ${requests} (non-200: ${non200}); restores that did not converge in ${TIMEOUT_MS} ms: ${r.restoreTimeouts}`);
  console.log(`target p99 < ${r.targetMs} ms (admin and request, no misses): ${r.met ? 'MET' : 'MISSED'}`);
}

// ───────────────────────────── part 2: scale ─────────────────────────────

interface ScaleRow {
  readonly services: number;
  readonly mode: string;
  readonly registerMs: number;
  readonly readyMs: number;
  readonly connsDuringSync: number;
  readonly connsSteady: number;
  readonly connsDuringChanges: number;
  readonly heldSteady: number;
  readonly rssBytes: number | undefined;
  readonly metricRssBytes: number | undefined;
  readonly metricName: string | undefined;
  readonly rssAfterChangesBytes: number | undefined;
  /** Time spent inside the double's write call (it answers held queries synchronously), not counted in convergence. */
  readonly doubleWrite: Stats;
  readonly critical: Stats;
  readonly recover: Stats;
  readonly all: Stats;
  readonly non200Unexpected: number;
}

/** Time until a proxied request for `service` answers `want` (503 = no instance left, 200 = back). */
async function waitStatus(gw: Gateway, service: string, want: (status: number) => boolean, t0: number): Promise<number | undefined> {
  const deadline = t0 + TIMEOUT_MS;
  while (performance.now() < deadline) {
    const answer = await get(gw.publicPool, `/${service}/`);
    if (want(answer.status)) return answer.at - t0;
  }
  return undefined;
}

async function scale(n: number): Promise<ScaleRow> {
  // No connection cap in the double: we want the true count, not a 429 hiding it.
  const double = new ConsulDouble({ agentNode: NODE, maxConnsPerClient: 0 });
  await double.start();
  const { server, port } = await labelServer('shared');
  let gw: Gateway | undefined;
  try {
    const names = Array.from({ length: n }, (_, i) => `svc-${i}`);
    const regStart = performance.now();
    for (const name of names) double.register({ id: `${name}-0`, name, address: '127.0.0.1', port, status: 'passing', node: NODE });
    const registerMs = performance.now() - regStart;

    gw = await startGateway(names, double);
    let connsDuringSync = 0;
    const sampler = setInterval(() => (connsDuringSync = Math.max(connsDuringSync, double.openConnections())), 10);
    let readyMs: number;
    try {
      readyMs = await waitReady(gw, 180_000, () => (connsDuringSync = Math.max(connsDuringSync, double.openConnections())));
    } finally {
      clearInterval(sampler);
    }
    // Steady state: idle keep-alive sockets from the initial sync have had time to close (undici: 4 s).
    await sleep(6_000);
    let connsSteady = 0;
    let heldSteady = 0;
    for (let i = 0; i < 5; i++) {
      connsSteady = Math.max(connsSteady, double.openConnections());
      heldSteady = Math.max(heldSteady, double.heldQueries());
      await sleep(200);
    }
    const rssBytes = vmRssBytes(gw.child.proc.pid);
    const metric = await adminMetric(gw, RSS_METRICS);
    const mode = n > 24 ? 'change-feed' : 'per-service';

    // Warm the request path on a few services.
    for (let i = 0; i < 20; i++) await get(gw.publicPool, `/${names[i % n]}/`);

    const critical: Array<number | undefined> = [];
    const recover: Array<number | undefined> = [];
    const writes: number[] = [];
    let non200Unexpected = 0;
    let connsDuringChanges = 0;
    const changeSampler = setInterval(() => (connsDuringChanges = Math.max(connsDuringChanges, double.openConnections())), 10);
    try {
      for (let c = 0; c < Math.ceil(SCALE_CHANGES / 2); c++) {
        assertAlive(gw.child);
        const name = names[Math.floor(random() * n)]!;
        const id = `${name}-0`;
        // Sanity: it serves before we take it away.
        if ((await get(gw.publicPool, `/${name}/`)).status !== 200) non200Unexpected += 1;
        let w = performance.now();
        double.setServiceStatus(id, 'critical', NODE);
        let t0 = performance.now();
        writes.push(t0 - w);
        critical.push(await waitStatus(gw, name, (s) => s === 503, t0));
        if (GAP_MS > 0) await sleep(GAP_MS);
        w = performance.now();
        double.setServiceStatus(id, 'passing', NODE);
        t0 = performance.now();
        writes.push(t0 - w);
        const back = await waitStatus(gw, name, (s) => s === 200, t0);
        recover.push(back);
        if (back === undefined) {
          // Make sure the next change starts from a serving state anyway.
          await waitStatus(gw, name, (s) => s === 200, performance.now());
        }
        if (GAP_MS > 0) await sleep(GAP_MS);
      }
    } finally {
      clearInterval(changeSampler);
    }
    const rssAfterChangesBytes = vmRssBytes(gw.child.proc.pid);
    return {
      services: n,
      mode,
      registerMs,
      readyMs,
      connsDuringSync,
      connsSteady,
      connsDuringChanges,
      heldSteady,
      rssBytes,
      metricRssBytes: metric?.value,
      metricName: metric?.name,
      rssAfterChangesBytes,
      doubleWrite: stats(writes),
      critical: stats(critical),
      recover: stats(recover),
      all: stats([...critical, ...recover]),
      non200Unexpected,
    };
  } finally {
    if (gw) await stopGateway(gw);
    await double.stop();
    await closeServer(server);
  }
}

function printScale(rows: readonly ScaleRow[]): void {
  console.log(`\n## Part 2 — scale: 1 instance per service; convergence over ${Math.ceil(SCALE_CHANGES / 2) * 2} changes (critical + recover), ms\n`);
  printTable(
    [
      { header: 'services' },
      { header: 'mode', align: 'left' },
      { header: 'ready ms' },
      { header: 'conns sync max' },
      { header: 'conns idle max' },
      { header: 'conns changes max' },
      { header: 'held' },
      { header: 'RSS MiB' },
      { header: 'metric RSS MiB' },
      { header: 'RSS after MiB' },
      { header: 'write max' },
      { header: 'crit p50' },
      { header: 'crit p99' },
      { header: 'recov p50' },
      { header: 'recov p99' },
      { header: 'all p99' },
      { header: 'all max' },
      { header: 'miss' },
    ],
    rows.map((r) => [
      String(r.services),
      r.mode,
      r.readyMs.toFixed(0),
      String(r.connsDuringSync),
      String(r.connsSteady),
      String(r.connsDuringChanges),
      String(r.heldSteady),
      mib(r.rssBytes),
      mib(r.metricRssBytes),
      mib(r.rssAfterChangesBytes),
      ms(r.doubleWrite.max),
      ms(r.critical.p50),
      ms(r.critical.p99),
      ms(r.recover.p50),
      ms(r.recover.p99),
      ms(r.all.p99),
      ms(r.all.max),
      String(r.all.misses),
    ]),
  );
  console.log('conns: sockets the double holds open for the gateway (sync = until ready; idle = 6 s after ready; changes = while changing).');
  console.log('write max: ms inside the double\'s write call, which serialises answers to held queries synchronously; convergence is timed from its end.');
  for (const r of rows) if (r.non200Unexpected > 0) console.log(`${r.services} services: ${r.non200Unexpected} services did not answer 200 before their change`);
  const top = rows.find((r) => r.services === 5000);
  if (top) {
    const conns = Math.max(top.connsDuringSync, top.connsSteady, top.connsDuringChanges) <= SCALE_CONN_TARGET;
    const p99 = top.all.p99 < SCALE_P99_TARGET_MS && top.all.misses === 0;
    console.log(`target at 5,000: <= ${SCALE_CONN_TARGET} connections (sync, idle and changes): ${conns ? 'MET' : 'MISSED'}; convergence p99 < ${SCALE_P99_TARGET_MS} ms: ${p99 ? 'MET' : 'MISSED'}`);
  } else {
    console.log('target at 5,000 services: not run (BENCH_SCALES)');
  }
}

// ───────────────────────────── part 3: datacenter failover ─────────────────────────────

interface LoopRecord {
  /** performance.now() when the request was sent and when its answer was fully read (or it failed). */
  readonly sentAt: number;
  readonly at: number;
  /** 0 = no HTTP answer (socket error, timeout). */
  readonly status: number;
  readonly body: string;
  readonly error?: string;
}

/**
 * A light, steady client: one keep-alive connection, one GET every `intervalMs` (sequential, so at
 * most one in flight), every answer recorded. Stops on stop() or at `hardStopAt`, whichever comes first.
 */
class SteadyLoop {
  readonly records: LoopRecord[] = [];
  private stopped = false;
  private waiter: { label: string; since: number; resolve: (at: number) => void } | undefined;
  private readonly done: Promise<void>;

  constructor(private readonly pool: Pool, private readonly pathName: string, private readonly intervalMs: number, private readonly hardStopAt: number) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped && performance.now() < this.hardStopAt) {
      const sentAt = performance.now();
      let record: LoopRecord;
      try {
        const res = await this.pool.request({ path: this.pathName, method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
        const body = await res.body.text();
        record = { sentAt, at: performance.now(), status: res.statusCode, body };
      } catch (error) {
        record = { sentAt, at: performance.now(), status: 0, body: '', error: (error as Error).message };
      }
      this.records.push(record);
      const w = this.waiter;
      if (w && record.status >= 200 && record.status < 300 && record.body === w.label && record.at >= w.since) {
        this.waiter = undefined;
        w.resolve(record.at);
      }
      const rest = sentAt + this.intervalMs - performance.now();
      if (rest > 0) await sleep(rest);
    }
  }

  /** performance.now() of the first 2xx answer from `label` read at or after `since`; undefined on timeout. */
  firstFrom(label: string, since: number, timeoutMs: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, Math.max(0, since + timeoutMs - performance.now()));
      this.waiter = {
        label,
        since,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

interface Switch {
  readonly to: 'dc2' | 'dc1';
  /** ms from the end of the double's write to the first answer from the other datacenter; undefined = miss. */
  readonly ms: number | undefined;
  /** Loop requests sent between the write and that first answer, and how many of them failed. */
  readonly requestsBefore: number;
  readonly failedBefore: number;
  /** Requests sent after the first answer from the new datacenter and answered before the next write. */
  readonly requestsAfter: number;
  readonly failedAfter: number;
  /** Of those, answered by the datacenter we switched away from (flapping back). */
  readonly oldAfter: number;
  /** When those old-datacenter answers were read, ms after the write (first 10). */
  readonly oldAfterMs: number[];
}

interface FailoverReport {
  readonly switches: number;
  readonly intervalMs: number;
  readonly gapMs: number;
  readonly toDc2: Stats;
  readonly toDc1: Stats;
  readonly detail: Switch[];
  readonly loopRequests: number;
  readonly loopFailed: number;
  readonly failedBeforeSeen: number;
  readonly failedAfterSeen: number;
  readonly oldAfterSeen: number;
  readonly failures: Array<{ atMs: number; status: number; body: string; error?: string }>;
  readonly loopP50Ms: number;
  readonly loopP99Ms: number;
  readonly targetMs: number;
  readonly met: boolean;
}

async function failover(): Promise<FailoverReport> {
  const dc2 = new ConsulDouble({ maxJitterFraction: 0, datacenter: 'dc2' });
  await dc2.start();
  const dc1 = new ConsulDouble({ maxJitterFraction: 0, datacenter: 'dc1', peers: [dc2] });
  await dc1.start();
  const up1 = await labelServer('dc1');
  const up2 = await labelServer('dc2');
  let gw: LaunchedGateway | undefined;
  let loop: SteadyLoop | undefined;
  try {
    dc1.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: up1.port });
    dc2.register({ id: 'web-1', name: 'web', address: '127.0.0.1', port: up2.port });
    gw = await launchGateway([
      'registry:',
      `  consul: { address: "${dc1.address}", wait: 30s }`,
      'routes:',
      '  - { name: web, match: { pathPrefix: /web }, service: web, datacenters: [dc1, dc2] }',
    ].join('\n'));
    await waitReady(gw, 30_000);
    // Hard stop: every switch may take the timeout twice, plus the gaps and a margin.
    const hardStopAt = performance.now() + (FAILOVER_SWITCHES + 1) * 2 * (TIMEOUT_MS + GAP_MS + 1000) + 10_000;
    loop = new SteadyLoop(gw.publicPool, '/web/', FAILOVER_INTERVAL_MS, hardStopAt);
    if ((await loop.firstFrom('dc1', performance.now(), TIMEOUT_MS)) === undefined) throw new Error('failover: dc1 never answered before the first switch');

    const switchOnce = async (to: 'dc1' | 'dc2'): Promise<{ t0: number; seenAt: number | undefined }> => {
      dc1.setServiceStatus('web-1', to === 'dc2' ? 'critical' : 'passing');
      const t0 = performance.now();
      return { t0, seenAt: await loop!.firstFrom(to, t0, TIMEOUT_MS) };
    };
    // One unmeasured cycle: the gateway's first connection to dc2's instance, JIT.
    for (const to of ['dc2', 'dc1'] as const) {
      const { seenAt } = await switchOnce(to);
      if (seenAt === undefined) throw new Error(`failover warm-up: no answer from ${to} within ${TIMEOUT_MS} ms`);
      await sleep(GAP_MS);
    }

    const marks: Array<{ to: 'dc1' | 'dc2'; t0: number; seenAt: number | undefined }> = [];
    for (let k = 0; k < FAILOVER_SWITCHES; k++) {
      assertAlive(gw.child);
      for (const to of ['dc2', 'dc1'] as const) {
        const mark = await switchOnce(to);
        marks.push({ to, ...mark });
        if (mark.seenAt === undefined) {
          // Make sure the next switch starts from the state it expects.
          await loop.firstFrom(to, performance.now(), TIMEOUT_MS);
        }
        await sleep(GAP_MS);
      }
      if ((k + 1) % 5 === 0) process.stderr.write(`  failover: ${k + 1}/${FAILOVER_SWITCHES} switches\n`);
    }
    const endAt = performance.now();
    await loop.stop();
    const records = loop.records;

    const failed = (r: LoopRecord) => r.status < 200 || r.status >= 300;
    const detail: Switch[] = marks.map((m, i) => {
      const nextT0 = marks[i + 1]?.t0 ?? endAt;
      const seen = m.seenAt ?? nextT0;
      const before = records.filter((r) => r.sentAt >= m.t0 && r.at <= seen);
      // Only answers complete before the next write: one in flight across it may rightly come from either dc.
      const after = records.filter((r) => r.sentAt > seen && r.at < nextT0);
      const old = m.to === 'dc2' ? 'dc1' : 'dc2';
      return {
        to: m.to,
        ms: m.seenAt === undefined ? undefined : m.seenAt - m.t0,
        requestsBefore: before.length,
        failedBefore: before.filter(failed).length,
        requestsAfter: after.length,
        failedAfter: after.filter(failed).length,
        oldAfter: after.filter((r) => !failed(r) && r.body === old).length,
        oldAfterMs: after.filter((r) => !failed(r) && r.body === old).slice(0, 10).map((r) => Math.round((r.at - m.t0) * 10) / 10),
      };
    });
    const t00 = marks[0]?.t0 ?? 0;
    const latencies = records.map((r) => r.at - r.sentAt).sort((a, b) => a - b);
    const toDc2 = stats(detail.filter((d) => d.to === 'dc2').map((d) => d.ms));
    const toDc1 = stats(detail.filter((d) => d.to === 'dc1').map((d) => d.ms));
    const loopFailed = records.filter(failed).length;
    const failedAfterSeen = detail.reduce((sum, d) => sum + d.failedAfter, 0);
    const oldAfterSeen = detail.reduce((sum, d) => sum + d.oldAfter, 0);
    return {
      switches: FAILOVER_SWITCHES,
      intervalMs: FAILOVER_INTERVAL_MS,
      gapMs: GAP_MS,
      toDc2,
      toDc1,
      detail,
      loopRequests: records.length,
      loopFailed,
      failedBeforeSeen: detail.reduce((sum, d) => sum + d.failedBefore, 0),
      failedAfterSeen,
      oldAfterSeen,
      failures: records.filter(failed).slice(0, 50).map((r) => ({ atMs: r.sentAt - t00, status: r.status, body: r.body.slice(0, 200), ...(r.error ? { error: r.error } : {}) })),
      loopP50Ms: percentile(latencies, 50),
      loopP99Ms: percentile(latencies, 99),
      targetMs: CONVERGENCE_TARGET_MS,
      met: toDc2.p99 < CONVERGENCE_TARGET_MS && toDc1.p99 < CONVERGENCE_TARGET_MS && toDc2.misses + toDc1.misses === 0 && loopFailed === 0 && oldAfterSeen === 0,
    };
  } finally {
    await loop?.stop();
    if (gw) await stopGateway(gw);
    await dc1.stop();
    await dc2.stop();
    await closeServer(up1.server);
    await closeServer(up2.server);
  }
}

function printFailover(r: FailoverReport): void {
  console.log(`\n## Part 3 — datacenter failover: route datacenters [dc1, dc2], 1 instance each, ${r.switches} switches each way (ms from the Consul write to the first answer from the other dc)\n`);
  const row = (name: string, s: Stats, of: Switch[]) => [
    name,
    String(s.n),
    ms(s.p50),
    ms(s.p99),
    ms(s.max),
    String(s.misses),
    String(of.reduce((sum, d) => sum + d.requestsBefore, 0)),
    String(of.reduce((sum, d) => sum + d.failedBefore, 0)),
    String(of.reduce((sum, d) => sum + d.requestsAfter, 0)),
    String(of.reduce((sum, d) => sum + d.failedAfter, 0)),
    String(of.reduce((sum, d) => sum + d.oldAfter, 0)),
  ];
  printTable(
    [
      { header: 'direction', align: 'left' },
      { header: 'n' },
      { header: 'p50' },
      { header: 'p99' },
      { header: 'max' },
      { header: 'miss' },
      { header: 'req until seen' },
      { header: 'failed until seen' },
      { header: 'req after seen' },
      { header: 'failed after seen' },
      { header: 'old dc after seen' },
    ],
    [
      row('dc1 critical -> dc2', r.toDc2, r.detail.filter((d) => d.to === 'dc2')),
      row('dc1 passing -> dc1', r.toDc1, r.detail.filter((d) => d.to === 'dc1')),
    ],
  );
  console.log(`steady loop: one GET /web/ every ${r.intervalMs} ms on one keep-alive connection, ${r.loopRequests} requests (latency p50 ${ms(r.loopP50Ms)} ms, p99 ${ms(r.loopP99Ms)} ms), failed (non-2xx or error): ${r.loopFailed}`);
  for (const f of r.failures.slice(0, 5)) console.log(`  failed at +${f.atMs.toFixed(0)} ms: ${f.status || 'no answer'} ${f.error ?? f.body.slice(0, 100)}`);
  console.log('"after seen": requests sent after the first answer from the new dc and answered before the next write; "old dc": of those, answered by the dc switched away from (flapping back)');
  console.log(`target: p99 < ${r.targetMs} ms both ways, no misses, 0 failed requests, 0 old-dc answers after the switch is seen: ${r.met ? 'MET' : 'MISSED'}`);
}

// ───────────────────────────── part 4: cold start from the snapshot file ─────────────────────────────

type ColdVariant = 'snapshot, Consul down' | 'snapshot, Consul up' | 'no snapshot, Consul up';
const COLD_VARIANTS: readonly ColdVariant[] = ['snapshot, Consul down', 'no snapshot, Consul up', 'snapshot, Consul up'];

interface ColdRun {
  readonly round: number;
  readonly variant: ColdVariant;
  /** ms from spawn to /health/ready 200 and to the first 200 through a route; undefined = not within the timeout. */
  readonly readyMs: number | undefined;
  readonly firstOkMs: number | undefined;
  /** Services the snapshot file held after this gateway stopped (undefined: no file configured). */
  readonly fileServicesAfter: number | undefined;
}

interface SnapshotReport {
  readonly services: number;
  readonly rounds: number;
  /** ms from spawning the first gateway (Consul up, no file) until the file held every service. */
  readonly fileCompleteMs: number;
  readonly fileBytes: number;
  readonly runs: ColdRun[];
  readonly medians: Record<string, { readyMs: number; firstOkMs: number; misses: number }>;
  readonly met: boolean;
}

/** Services with at least one instance in a snapshot file; 0 when it is missing or unreadable. */
function snapshotServices(file: string): number {
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { services?: Record<string, { instances?: unknown[] }> };
    return Object.values(doc.services ?? {}).filter((s) => (s.instances?.length ?? 0) > 0).length;
  } catch {
    return 0;
  }
}

/** Polls a path every 5 ms until it answers 200; ms since `from`, or undefined after timeoutMs. */
async function firstOk(gw: Gateway, pool: Pool, pathName: string, from: number, timeoutMs: number): Promise<number | undefined> {
  while (performance.now() - from < timeoutMs) {
    if (gw.child.proc.exitCode !== null || gw.child.proc.signalCode !== null) return undefined;
    try {
      const res = await pool.request({ path: pathName, method: 'GET', headersTimeout: 2000, bodyTimeout: 2000 });
      await res.body.text();
      if (res.statusCode === 200) return performance.now() - from;
    } catch {
      // not listening yet
    }
    await sleep(5);
  }
  return undefined;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function snapshotColdStart(): Promise<SnapshotReport> {
  const n = SNAPSHOT_SERVICES;
  const double = new ConsulDouble({ agentNode: NODE, maxConnsPerClient: 0 });
  await double.start();
  const { server, port } = await labelServer('shared');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-consul-snapshot-'));
  tempDirs.add(dir);
  const file = path.join(dir, 'consul-snapshot.json');
  const pristine = path.join(dir, 'pristine.json');
  const names = Array.from({ length: n }, (_, i) => `s${i}`);
  const probe = `/${names[n - 1]}/`;
  try {
    for (const name of names) double.register({ id: `${name}-0`, name, address: '127.0.0.1', port, status: 'passing', node: NODE });

    // Fill the file: a gateway with Consul up, until the file holds every service.
    const first = await launchGateway(consulRoutesYaml(names, double.address, file));
    let fileCompleteMs: number;
    try {
      await waitReady(first, 180_000);
      const deadline = performance.now() + 60_000;
      while (snapshotServices(file) < n) {
        assertAlive(first.child);
        if (performance.now() > deadline) throw new Error(`snapshot: the file holds ${snapshotServices(file)} of ${n} services after 60 s`);
        await sleep(50);
      }
      fileCompleteMs = performance.now() - first.spawnedAt;
    } finally {
      await stopGateway(first);
    }
    copyFileSync(file, pristine);
    const fileBytes = statSync(pristine).size;

    const runs: ColdRun[] = [];
    for (let round = 0; round < SNAPSHOT_ROUNDS; round++) {
      // Rotate the order by one variant per round, so no variant always runs first.
      const order = COLD_VARIANTS.map((_, i) => COLD_VARIANTS[(i + round) % COLD_VARIANTS.length]!);
      for (const variant of order) {
        const withFile = variant !== 'no snapshot, Consul up';
        if (withFile) copyFileSync(pristine, file);
        if (variant === 'snapshot, Consul down') await double.setFault('refuse');
        const gw = await launchGateway(consulRoutesYaml(names, double.address, withFile ? file : undefined));
        // The readiness poller gets the admin pool, the route poller the public one; both every 5 ms.
        const [readyMs, firstOkMs] = await Promise.all([
          firstOk(gw, gw.adminPool, '/health/ready', gw.spawnedAt, SNAPSHOT_TIMEOUT_MS),
          firstOk(gw, gw.publicPool, probe, gw.spawnedAt, SNAPSHOT_TIMEOUT_MS),
        ]);
        const tail = gw.child.tail.slice(-5).join('\n');
        await stopGateway(gw);
        if (variant === 'snapshot, Consul down') await double.setFault(null);
        if (readyMs === undefined || firstOkMs === undefined) process.stderr.write(`  snapshot: ${variant}, round ${round + 1}: not serving within ${SNAPSHOT_TIMEOUT_MS} ms\n${tail}\n`);
        runs.push({ round: round + 1, variant, readyMs, firstOkMs, fileServicesAfter: withFile ? snapshotServices(file) : undefined });
      }
      process.stderr.write(`  snapshot: round ${round + 1}/${SNAPSHOT_ROUNDS}\n`);
    }
    const medians: SnapshotReport['medians'] = {};
    for (const variant of COLD_VARIANTS) {
      const of = runs.filter((r) => r.variant === variant);
      medians[variant] = {
        readyMs: median(of.map((r) => r.readyMs ?? SNAPSHOT_TIMEOUT_MS)),
        firstOkMs: median(of.map((r) => r.firstOkMs ?? SNAPSHOT_TIMEOUT_MS)),
        misses: of.filter((r) => r.readyMs === undefined || r.firstOkMs === undefined).length,
      };
    }
    const down = medians['snapshot, Consul down']!;
    const up = medians['no snapshot, Consul up']!;
    const met = down.misses === 0 && down.readyMs <= up.readyMs && down.firstOkMs <= up.firstOkMs;
    return { services: n, rounds: SNAPSHOT_ROUNDS, fileCompleteMs, fileBytes, runs, medians, met };
  } finally {
    await double.setFault(null);
    await double.stop();
    await closeServer(server);
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

function printSnapshot(r: SnapshotReport): void {
  console.log(`\n## Part 4 — cold start at ${r.services.toLocaleString('en-US')} services: ms from spawning waygate, medians of ${r.rounds} interleaved rounds\n`);
  printTable(
    [
      { header: 'start', align: 'left' },
      { header: 'ready p50' },
      { header: 'first 200 p50' },
      { header: 'ready per round' },
      { header: 'first 200 per round' },
      { header: 'miss' },
      { header: 'file services after stop' },
    ],
    COLD_VARIANTS.map((variant) => {
      const of = r.runs.filter((run) => run.variant === variant);
      const m = r.medians[variant]!;
      const list = (values: Array<number | undefined>) => values.map((v) => (v === undefined ? 'miss' : v.toFixed(0))).join(' ');
      return [
        variant,
        m.readyMs.toFixed(0),
        m.firstOkMs.toFixed(0),
        list(of.map((run) => run.readyMs)),
        list(of.map((run) => run.firstOkMs)),
        String(m.misses),
        of.every((run) => run.fileServicesAfter === undefined) ? '-' : of.map((run) => run.fileServicesAfter ?? '-').join(' '),
      ];
    }),
  );
  console.log(`snapshot file: ${(r.fileBytes / 1024).toFixed(0)} KiB, complete ${(r.fileCompleteMs / 1000).toFixed(1)} s after the first gateway was spawned; restored from a pristine copy before every run that uses it`);
  console.log(`"Consul down" = the double's listener closed (setFault('refuse'), connection refused); ready = /health/ready 200; first 200 = GET /s${r.services - 1}/ through the gateway`);
  for (const run of r.runs) {
    if (run.fileServicesAfter !== undefined && run.fileServicesAfter < r.services) {
      console.log(`NOTE: round ${run.round}, ${run.variant}: the gateway left a snapshot file with ${run.fileServicesAfter} of ${r.services} services when it stopped (it was complete at start)`);
    }
  }
  const down = r.medians['snapshot, Consul down']!;
  const up = r.medians['no snapshot, Consul up']!;
  console.log(`target: with Consul down, serves from the snapshot in every round, ready and first 200 no later than a Consul-up start without the file (${down.readyMs.toFixed(0)} vs ${up.readyMs.toFixed(0)} ms ready): ${r.met ? 'MET' : 'MISSED'}`);
}

// ───────────────────────────── part 5: split accuracy ─────────────────────────────

interface SplitCase {
  readonly weights: readonly [number, number];
  readonly requests: number;
  readonly counts: readonly [number, number];
  readonly non200: number;
  readonly errors: number;
  readonly reqPerSec: number;
  /** (observed count of the first backend - n p) / sqrt(n p (1 - p)), n = 200 answers. */
  readonly z: number;
}

interface SplitReport {
  readonly concurrency: number;
  readonly cases: SplitCase[];
  readonly zLimit: number;
  readonly met: boolean;
}

function parseSplitCases(text: string): Array<readonly [number, number]> {
  return text.split(',').map((item) => {
    const [a, b] = item.split(':').map((s) => Number(s.trim()));
    if (!Number.isInteger(a) || !Number.isInteger(b) || a! < 0 || b! < 0 || a! + b! === 0) throw new Error(`BENCH_SPLIT_CASES: "${item}" is not like 90:10`);
    return [a!, b!] as const;
  });
}

async function splitAccuracy(): Promise<SplitReport> {
  const a = await labelServer('a');
  const b = await labelServer('b');
  let gw: LaunchedGateway | undefined;
  let pool: Pool | undefined;
  try {
    const lines = [
      'registry:',
      '  static:',
      '    services:',
      `      split-a: { instances: ["http://127.0.0.1:${a.port}"] }`,
      `      split-b: { instances: ["http://127.0.0.1:${b.port}"] }`,
      'routes:',
    ];
    SPLIT_CASES.forEach(([wa, wb], i) => {
      lines.push(`  - name: split-${i}`, `    match: { pathPrefix: /split-${i} }`, '    split:', `      - { service: split-a, weight: ${wa} }`, `      - { service: split-b, weight: ${wb} }`);
    });
    gw = await launchGateway(lines.join('\n'));
    await waitReady(gw, 30_000);
    pool = new Pool(gw.publicUrl, { connections: SPLIT_CONCURRENCY, pipelining: 1 });
    const cases: SplitCase[] = [];
    for (const [i, weights] of SPLIT_CASES.entries()) {
      assertAlive(gw.child);
      const pathName = `/split-${i}/`;
      // Warm-up (not counted): connections, JIT.
      for (let w = 0; w < 200; w++) await get(pool, pathName);
      const counts: [number, number] = [0, 0];
      let non200 = 0;
      let errors = 0;
      let sent = 0;
      const started = performance.now();
      const worker = async () => {
        while (sent < SPLIT_REQUESTS) {
          sent += 1;
          try {
            const answer = await get(pool!, pathName);
            if (answer.status !== 200) non200 += 1;
            else if (answer.body === 'a') counts[0] += 1;
            else if (answer.body === 'b') counts[1] += 1;
            else non200 += 1;
          } catch {
            errors += 1;
          }
        }
      };
      await Promise.all(Array.from({ length: SPLIT_CONCURRENCY }, worker));
      const elapsedS = (performance.now() - started) / 1000;
      const n = counts[0] + counts[1];
      const p = weights[0] / (weights[0] + weights[1]);
      const sd = Math.sqrt(n * p * (1 - p));
      const z = sd === 0 ? (counts[0] === n * p ? 0 : Infinity) : (counts[0] - n * p) / sd;
      cases.push({ weights, requests: SPLIT_REQUESTS, counts, non200, errors, reqPerSec: SPLIT_REQUESTS / elapsedS, z });
    }
    const met = cases.every((c) => Math.abs(c.z) < SPLIT_Z_LIMIT && c.non200 === 0 && c.errors === 0);
    return { concurrency: SPLIT_CONCURRENCY, cases, zLimit: SPLIT_Z_LIMIT, met };
  } finally {
    await pool?.destroy();
    if (gw) await stopGateway(gw);
    await closeServer(a.server);
    await closeServer(b.server);
  }
}

function printSplit(r: SplitReport): void {
  const total = r.cases[0]?.requests ?? 0;
  console.log(`\n## Part 5 — split accuracy: static registry, 2 backends, ${total.toLocaleString('en-US')} requests per case (${r.concurrency} keep-alive connections)\n`);
  const rows: string[][] = [];
  for (const c of r.cases) {
    const n = c.counts[0] + c.counts[1];
    const sum = c.weights[0] + c.weights[1];
    for (const k of [0, 1] as const) {
      const p = c.weights[k] / sum;
      const sd = Math.sqrt(n * p * (1 - p));
      rows.push([
        `${c.weights[0]}/${c.weights[1]}`,
        k === 0 ? 'split-a' : 'split-b',
        `${((100 * c.weights[k]) / sum).toFixed(1)} %`,
        (n * p).toFixed(0),
        sd.toFixed(1),
        String(c.counts[k]),
        `${n === 0 ? '-' : ((100 * c.counts[k]) / n).toFixed(2)} %`,
        `${(k === 0 ? c.z : -c.z) >= 0 ? '+' : ''}${(k === 0 ? c.z : -c.z).toFixed(2)}`,
        k === 0 ? String(c.non200 + c.errors) : '',
        k === 0 ? c.reqPerSec.toFixed(0) : '',
      ]);
    }
  }
  printTable(
    [
      { header: 'case', align: 'left' },
      { header: 'backend', align: 'left' },
      { header: 'weight' },
      { header: 'expected' },
      { header: 'sd' },
      { header: 'observed' },
      { header: 'share' },
      { header: 'deviation (sd)' },
      { header: 'failed' },
      { header: 'req/s' },
    ],
    rows,
  );
  console.log('sd = sqrt(n p (1 - p)) of Binomial(n, p), n = answered requests; deviation = (observed - expected) / sd');
  console.log(`target: |deviation| < ${r.zLimit} sd in every case (a fair draw misses it with probability ~0.3 % per case), 0 failed: ${r.met ? 'MET' : 'MISSED'}`);
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  const started = performance.now();
  const machine = machineInfo();
  console.log(`# waygate Consul benchmark\nmachine: ${machine.cpu} x ${machine.cores} cores, node ${machine.node}, ${machine.platform}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on the box skews latencies)`);
  console.log(`changes: ${CHANGES} (part 1), ${Math.ceil(SCALE_CHANGES / 2) * 2} per scale (part 2); gap ${GAP_MS} ms; per-change timeout ${TIMEOUT_MS} ms; scales ${SCALES.join(', ')}`);
  console.log(`failover: ${FAILOVER_SWITCHES} switches each way, a request every ${FAILOVER_INTERVAL_MS} ms; snapshot: ${SNAPSHOT_SERVICES} services x ${SNAPSHOT_ROUNDS} rounds; split: ${SPLIT_CASES.map((c) => c.join('/')).join(', ')} x ${SPLIT_REQUESTS} requests, ${SPLIT_CONCURRENCY} connections; parts: ${[...PARTS].join(',')}`);

  if (process.env['BENCH_SKIP_BUILD'] !== '1') {
    process.stderr.write('building dist/ (tsc -p tsconfig.build.json)...\n');
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
  }

  let conv: ConvergenceReport | undefined;
  if (PARTS.has('convergence')) {
    conv = await convergence();
    printConvergence(conv);
  }
  const rows: ScaleRow[] = [];
  if (PARTS.has('scale')) {
    for (const n of SCALES) {
      process.stderr.write(`  scale: ${n} services...\n`);
      rows.push(await scale(n));
    }
    printScale(rows);
  }
  let fail: FailoverReport | undefined;
  if (PARTS.has('failover')) {
    process.stderr.write('  failover: dc1 -> dc2 -> dc1...\n');
    fail = await failover();
    printFailover(fail);
  }
  let snap: SnapshotReport | undefined;
  if (PARTS.has('snapshot')) {
    process.stderr.write(`  snapshot: ${SNAPSHOT_SERVICES} services...\n`);
    snap = await snapshotColdStart();
    printSnapshot(snap);
  }
  let split: SplitReport | undefined;
  if (PARTS.has('split')) {
    process.stderr.write('  split: ' + SPLIT_CASES.map((c) => c.join('/')).join(', ') + '...\n');
    split = await splitAccuracy();
    printSplit(split);
  }
  const runtimeS = (performance.now() - started) / 1000;
  const metricNames = [...new Set(rows.map((r) => r.metricName).filter((n) => n !== undefined))];
  if (rows.length > 0) console.log(`metric RSS read from: ${metricNames.join(', ') || 'not found'}`);
  console.log(`\nruntime: ${runtimeS.toFixed(1)} s; load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const out = path.join(ROOT, 'benchmarks/results');
  mkdirSync(out, { recursive: true });
  const file = path.join(out, 'consul-latest.json');
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        settings: {
          parts: [...PARTS],
          changes: CHANGES,
          scaleChanges: Math.ceil(SCALE_CHANGES / 2) * 2,
          gapMs: GAP_MS,
          timeoutMs: TIMEOUT_MS,
          scales: SCALES,
          failoverSwitches: FAILOVER_SWITCHES,
          failoverIntervalMs: FAILOVER_INTERVAL_MS,
          snapshotServices: SNAPSHOT_SERVICES,
          snapshotRounds: SNAPSHOT_ROUNDS,
          splitRequests: SPLIT_REQUESTS,
          splitConcurrency: SPLIT_CONCURRENCY,
          splitCases: SPLIT_CASES,
        },
        runtimeS,
        convergence: conv,
        scale: rows,
        failover: fail,
        snapshot: snap,
        split,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`results: ${path.relative(ROOT, file)}`);
}

// Children are killed by lib's exit/signal guards; servers here die with the process.
await runBenchmark(main, async () => {
  for (const server of [...servers]) await closeServer(server);
});
