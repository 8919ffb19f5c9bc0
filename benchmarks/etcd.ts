/**
 * `npm run bench:etcd`: how fast and how cheaply waygate follows an etcd prefix.
 *
 *   Part 1, convergence: one routed service `conv`, 50 changes alternating put (a key whose instance
 *   answers a fresh label, the service having no instance before) and delete (the service then has
 *   none). Each is timed from etcd's acknowledgement of the write to the first proxied answer that
 *   reflects it: a 200 from the new label, or the 503 of an empty service.
 *   Part 2, scale: 1,000 services x 2 instances (2,000 keys written before the start). Spawn to
 *   /health/ready 200 and to the first 200 through a route, gateway RSS after ready and after churn,
 *   and part 1's convergence (fewer changes) on one more service while writers churn the 2,000 keys.
 *
 * Topology: the bench process hosts the upstream servers, the etcd writers and the (sequential)
 * client; etcd (the real binary, test/support/etcd.ts) and waygate (bin/waygate.js on dist/) each run
 * as their own child process.
 *
 * Env: BENCH_CHANGES (part 1, default 50), BENCH_SERVICES (part 2, default 1000),
 *      BENCH_CHURN_CHANGES (part 2, default 30), BENCH_CHURN_WRITERS (default 4),
 *      BENCH_TIMEOUT_MS (per change, default 10000), BENCH_GAP_MS (between changes, default 100), BENCH_PARTS (default "convergence,scale"),
 *      BENCH_SKIP_BUILD=1 to reuse dist/.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { startEtcd, type TestEtcd } from '../test/support/etcd.ts';
import { type Child, ROOT, ensureBuilt, envNumber, freePort, machineInfo, percentile, printTable, sleep, spawnNode, stopChild, vmRssBytes, runBenchmark
} from './lib.ts';

const CONVERGENCE_TARGET_MS = 50;
const CHANGES = Math.round(envNumber('BENCH_CHANGES', 50));
const SERVICES = Math.round(envNumber('BENCH_SERVICES', 1000));
const CHURN_CHANGES = Math.round(envNumber('BENCH_CHURN_CHANGES', 30));
const CHURN_WRITERS = Math.round(envNumber('BENCH_CHURN_WRITERS', 4));
/** Churn writers stop after this many writes even if the measured part has not finished. */
const CHURN_MAX_WRITES = 200_000;
const TIMEOUT_MS = envNumber('BENCH_TIMEOUT_MS', 10_000);
/** Pause between measured changes (the churn keeps writing through it). */
const GAP_MS = envNumber('BENCH_GAP_MS', 100);
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'convergence,scale').split(',').map((s) => s.trim()));
const PREFIX = '/services/';

// ───────────────────────────── helpers ─────────────────────────────

interface Stats { readonly n: number; readonly misses: number; readonly p50: number; readonly p99: number; readonly max: number }
/** Misses count as the timeout, so they push p99 up. */
function stats(values: readonly (number | undefined)[]): Stats {
  const sorted = values.map((v) => v ?? TIMEOUT_MS).sort((a, b) => a - b);
  return { n: values.length, misses: values.filter((v) => v === undefined).length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN };
}
const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : (bytes / 1024 / 1024).toFixed(1));

const servers = new Set<Server>();

/** One node:http server per label, so an answer names the instance that served it. */
async function namedServer(label: string): Promise<number> {
  const body = Buffer.from(label);
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  servers.add(server);
  return (server.address() as AddressInfo).port;
}

// ───────────────────────────── gateway child ─────────────────────────────

interface Gateway { readonly child: Child; readonly pool: Pool; readonly admin: Pool; readonly dir: string; readonly spawnedAt: number }

async function launchGateway(etcdUrl: string, services: readonly string[]): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-etcd-bench-'));
  const lines = [
    `server: { host: 127.0.0.1, port: ${port} }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'shutdown: { drainDelay: 0s, timeout: 5s }',
    'registry:',
    `  etcd: { endpoints: ["${etcdUrl}"], prefix: "${PREFIX}" }`,
    // No retries: a request to an instance that just went away must show up, not be hidden.
    'defaults: { retries: 0 }',
    'routes:',
  ];
  for (const name of services) lines.push(`  - { name: ${name}, match: { pathPrefix: /${name} }, service: ${name}, stripPrefix: true }`);
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  const spawnedAt = performance.now();
  const child = spawnNode('waygate', [path.join(ROOT, 'bin/waygate.js'), 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' }, echoStderr: true });
  return {
    child,
    pool: new Pool(`http://127.0.0.1:${port}`, { connections: 1, pipelining: 1 }),
    admin: new Pool(`http://127.0.0.1:${adminPort}`, { connections: 1, pipelining: 1 }),
    dir,
    spawnedAt,
  };
}

async function stopGateway(gw: Gateway): Promise<void> {
  await stopChild(gw.child);
  await Promise.allSettled([gw.pool.destroy(), gw.admin.destroy()]);
  rmSync(gw.dir, { recursive: true, force: true });
}

async function get(pool: Pool, pathName: string): Promise<{ status: number; body: string }> {
  const res = await pool.request({ path: pathName, method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, body: await res.body.text() };
}

/** Polls until `check` holds; returns ms since performance.now() was `from`, or undefined past timeoutMs. */
async function until(from: number, timeoutMs: number, check: () => Promise<boolean>): Promise<number | undefined> {
  while (performance.now() - from < timeoutMs) {
    try {
      if (await check()) return performance.now() - from;
    } catch {
      // not up yet
    }
    await sleep(2);
  }
  return undefined;
}

// ───────────────────────────── measurements ─────────────────────────────

interface ConvergenceResult { readonly put: Stats; readonly del: Stats; readonly all: Stats; readonly writeMs: Stats; readonly requests: number }

/**
 * `changes` alternating puts and deletes on service `conv` (empty at the start): timed from the
 * write's acknowledgement to the first answer through the gateway that reflects it.
 */
async function convergence(etcd: TestEtcd, gw: Gateway, changes: number, labels: ReadonlyMap<string, number>): Promise<ConvergenceResult> {
  const puts: (number | undefined)[] = [];
  const dels: (number | undefined)[] = [];
  const writes: number[] = [];
  let requests = 0;
  const answer = async () => {
    requests += 1;
    return get(gw.pool, '/conv/x');
  };
  for (let k = 0; k < changes; k++) {
    const label = `c${Math.floor(k / 2) % labels.size}`;
    const key = `${PREFIX}conv/${label}`;
    const before = performance.now();
    if (k % 2 === 0) {
      await etcd.put(key, JSON.stringify({ Addr: `127.0.0.1:${labels.get(label)}` }));
      const acked = performance.now();
      writes.push(acked - before);
      puts.push(await until(acked, TIMEOUT_MS, async () => {
        const a = await answer();
        return a.status === 200 && a.body === label;
      }));
    } else {
      await etcd.del(key);
      const acked = performance.now();
      writes.push(acked - before);
      dels.push(await until(acked, TIMEOUT_MS, async () => (await answer()).status === 503));
    }
    await sleep(GAP_MS);
  }
  return { put: stats(puts), del: stats(dels), all: stats([...puts, ...dels]), writeMs: stats(writes), requests };
}

/** Writes keys with `concurrency` writers at once. */
async function writeAll(etcd: TestEtcd, entries: readonly [string, string][], concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < entries.length) {
      const [key, value] = entries[next++]!;
      await etcd.put(key, value);
    }
  }));
}

async function main(): Promise<void> {
  const started = performance.now();
  const build = ensureBuilt();
  const machine = machineInfo();
  console.log(`# waygate etcd benchmark\n\n${machine.cpu} x${machine.cores}, node ${machine.node}, ${machine.platform}; ${build}`);
  const etcd = await startEtcd();
  const version = (await (await fetch(`${etcd.url}/version`)).json()) as { etcdserver?: string };
  console.log(`etcd ${version.etcdserver ?? '?'} (real server, own process, fsync on)\n`);
  const labels = new Map<string, number>();
  for (let i = 0; i < 4; i++) labels.set(`c${i}`, await namedServer(`c${i}`));
  const summary: Array<[string, string, string, string]> = [];
  const report: Record<string, unknown> = { date: new Date().toISOString(), machine, etcd: version.etcdserver, settings: { changes: CHANGES, gapMs: GAP_MS, services: SERVICES, churnChanges: CHURN_CHANGES, churnWriters: CHURN_WRITERS, timeoutMs: TIMEOUT_MS } };
  try {
    if (PARTS.has('convergence')) {
      const gw = await launchGateway(etcd.url, ['conv']);
      try {
        if ((await until(gw.spawnedAt, 30_000, async () => (await get(gw.admin, '/health/ready')).status === 200)) === undefined) throw new Error(`not ready\n${gw.child.tail.join('\n')}`);
        const result = await convergence(etcd, gw, CHANGES, labels);
        report['convergence'] = result;
        console.log(`## Part 1 — convergence: ${CHANGES} changes on one service (ms from etcd's write acknowledgement to the first answer reflecting it)\n`);
        printTable(
          [{ header: 'kind', align: 'left' }, { header: 'n' }, { header: 'p50' }, { header: 'p99' }, { header: 'max' }, { header: 'misses' }],
          [['put', result.put], ['delete', result.del], ['all', result.all], ['(etcd write itself)', result.writeMs]].map(([name, s]) => {
            const v = s as Stats;
            return [name as string, String(v.n), ms(v.p50), ms(v.p99), ms(v.max), String(v.misses)];
          }),
        );
        console.log(`proxied requests while observing: ${result.requests}\n`);
        summary.push(['convergence p99 (put+delete)', `${ms(result.all.p99)} ms`, `< ${CONVERGENCE_TARGET_MS} ms, no misses`, result.all.p99 < CONVERGENCE_TARGET_MS && result.all.misses === 0 ? 'MET' : 'MISSED']);
        summary.push(['convergence p50 (put+delete)', `${ms(result.all.p50)} ms`, '-', '-']);
      } finally {
        await stopGateway(gw);
      }
    }

    if (PARTS.has('scale')) {
      const upstreamPort = await namedServer('bulk');
      const names = Array.from({ length: SERVICES }, (_, i) => `s${String(i).padStart(4, '0')}`);
      const entries: [string, string][] = names.flatMap((name) => [0, 1].map((i): [string, string] => [`${PREFIX}${name}/i${i}`, JSON.stringify({ Addr: `127.0.0.1:${upstreamPort}` })]));
      const writeStart = performance.now();
      await writeAll(etcd, entries);
      console.log(`## Part 2 — scale: ${SERVICES} services x 2 instances (${entries.length} keys, written in ${ms(performance.now() - writeStart)} ms)\n`);
      const gw = await launchGateway(etcd.url, [...names, 'conv']);
      let churnWrites = 0;
      try {
        const readyMs = await until(gw.spawnedAt, 60_000, async () => (await get(gw.admin, '/health/ready')).status === 200);
        const firstMs = await until(gw.spawnedAt, 60_000, async () => (await get(gw.pool, `/${names[names.length - 1]}/x`)).status === 200);
        if (readyMs === undefined || firstMs === undefined) throw new Error(`not ready\n${gw.child.tail.join('\n')}`);
        const rssReady = vmRssBytes(gw.child.proc.pid);
        // Churn: writers rewrite random instance keys (weight changes) as fast as etcd takes them.
        let done = false;
        const churnStart = performance.now();
        const writers = Array.from({ length: CHURN_WRITERS }, async (_, w) => {
          let n = w;
          while (!done && churnWrites < CHURN_MAX_WRITES) {
            const [key] = entries[(n * 7919) % entries.length]!;
            n += CHURN_WRITERS;
            await etcd.put(key, JSON.stringify({ Addr: `127.0.0.1:${upstreamPort}`, Metadata: { weight: 1 + (n % 5) } }));
            churnWrites += 1;
          }
        });
        let churned: ConvergenceResult;
        try {
          churned = await convergence(etcd, gw, CHURN_CHANGES, labels);
        } finally {
          done = true;
          await Promise.all(writers);
        }
        const churnSeconds = (performance.now() - churnStart) / 1000;
        const rssChurn = vmRssBytes(gw.child.proc.pid);
        report['scale'] = { services: SERVICES, readyMs, firstMs, rssReadyBytes: rssReady, rssAfterChurnBytes: rssChurn, churnWrites, churnWritesPerSecond: churnWrites / churnSeconds, convergence: churned };
        printTable(
          [{ header: 'measure', align: 'left' }, { header: 'value' }],
          [
            ['spawn -> /health/ready 200', `${ms(readyMs)} ms`],
            ['spawn -> first 200 through a route', `${ms(firstMs)} ms`],
            ['gateway RSS after ready', `${mib(rssReady)} MiB`],
            ['gateway RSS after churn', `${mib(rssChurn)} MiB`],
            ['churn writes (other services)', `${churnWrites} (${(churnWrites / churnSeconds).toFixed(0)}/s, ${CHURN_WRITERS} writers)`],
            [`convergence under churn, p50 (${churned.all.n} changes)`, `${ms(churned.all.p50)} ms`],
            ['convergence under churn, p99', `${ms(churned.all.p99)} ms (misses ${churned.all.misses})`],
          ],
        );
        console.log('');
        summary.push([`ready, ${SERVICES} services x 2`, `${ms(readyMs)} ms`, '- (reported)', '-']);
        summary.push([`RSS, ${SERVICES} services x 2, after churn`, `${mib(rssChurn)} MiB`, '- (reported)', '-']);
        summary.push(['convergence p99 under churn', `${ms(churned.all.p99)} ms`, `< ${CONVERGENCE_TARGET_MS} ms, no misses`, churned.all.p99 < CONVERGENCE_TARGET_MS && churned.all.misses === 0 ? 'MET' : 'MISSED']);
      } finally {
        await stopGateway(gw);
      }
    }
  } finally {
    await etcd.close();
  }

  console.log('## Summary\n');
  printTable([{ header: 'measure', align: 'left' }, { header: 'result' }, { header: 'target', align: 'left' }, { header: 'status', align: 'left' }], summary);
  const runtimeS = (performance.now() - started) / 1000;
  console.log(`\nruntime: ${runtimeS.toFixed(1)} s; load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const out = path.join(ROOT, 'benchmarks/results');
  mkdirSync(out, { recursive: true });
  const file = path.join(out, 'etcd-latest.json');
  writeFileSync(file, `${JSON.stringify({ ...report, runtimeS }, null, 2)}\n`);
  console.log(`results: ${path.relative(ROOT, file)}`);
}

await runBenchmark(main, () => {
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
});
