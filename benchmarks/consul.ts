/**
 * `npm run bench:consul`: how fast and how cheaply waygate follows a Consul catalog.
 *
 *   Part 1, convergence: 10 routed services x 3 instances (real node:http servers answering their own
 *   label). 100 registry changes of three kinds (critical / deregistered / new instance); for each we
 *   time, from the moment the Consul double applied the write, when /admin/routes reflects it and when
 *   proxied requests reflect it.
 *   Part 2, scale: 10 … 5,000 routed services (1 instance each, one shared upstream). Time to ready,
 *   connections held to Consul, gateway memory, and convergence of ~30 critical/recover changes.
 *
 * Topology: the bench process hosts the Consul double (test/support/consul-double.ts), the upstream
 * servers and the (sequential) client; waygate runs as its own child process (bin/waygate.js on dist/).
 *
 * Env: BENCH_SCALES (default 10,100,1000,5000), BENCH_CHANGES (part 1, default 100),
 *      BENCH_SCALE_CHANGES (part 2, default 30), BENCH_GAP_MS (pause between changes, default 250),
 *      BENCH_TIMEOUT_MS (per change, default 10000), BENCH_PARTS (default "convergence,scale"),
 *      BENCH_SEED (default 1), BENCH_SKIP_BUILD=1 to reuse dist/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { ConsulDouble } from '../test/support/consul-double.ts';
import { type Child, ROOT, envNumber, freePort, machineInfo, printTable, sleep, spawnNode, stopAll, stopChild } from './lib.ts';

const NODE = 'bench-node';
const CONVERGENCE_TARGET_MS = 50;
const SCALE_CONN_TARGET = 32;
const SCALE_P99_TARGET_MS = 1000;

const CHANGES = Math.round(envNumber('BENCH_CHANGES', 100));
const SCALE_CHANGES = Math.round(envNumber('BENCH_SCALE_CHANGES', 30));
const GAP_MS = process.env['BENCH_GAP_MS'] === '0' ? 0 : envNumber('BENCH_GAP_MS', 250);
const TIMEOUT_MS = envNumber('BENCH_TIMEOUT_MS', 10_000);
const SCALES = (process.env['BENCH_SCALES'] ?? '10,100,1000,5000').split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'convergence,scale').split(',').map((s) => s.trim()));

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

/** Nearest-rank percentile; misses are kept in the list as the timeout, so they push p99 up. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

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

function gatewayConfig(services: readonly string[], consulAddress: string, port: number, adminPort: number): string {
  const lines = [
    `server: { host: 127.0.0.1, port: ${port} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'registry:',
    `  consul: { address: "${consulAddress}", wait: 30s }`,
    'routes:',
  ];
  for (const name of services) {
    lines.push(`  - name: ${name}`, `    match: { pathPrefix: /${name} }`, `    service: ${name}`, '    stripPrefix: true');
  }
  return `${lines.join('\n')}\n`;
}

async function startGateway(services: readonly string[], double: ConsulDouble): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-consul-bench-'));
  tempDirs.add(dir);
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, gatewayConfig(services, double.address, port, adminPort));
  const child = spawnNode('waygate', [path.join(ROOT, 'bin/waygate.js'), 'start', '--config', file], {
    env: { WAYGATE_LOG_LEVEL: 'warn' },
    echoStderr: true,
  });
  // One connection each: requests are strictly sequential, as a single client would send them.
  const publicPool = new Pool(`http://127.0.0.1:${port}`, { connections: 1, pipelining: 1 });
  const adminPool = new Pool(`http://127.0.0.1:${adminPort}`, { connections: 1, pipelining: 1 });
  return { child, publicPool, adminPool, adminUrl: `http://127.0.0.1:${adminPort}`, dir };
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

function vmRssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

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

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  const started = performance.now();
  const machine = machineInfo();
  console.log(`# waygate Consul benchmark\nmachine: ${machine.cpu} x ${machine.cores} cores, node ${machine.node}, ${machine.platform}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on the box skews latencies)`);
  console.log(`changes: ${CHANGES} (part 1), ${Math.ceil(SCALE_CHANGES / 2) * 2} per scale (part 2); gap ${GAP_MS} ms; per-change timeout ${TIMEOUT_MS} ms; scales ${SCALES.join(', ')}`);

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
        settings: { changes: CHANGES, scaleChanges: Math.ceil(SCALE_CHANGES / 2) * 2, gapMs: GAP_MS, timeoutMs: TIMEOUT_MS, scales: SCALES },
        runtimeS,
        convergence: conv,
        scale: rows,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`results: ${path.relative(ROOT, file)}`);
}

// Children are killed by lib's exit/signal guards; servers here die with the process.
try {
  await main();
} catch (error) {
  process.exitCode = 1;
  console.error((error as Error).stack ?? String(error));
} finally {
  await stopAll();
  for (const server of [...servers]) await closeServer(server);
}
