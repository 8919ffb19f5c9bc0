/**
 * `npm run bench:routes`: cost of one route lookup, linear scan (findRoute over sortRoutes) against
 * RouteIndex, with 1, 1,000 and 5,000 routes. In-process, no network; a few seconds.
 *
 * Routes look like a Consul-fed table: `/svc-NNNN/api` (zero-padded, so every prefix has the same
 * length and the sorted order is declaration order), every 10th with a methods list, every 50th with
 * a host. Cases, all GET with host gw.local:
 *   first — `/svc-0000/api/users/42`: the first route in sorted order answers (best case for the scan)
 *   last  — the last route's prefix + `/users/42`: the scan reads every route first
 *   none  — `/unknown/api/users/42`: nothing matches; the scan reads every route
 *
 * Each sample times a calibrated batch (~BENCH_SAMPLE_MS ms) of identical lookups with
 * process.hrtime.bigint. Every round takes one sample of every (routes, case, implementation) cell,
 * in a fresh random order, with the three route counts of one case and implementation back to back;
 * the table shows each cell's median over BENCH_ROUNDS rounds. The target compares index costs at
 * 5,000 and 1 route as the median of per-round ratios, so machine-wide drift cancels out; the
 * control line applies the same ratio to the scan's 'first' case, whose work does not depend on size.
 *
 * Short samples and many rounds keep the medians steady on a shared machine, where a scheduler
 * time slice lost to another process spoils only the few samples it lands in.
 *
 * Env: BENCH_ROUNDS [101], BENCH_SAMPLE_MS [2].
 */
import { DEFAULTS } from '../src/config/load.ts';
import type { RouteConfig, RouteMatch } from '../src/config/types.ts';
import { findRoute, type RequestFacts, sortRoutes } from '../src/routing/match.ts';
import { RouteIndex } from '../src/routing/route-index.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 101);
const SAMPLE_MS = Number(process.env['BENCH_SAMPLE_MS'] ?? 2);
const SIZES = [1, 1_000, 5_000];
const CASES = ['first', 'last', 'none'] as const;
type CaseName = (typeof CASES)[number];

function svcPrefix(i: number): string {
  return `/svc-${String(i).padStart(4, '0')}/api`;
}

function makeRoutes(count: number): RouteConfig[] {
  const routes: RouteConfig[] = [];
  for (let i = 0; i < count; i++) {
    // Like the config loader's compact(): absent conditions are absent keys, not undefined ones.
    const match: { -readonly [K in keyof RouteMatch]: RouteMatch[K] } = { pathPrefix: svcPrefix(i) };
    if (i % 10 === 5) match.methods = ['GET', 'POST'];
    if (i % 50 === 25) match.host = `svc-${i}.internal`;
    routes.push({
      ...DEFAULTS.routeDefaults,
      name: `svc-${i}`,
      match,
      service: `svc-${i}`,
      stripPrefix: true,
      loadBalancer: 'round-robin',
      tags: [],
      source: 'consul-tags',
    });
  }
  return routes;
}

function requestFor(kind: CaseName, sorted: readonly RouteConfig[]): RequestFacts {
  const path =
    kind === 'first' ? `${sorted[0]!.match.pathPrefix}/users/42`
    : kind === 'last' ? `${sorted[sorted.length - 1]!.match.pathPrefix}/users/42`
    : '/unknown/api/users/42';
  // A flat string decoded from bytes, like the HTTP parser's; a template literal gives a cons string,
  // whose extra indirection lasts until some GC short-circuits it and so made hits bimodal across runs.
  const flat = Buffer.from(path, 'latin1').toString('latin1');
  return { path: flat, host: 'gw.local', method: 'GET', headers: { accept: 'application/json' } };
}

type Lookup = (request: RequestFacts) => RouteConfig | undefined;

interface Cell {
  readonly size: number;
  readonly kind: CaseName;
  readonly impl: 'linear' | 'index';
  readonly lookup: Lookup;
  readonly request: RequestFacts;
  iterations: number;
  readonly samples: number[];
}

// Folded into the output so the engine cannot drop lookups whose results go unused.
let sink = 0;

function runBatch(cell: Cell, iterations: number): bigint {
  const { lookup, request } = cell;
  let acc = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const found = lookup(request);
    acc += found === undefined ? 1 : found.name.length;
  }
  const elapsed = process.hrtime.bigint() - start;
  sink = (sink + acc) | 0;
  return elapsed;
}

/** Doubles the batch until it takes about SAMPLE_MS, which also warms the code up. */
function calibrate(cell: Cell): void {
  let iterations = 16;
  for (;;) {
    const ns = Number(runBatch(cell, iterations));
    if (ns >= SAMPLE_MS * 1e6 || iterations >= 1 << 26) {
      cell.iterations = Math.max(1, Math.round((iterations * SAMPLE_MS * 1e6) / ns));
      return;
    }
    iterations *= 2;
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

// Every table takes the first `size` of one set of route objects: with a set built per table, the
// table built first ran up to 30 % faster even where the work is identical (V8 object layout).
const allRoutes = makeRoutes(Math.max(...SIZES));
const cells: Cell[] = [];
for (const size of SIZES) {
  const routes = allRoutes.slice(0, size);
  const sorted = sortRoutes(routes);
  const index = new RouteIndex(routes);
  const linear: Lookup = (request) => findRoute(sorted, request);
  const indexed: Lookup = (request) => index.find(request);
  for (const kind of CASES) {
    const request = requestFor(kind, sorted);
    // Both must give the same answer, and the case must be what it claims to be.
    const want = kind === 'none' ? undefined : kind === 'first' ? sorted[0] : sorted[sorted.length - 1];
    if (linear(request) !== want || indexed(request) !== want) throw new Error(`setup: ${size} routes, case ${kind} answers differ`);
    cells.push({ size, kind, impl: 'linear', lookup: linear, request, iterations: 0, samples: [] });
    cells.push({ size, kind, impl: 'index', lookup: indexed, request, iterations: 0, samples: [] });
  }
}

for (const cell of cells) calibrate(cell);
for (let round = 0; round < ROUNDS; round++) {
  // Cells compared with each other run back to back (sizes within a case and implementation), in a fresh order each round.
  for (const kind of shuffle([...CASES])) {
    for (const impl of shuffle(['linear', 'index'] as const)) {
      for (const cell of shuffle(cells.filter((c) => c.kind === kind && c.impl === impl))) {
        const ns = Number(runBatch(cell, cell.iterations));
        cell.samples.push(ns / cell.iterations / 1000);
      }
    }
  }
}

function cellFor(size: number, kind: CaseName, impl: Cell['impl']): Cell {
  return cells.find((c) => c.size === size && c.kind === kind && c.impl === impl)!;
}

function usFor(size: number, kind: CaseName, impl: Cell['impl']): number {
  return median(cellFor(size, kind, impl).samples);
}

/** Median over rounds of µs at 5,000 routes / at 1 route, each ratio from one round's adjacent samples. */
function growth(kind: CaseName, impl: Cell['impl'] = 'index'): number {
  const many = cellFor(5_000, kind, impl).samples;
  const one = cellFor(1, kind, impl).samples;
  return median(many.map((us, round) => us / one[round]!));
}

const fmt = (us: number) => (us >= 10 ? us.toFixed(1) : us >= 1 ? us.toFixed(2) : us.toFixed(3));
const rows = [['routes', 'case', 'linear µs', 'index µs', 'ratio']];
for (const size of SIZES) {
  for (const kind of CASES) {
    const linear = usFor(size, kind, 'linear');
    const index = usFor(size, kind, 'index');
    rows.push([size.toLocaleString('en-US'), kind, fmt(linear), fmt(index), `${(linear / index).toFixed(1)}x`]);
  }
}
const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
const line = (row: string[]) => `| ${row.map((cell, col) => (col < 2 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join(' | ')} |`;
console.log(`route lookup, median of ${ROUNDS} rounds (ratio = linear / index)\n`);
console.log(line(rows[0]!));
console.log(`|${widths.map((w, col) => (col < 2 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`);
for (const row of rows.slice(1)) console.log(line(row));

// Target: the index costs the same at 5,000 routes as at 1, in every case.
const growths = CASES.map((kind) => `${kind} ${growth(kind).toFixed(2)}x`).join(', ');
const worst = Math.max(...CASES.map((kind) => growth(kind)));
const verdict = worst <= 1.1 ? 'PASS' : 'FAIL';
console.log(`\ntarget: index lookup at 5,000 routes within 1.1x of 1 route — ${growths}: ${verdict}`);
// The scan's 'first' case does identical work at every size, so its growth is this machine's noise floor.
console.log(`control: linear 'first' (same work at every size) at 5,000 vs 1 route — ${growth('first', 'linear').toFixed(2)}x`);
console.log(`(checksum ${sink})`);
