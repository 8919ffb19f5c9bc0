/**
 * `npm run bench`: the same autocannon load against
 *   (a) one upstream directly,
 *   (b) a bare @fastify/http-proxy with one static upstream,
 *   (c) fast-gateway 3.4.7 with one static upstream,
 *   (d) waygate (bin/waygate.js, built dist/) round-robin over 3 static instances.
 * Env: BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 50), BENCH_WARMUP (s, default 3),
 *      BENCH_ROUNDS (default 1; >1 interleaves a,b,c,d,a,b,... and reports each target's median run),
 *      BENCH_SKIP_BUILD=1 to use the existing dist/ without `npm run build`.
 *
 * Run with a role (`bare-proxy PORT UPSTREAM` / `fast-gateway PORT UPSTREAM`) this file is the
 * comparison proxy program, spawned by the bench as its own child process.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type Child,
  type LoadResult,
  cpuTimeMs,
  ROOT,
  envNumber,
  freePort,
  isMain,
  machineInfo,
  printTable,
  runLoad,
  spawnNode,
  startUpstreams,
  stopAll,
  stopChild,
  waitUntilReady,
} from './lib.ts';

const SELF = fileURLToPath(import.meta.url);
const TARGET_RATIO = 0.9;

// ───────────────────────────── child roles ─────────────────────────────

async function bareProxyMain(port: number, upstream: string): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const { default: httpProxy } = await import('@fastify/http-proxy');
  const app = Fastify({ logger: false });
  await app.register(httpProxy, { upstream });
  await app.listen({ host: '127.0.0.1', port });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

async function fastGatewayMain(port: number, upstream: string): Promise<void> {
  const { default: gateway } = await import('fast-gateway');
  // prefix '' with the default pathRegex '/*' forwards every path unchanged.
  const server = gateway({ routes: [{ prefix: '', target: upstream }] });
  await server.start(port, '127.0.0.1');
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

// ───────────────────────────── bench ─────────────────────────────

interface Target {
  readonly id: string;
  readonly label: string;
  /** Starts whatever sits between autocannon and the upstreams; returns the URL to load and the child to stop. */
  readonly start: () => Promise<{ url: string; child?: Child }>;
}

interface TargetResult extends Measured {
  readonly id: string;
  readonly label: string;
  /** req/s of every round, in order; the other fields come from the median round. */
  readonly rounds: number[];
}

interface Measured extends LoadResult {
  /** CPU microseconds per request spent by the proxy process (undefined for the direct target or off Linux). */
  readonly proxyCpuUsPerReq: number | undefined;
  readonly upstreamCpuUsPerReq: number | undefined;
}

/** The run with the median req/s (the lower middle one for an even count). */
function medianRun(runs: readonly Measured[]): Measured {
  const sorted = [...runs].sort((x, y) => x.reqPerSec - y.reqPerSec);
  const mid = sorted[Math.floor((sorted.length - 1) / 2)];
  if (!mid) throw new Error('no runs');
  return mid;
}

function ensureBuilt(): void {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  if (process.env.BENCH_SKIP_BUILD === '1') {
    if (!existsSync(cli)) throw new Error('dist/cli.js is missing; run `npm run build` (or unset BENCH_SKIP_BUILD)');
    return;
  }
  process.stdout.write('building waygate (npm run build) ...\n');
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status === 0) return;
  if (!existsSync(cli)) throw new Error('`npm run build` failed and dist/ has no previous build; fix the build first');
  process.stdout.write('WARNING: `npm run build` failed; benchmarking the existing dist/, which may be stale\n');
}

function waygateConfig(port: number, adminPort: number, instances: readonly string[]): string {
  return `server: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 0s, timeout: 5s }
registry:
  static:
    services:
      bench:
        instances: [${instances.map((url) => JSON.stringify(url)).join(', ')}]
routes:
  - name: bench
    match: { pathPrefix: / }
    service: bench
`;
}

const fmt = (value: number, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

async function bench(): Promise<void> {
  const durationS = envNumber('BENCH_DURATION', 10);
  const connections = envNumber('BENCH_CONNECTIONS', 50);
  const warmupS = envNumber('BENCH_WARMUP', 3);
  const rounds = Math.round(envNumber('BENCH_ROUNDS', 1));
  const machine = machineInfo();
  const loadBefore = os.loadavg()[0] ?? 0;
  process.stdout.write(`machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.platform}\n`);
  process.stdout.write(`load: autocannon, ${connections} connections, ${warmupS} s warm-up + ${durationS} s measured per target, pipelining 1, ${rounds} round(s)\n`);
  // Other work on the box skews every number; the 1-min load average makes that visible.
  process.stdout.write(`1-min load average before: ${loadBefore.toFixed(2)}\n\n`);

  ensureBuilt();

  // One upstream process hosting 3 listeners: a/b/c use the first, waygate balances over all three.
  const upstreams = await startUpstreams(3);
  const [single] = upstreams.urls;
  if (!single) throw new Error('no upstream started');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'waygate-bench-'));
  // 'exit' also runs when a signal handler ends the process early, unlike a finally block.
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

  /** Starts this file in a proxy role (b or c) as its own child, in front of the single upstream. */
  const startRoleProxy = async (role: 'bare-proxy' | 'fast-gateway') => {
    const port = await freePort();
    const child = spawnNode(role, ['--import', 'tsx', SELF, role, String(port), single], { ipc: true });
    const url = `http://127.0.0.1:${port}/`;
    await waitUntilReady(url, { child });
    return { url, child };
  };

  const targets: Target[] = [
    { id: 'a', label: '(a) upstream direct', start: async () => ({ url: `${single}/` }) },
    { id: 'b', label: '(b) @fastify/http-proxy, 1 upstream', start: () => startRoleProxy('bare-proxy') },
    { id: 'c', label: '(c) fast-gateway 3.4.7, 1 upstream', start: () => startRoleProxy('fast-gateway') },
    {
      id: 'd',
      label: '(d) waygate, 3 instances round-robin',
      start: async () => {
        const [port, adminPort] = [await freePort(), await freePort()];
        const file = path.join(tmp, 'waygate.yaml');
        writeFileSync(file, waygateConfig(port, adminPort, upstreams.urls));
        const child = spawnNode('waygate', ['bin/waygate.js', 'start', '--config', file], { env: { WAYGATE_LOG_LEVEL: 'warn' } });
        await waitUntilReady(`http://127.0.0.1:${adminPort}/health/ready`, { child });
        return { url: `http://127.0.0.1:${port}/`, child };
      },
    },
  ];

  const upstreamPid = upstreams.children[0]?.proc.pid;
  const perRequestUs = (before: number | undefined, after: number | undefined, requests: number) =>
    before === undefined || after === undefined || requests === 0 ? undefined : ((after - before) * 1000) / requests;

  const measure = async (target: Target, prefix: string): Promise<Measured> => {
    process.stdout.write(`${prefix}${target.label}: starting ... `);
    const { url, child } = await target.start();
    try {
      // Sanity: the target must answer 200 with the upstream's body before we load it.
      const probe = await fetch(url);
      const text = await probe.text();
      if (probe.status !== 200 || !text.includes('"service":"bench"')) throw new Error(`${target.label} answered ${probe.status}: ${text.slice(0, 200)}`);
      process.stdout.write('warm-up ... ');
      await runLoad({ url, connections, durationS: warmupS });
      process.stdout.write('measuring ... ');
      const proxyPid = child?.proc.pid;
      const [proxyBefore, upstreamBefore] = [cpuTimeMs(proxyPid), cpuTimeMs(upstreamPid)];
      const result = await runLoad({ url, connections, durationS });
      const [proxyAfter, upstreamAfter] = [cpuTimeMs(proxyPid), cpuTimeMs(upstreamPid)];
      process.stdout.write(`${fmt(result.reqPerSec)} req/s\n`);
      return {
        ...result,
        proxyCpuUsPerReq: perRequestUs(proxyBefore, proxyAfter, result.totalRequests),
        upstreamCpuUsPerReq: perRequestUs(upstreamBefore, upstreamAfter, result.totalRequests),
      };
    } finally {
      if (child) {
        await stopChild(child);
        // Shown after the fact so it does not break the progress line; duplicates collapsed.
        const said = [...new Set(child.tail)];
        if (said.length) process.stdout.write(`  ${child.name} output:\n${said.map((line) => `    ${line}`).join('\n')}\n`);
      }
    }
  };

  const runs = new Map<string, Measured[]>(targets.map((t) => [t.id, []]));
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const target of targets) runs.get(target.id)?.push(await measure(target, rounds > 1 ? `[round ${round}/${rounds}] ` : ''));
    }
  } finally {
    await stopAll();
  }

  const results: TargetResult[] = targets.map((t) => {
    const all = runs.get(t.id) ?? [];
    return { id: t.id, label: t.label, ...medianRun(all), rounds: all.map((r) => Math.round(r.reqPerSec)) };
  });
  const loadAfter = os.loadavg()[0] ?? 0;
  process.stdout.write(`\n1-min load average after: ${loadAfter.toFixed(2)}${rounds > 1 ? '; each row is the median round' : ''}\n`);
  printTable(
    [
      { header: 'target', align: 'left' },
      { header: 'req/s' },
      { header: 'p50 ms' },
      { header: 'p99 ms' },
      { header: 'errors' },
      { header: 'non-2xx' },
      { header: 'proxy CPU µs/req' },
      { header: 'upstream CPU µs/req' },
    ],
    results.map((r) => [
      r.label,
      fmt(r.reqPerSec),
      fmt(r.p50),
      fmt(r.p99),
      fmt(r.errors),
      fmt(r.non2xx),
      r.proxyCpuUsPerReq === undefined ? '-' : fmt(r.proxyCpuUsPerReq),
      r.upstreamCpuUsPerReq === undefined ? '-' : fmt(r.upstreamCpuUsPerReq),
    ]),
  );

  const rps = (id: string) => results.find((r) => r.id === id)?.reqPerSec ?? Number.NaN;
  const ratios = { 'd/b': rps('d') / rps('b'), 'd/c': rps('d') / rps('c'), 'd/a': rps('d') / rps('a') };
  process.stdout.write(`\nreq/s ratios: ${Object.entries(ratios).map(([k, v]) => `${k} = ${v.toFixed(3)}`).join(', ')}\n`);
  const cpu = (id: string) => results.find((r) => r.id === id)?.proxyCpuUsPerReq;
  const [cpuB, cpuD] = [cpu('b'), cpu('d')];
  if (cpuB !== undefined && cpuD !== undefined) {
    process.stdout.write(`proxy CPU per request: waygate / bare @fastify/http-proxy = ${(cpuD / cpuB).toFixed(2)}x (less sensitive to other load on the box than req/s)\n`);
  }
  const met = ratios['d/b'] >= TARGET_RATIO;
  process.stdout.write(`target: waygate >= ${TARGET_RATIO.toFixed(2)} x bare @fastify/http-proxy (d/b) -> ${met ? 'MET' : 'NOT MET'} (${ratios['d/b'].toFixed(3)})\n`);
  const failed = results.filter((r) => r.errors > 0 || r.non2xx > 0);
  if (failed.length) process.stdout.write(`note: errors or non-2xx answers in ${failed.map((r) => r.id).join(', ')}; their req/s are not comparable\n`);

  const outDir = path.join(ROOT, 'benchmarks', 'results');
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'proxy-latest.json');
  const report = {
    benchmark: 'proxy',
    date: new Date().toISOString(),
    machine,
    load: { tool: 'autocannon', connections, warmupS, durationS, pipelining: 1, rounds },
    loadAverage1m: { before: loadBefore, after: loadAfter },
    results,
    ratios,
    target: { metric: 'd/b req/s', threshold: TARGET_RATIO, met },
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(ROOT, out)}\n`);
}

if (isMain(import.meta.url)) {
  const [role, port, upstream] = process.argv.slice(2);
  if (role === 'bare-proxy' && port && upstream) await bareProxyMain(Number(port), upstream);
  else if (role === 'fast-gateway' && port && upstream) await fastGatewayMain(Number(port), upstream);
  else if (role === undefined) {
    try {
      await bench();
    } catch (error) {
      process.stderr.write(`\nbench failed: ${(error as Error).stack ?? String(error)}\n`);
      await stopAll();
      process.exitCode = 1;
    }
  } else {
    process.stderr.write('usage: proxy.ts [bare-proxy|fast-gateway PORT UPSTREAM_URL]\n');
    process.exitCode = 1;
  }
}
