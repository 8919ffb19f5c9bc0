/**
 * Property tests for path normalization and route selection: a raw request path can only reach the
 * route its normalized form selects, and what goes upstream carries no traversal.
 *
 * The references below are written independently of src/routing: `referenceNormalize` models the
 * documented behaviour segment by segment, `rfcRemoveDotSegments` is RFC 3986 §5.2.4 step by step
 * (input buffer / output buffer), and `referenceRoute` picks a route by brute force.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS } from '../../src/config/load.ts';
import type { RouteConfig, RouteMatch } from '../../src/config/types.ts';
import { findRoute, type RequestFacts, sortRoutes } from '../../src/routing/match.ts';
import { normalizePath, prefixMatches, stripPathPrefix } from '../../src/routing/path.ts';
import { RouteIndex } from '../../src/routing/route-index.ts';
import { type RouteEntry, RouteTable } from '../../src/routing/table.ts';

// ---------------------------------------------------------------------------------------------
// References

/** RFC 3986 §5.2.4 remove_dot_segments, transcribed rule by rule (clamps at the root, keeps empty segments). */
function rfcRemoveDotSegments(path: string): string {
  let input = path;
  let output = '';
  const removeLastOutputSegment = (): void => {
    const at = output.lastIndexOf('/');
    output = at === -1 ? '' : output.slice(0, at);
  };
  while (input.length > 0) {
    if (input.startsWith('../')) input = input.slice(3); // A
    else if (input.startsWith('./')) input = input.slice(2); // A
    else if (input.startsWith('/./')) input = input.slice(2); // B: "/./" -> "/"
    else if (input === '/.') input = '/'; // B
    else if (input.startsWith('/../')) {
      input = input.slice(3); // C: "/../" -> "/"
      removeLastOutputSegment();
    } else if (input === '/..') {
      input = '/'; // C
      removeLastOutputSegment();
    } else if (input === '.' || input === '..') input = ''; // D
    else {
      // E: move the first segment (with its leading "/", if any) to the output.
      const next = input.indexOf('/', input.startsWith('/') ? 1 : 0);
      const end = next === -1 ? input.length : next;
      output += input.slice(0, end);
      input = input.slice(end);
    }
  }
  return output;
}

/** Decodes only %2e (either case), the one escape normalizePath resolves. */
function decodeDots(path: string): string {
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === '%' && path[i + 1] === '2' && (path[i + 2] === 'e' || path[i + 2] === 'E')) {
      out += '.';
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * Strict reference: decode %2e, resolve dot segments by RFC 3986 §5.2.4 on the whole path (empty
 * segments count as segments, as in the RFC and WHATWG URL), and only then collapse runs of '/'.
 */
function rfcResolve(rawPath: string): string {
  return rfcRemoveDotSegments(decodeDots(rawPath)).replace(/\/{2,}/g, '/');
}

/**
 * The documented behaviour of normalizePath, modelled on segments: refuse non-rooted paths,
 * backslashes and encoded slashes; decode %2e; drop empty segments except a trailing one; resolve
 * '.' and '..' (refusing a climb above the root); refuse any other segment beginning or ending
 * with '..'. A trailing '.' or '..' leaves a trailing slash, as RFC 3986 does.
 */
function referenceNormalize(rawPath: string): string | undefined {
  if (!rawPath.startsWith('/')) return undefined;
  if (rawPath.includes('\\')) return undefined;
  const lower = rawPath.toLowerCase();
  if (lower.includes('%2f') || lower.includes('%5c')) return undefined;
  const parts = decodeDots(rawPath).slice(1).split('/');
  // Pass 1, RFC 3986 §5.2.4: every segment counts, empty ones included.
  const resolved: string[] = [];
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    if (part === '..') {
      if (resolved.length === 0) return undefined;
      resolved.pop();
    } else if (part !== '.') {
      if (part.startsWith('..') || part.endsWith('..')) return undefined;
      resolved.push(part);
      continue;
    }
    if (last) resolved.push(''); // a final "." or ".." leaves a trailing slash
  }
  // Pass 2: duplicate slashes collapse, a trailing one stays.
  const named = resolved.filter((part) => part !== '');
  const trailing = resolved.length > 0 && resolved[resolved.length - 1] === '' && named.length > 0;
  return '/' + named.join('/') + (trailing ? '/' : '');
}

/** Segment-boundary prefix test, phrased differently from prefixMatches. */
function referencePrefixMatch(path: string, prefix: string): boolean {
  if (prefix.endsWith('/')) return path.startsWith(prefix);
  return path === prefix || path.startsWith(prefix + '/');
}

function referenceFilters(route: RouteConfig, request: RequestFacts): boolean {
  const m = route.match;
  if (m.host !== undefined && m.host !== request.host) return false;
  if (m.methods !== undefined && !m.methods.some((x) => x === request.method)) return false;
  for (const [name, wanted] of Object.entries(m.headers ?? {})) {
    const actual = request.headers[name];
    const ok = Array.isArray(actual) ? actual.some((v) => v === wanted) : actual === wanted;
    if (!ok) return false;
  }
  return true;
}

/** Brute force: among the matching routes, the longest prefix wins, then the first declared. */
function referenceRoute(routes: readonly RouteConfig[], request: RequestFacts): RouteConfig | undefined {
  let best: RouteConfig | undefined;
  for (const route of routes) {
    if (!referencePrefixMatch(request.path, route.match.pathPrefix) || !referenceFilters(route, request)) continue;
    if (best === undefined || route.match.pathPrefix.length > best.match.pathPrefix.length) best = route;
  }
  return best;
}

/** What public-server.ts sends upstream for a normalized path and its route. */
function upstreamPathFor(route: RouteConfig, path: string): string {
  return route.stripPrefix ? stripPathPrefix(path, route.match.pathPrefix) : path;
}

function segmentsOf(path: string): string[] {
  return path.split('/').slice(1);
}

// ---------------------------------------------------------------------------------------------
// Generators

const TRICKY_SEGMENTS = [
  '.', '..', '%2e', '%2E', '%2e%2e', '%2E%2e', '%2e%2E', '.%2e', '%2e.', '.%2E', '...', '%2e%2e%2e',
  '', '', 'a', 'b', 'x', 'admin', 'api', 'admin.', '.admin', '..x', 'x..', 'a..b', '.a', 'a.', '..;',
  '%2f', '%2F', '%5c', '%5C', 'a%2fb', '%2e%2e%2f', '\\', 'a\\b', '..\\',
  '%', '%2', '%e', '%25', '%252e', '%252f', '%%2e2e', '%2%2ee', '%41', '%61dmin', '%00', '%20',
  ';', 'a;b', 'é', '日本', '\u{1F600}', '~', '+',
];
const PATH_CHARS = ['a', 'b', '.', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', '\\', '/', ';', '~'];

const segmentArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...TRICKY_SEGMENTS) },
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...PATH_CHARS), maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
);

/** Mostly rooted paths built from tricky segments; some with doubled/trailing slashes, some unrooted or random. */
const rawPathArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .tuple(fc.constantFrom('/', '/', '/', '//', '/./', '/%2e/'), fc.array(segmentArb, { maxLength: 9 }), fc.constantFrom('', '', '/', '//', '/.', '/..'))
      .map(([lead, segments, tail]) => lead + segments.join('/') + tail),
  },
  { weight: 1, arbitrary: fc.array(segmentArb, { maxLength: 6 }).map((s) => s.join('/')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

const PREFIX_SEGMENTS = ['a', 'b', 'x', 'admin', 'api', 'admin.', '.a', 'a.', 'a..b', 'é', '%41', '%20', ';'];
/** Route prefixes: from the same alphabet as the paths, plus a few the schema allows but no normalized path can match. */
const prefixArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.constant('/') },
  {
    weight: 10,
    arbitrary: fc
      .tuple(fc.array(fc.constantFrom(...PREFIX_SEGMENTS), { minLength: 1, maxLength: 3 }), fc.boolean())
      .map(([segments, slash]) => '/' + segments.join('/') + (slash ? '/' : '')),
  },
  { weight: 1, arbitrary: fc.constantFrom('/ad', '/adm', '/a/../admin', '//admin', '/%2e%2e/admin', '/a/./b', '/admin/..', '/a//') },
);

const HOSTS = ['gw.test', 'other.test'];
const METHODS = ['GET', 'POST', 'PUT'];

const matchArb: fc.Arbitrary<RouteMatch> = fc
  .record({
    pathPrefix: prefixArb,
    host: fc.option(fc.constantFrom(...HOSTS), { nil: undefined, freq: 3 }),
    methods: fc.option(fc.uniqueArray(fc.constantFrom(...METHODS), { minLength: 1 }), { nil: undefined, freq: 3 }),
    headers: fc.option(fc.constantFrom<Record<string, string>>({ 'x-k': 'v' }, { 'x-k': 'w' }, { 'x-k': 'v', 'x-j': '1' }), { nil: undefined, freq: 3 }),
  })
  .map(({ pathPrefix, host, methods, headers }) => ({
    pathPrefix,
    ...(host === undefined ? {} : { host }),
    ...(methods === undefined ? {} : { methods }),
    ...(headers === undefined ? {} : { headers }),
  }));

/** A route as generated: only what matters for selection, so counterexamples stay readable. */
interface RouteSpec {
  readonly match: RouteMatch;
  readonly stripPrefix: boolean;
}

const routeSpecsArb: fc.Arbitrary<RouteSpec[]> = fc.array(fc.record({ match: matchArb, stripPrefix: fc.boolean() }), { maxLength: 12 });

function toRoutes(specs: readonly RouteSpec[]): RouteConfig[] {
  return specs.map(({ match, stripPrefix }, i) => ({
    ...DEFAULTS.routeDefaults,
    name: `r${i}`,
    match,
    service: 'svc',
    stripPrefix,
    loadBalancer: 'round-robin' as const,
    tags: [],
    source: 'yaml' as const,
  }));
}

const requestExtrasArb = fc.record({
  host: fc.constantFrom('', ...HOSTS),
  method: fc.constantFrom(...METHODS),
  headers: fc.constantFrom<RequestFacts['headers']>({}, { 'x-k': 'v' }, { 'x-k': 'w' }, { 'x-k': ['w', 'v'] }, { 'x-k': 'v', 'x-j': '1' }, { 'x-j': '1' }),
});

/** Makes a RouteTable from bare routes; the table only reads entry.route. */
function tableOf(routes: readonly RouteConfig[]): RouteTable {
  const entries = routes.map((route) => ({ route, pool: {}, balancer: {}, budget: {} }) as unknown as RouteEntry);
  return new RouteTable(entries);
}

const RUNS = { path: 20_000, routes: 4_000 };

// ---------------------------------------------------------------------------------------------
// Properties

describe('normalizePath properties', () => {
  it('is idempotent on its output', () => {
    fc.assert(
      fc.property(rawPathArb, (raw) => {
        const once = normalizePath(raw);
        if (once === undefined) return;
        assert.equal(normalizePath(once), once);
      }),
      { numRuns: RUNS.path },
    );
  });

  it('outputs a rooted path with no empty inner, dot, encoded-dot/slash or backslash segments', () => {
    fc.assert(
      fc.property(rawPathArb, (raw) => {
        const out = normalizePath(raw);
        if (out === undefined) return;
        assert.ok(out.startsWith('/'), `must start with "/": ${out}`);
        assert.ok(!out.includes('//'), `must not contain "//": ${out}`);
        assert.ok(!/%2e|%2f|%5c/i.test(out), `must not contain %2e/%2f/%5c: ${out}`);
        assert.ok(!out.includes('\\'), `must not contain a backslash: ${out}`);
        for (const segment of segmentsOf(out)) {
          assert.ok(segment !== '.' && segment !== '..', `dot segment left in ${out}`);
          assert.ok(!segment.startsWith('..') && !segment.endsWith('..'), `".." segment edge left in ${out}`);
        }
        // Nothing an RFC 3986 resolver (the upstream's, say) would still change.
        assert.equal(rfcRemoveDotSegments(out), out);
      }),
      { numRuns: RUNS.path },
    );
  });

  it('agrees exactly with the segment-by-segment reference model', () => {
    fc.assert(
      fc.property(rawPathArb, (raw) => {
        assert.equal(normalizePath(raw), referenceNormalize(raw), `raw ${JSON.stringify(raw)}`);
      }),
      { numRuns: RUNS.path },
    );
  });

  it('refuses what it documents it refuses', () => {
    fc.assert(
      fc.property(rawPathArb, (raw) => {
        const out = normalizePath(raw);
        if (!raw.startsWith('/') || raw.includes('\\') || /%2f|%5c/i.test(raw)) assert.equal(out, undefined, JSON.stringify(raw));
        // A climb above the root, counted on every segment after decoding (empty ones too, as RFC 3986 does), is refused.
        let depth = 0;
        let climbs = false;
        for (const segment of decodeDots(raw).split('/').slice(1)) {
          if (segment === '..') depth -= 1;
          else if (segment !== '.') depth += 1;
          if (depth < 0) climbs = true;
        }
        if (climbs) assert.equal(out, undefined, JSON.stringify(raw));
      }),
      { numRuns: RUNS.path },
    );
  });

  it('never yields a path under a protected prefix unless strict RFC 3986 resolution does too (paths without empty segments)', () => {
    const protectedArb = fc.constantFrom('/admin', '/admin/', '/a', '/api/x');
    const noEmptySegments = rawPathArb.filter((raw) => !raw.includes('//'));
    fc.assert(
      fc.property(noEmptySegments, protectedArb, (raw, prefix) => {
        const out = normalizePath(raw);
        if (out === undefined || !prefixMatches(out, prefix)) return;
        const reference = rfcResolve(raw);
        assert.ok(referencePrefixMatch(reference, prefix), `${JSON.stringify(raw)} -> ${out} is under ${prefix}, RFC 3986 gives ${reference}`);
      }),
      { numRuns: RUNS.path },
    );
  });

  // Empty segments count when ".." is resolved (RFC 3986 §5.2.4, as WHATWG URL and front proxies do):
  // "/x//../admin" is "/x/admin", never "/admin", so nothing in front can be fooled about the route.
  it('never yields a path under a protected prefix unless strict RFC 3986 resolution does too (all paths)', () => {
    fc.assert(
      fc.property(rawPathArb, fc.constantFrom('/admin', '/admin/', '/a'), (raw, prefix) => {
        const out = normalizePath(raw);
        if (out === undefined || !prefixMatches(out, prefix)) return;
        const reference = rfcResolve(raw);
        assert.ok(referencePrefixMatch(reference, prefix), `${JSON.stringify(raw)} -> ${out} is under ${prefix}, RFC 3986 gives ${reference}`);
      }),
      { numRuns: RUNS.path },
    );
  });
});

describe('route selection properties', () => {
  it('the index, the linear scan, the RouteTable and a brute-force reference pick the same route', () => {
    fc.assert(
      fc.property(routeSpecsArb, fc.array(fc.tuple(rawPathArb, requestExtrasArb), { minLength: 1, maxLength: 8 }), (specs, requests) => {
        const routes = toRoutes(specs);
        const index = new RouteIndex(routes);
        const sorted = sortRoutes(routes);
        const table = tableOf(routes);
        for (const [raw, extras] of requests) {
          const path = normalizePath(raw);
          if (path === undefined) continue;
          const request: RequestFacts = { path, ...extras };
          const expected = referenceRoute(routes, request);
          assert.equal(findRoute(sorted, request), expected, `linear, path ${path}`);
          assert.equal(index.find(request), expected, `index, path ${path}`);
          assert.equal(table.find(request)?.route, expected, `table, path ${path}`);
        }
      }),
      { numRuns: RUNS.routes },
    );
  });

  it('a raw path reaches the route its normalized form selects, and only one whose prefix covers that form', () => {
    fc.assert(
      fc.property(routeSpecsArb, fc.array(fc.tuple(rawPathArb, requestExtrasArb), { minLength: 1, maxLength: 8 }), (specs, requests) => {
        const routes = toRoutes(specs);
        const table = tableOf(routes);
        for (const [raw, extras] of requests) {
          const path = normalizePath(raw);
          if (path === undefined) continue;
          const chosen = table.find({ path, ...extras })?.route;
          const again = normalizePath(path)!;
          assert.equal(table.find({ path: again, ...extras })?.route, chosen, `raw ${JSON.stringify(raw)}`);
          if (chosen !== undefined) {
            assert.ok(referencePrefixMatch(path, chosen.match.pathPrefix), `${path} routed to ${chosen.match.pathPrefix}`);
            // The reference model's resolution of the raw path is covered by the chosen prefix too.
            const resolved = referenceNormalize(raw);
            assert.ok(resolved !== undefined && referencePrefixMatch(resolved, chosen.match.pathPrefix), `raw ${JSON.stringify(raw)}`);
          }
        }
      }),
      { numRuns: RUNS.routes },
    );
  });

  it('the upstream path after stripPrefix is rooted, already normalized and carries no traversal', () => {
    fc.assert(
      fc.property(routeSpecsArb, fc.array(fc.tuple(rawPathArb, requestExtrasArb), { minLength: 1, maxLength: 8 }), (specs, requests) => {
        const routes = toRoutes(specs);
        const table = tableOf(routes);
        for (const [raw, extras] of requests) {
          const path = normalizePath(raw);
          if (path === undefined) continue;
          const route = table.find({ path, ...extras })?.route;
          if (route === undefined) continue;
          const upstream = upstreamPathFor(route, path);
          const where = `raw ${JSON.stringify(raw)} prefix ${route.match.pathPrefix} upstream ${upstream}`;
          assert.ok(upstream.startsWith('/'), where);
          assert.equal(normalizePath(upstream), upstream, where);
          assert.equal(rfcRemoveDotSegments(upstream), upstream, where);
          assert.ok(!segmentsOf(upstream).some((s) => s === '.' || s === '..'), where);
          if (route.stripPrefix) {
            // Stripping only removes whole leading segments: prefix base + upstream rebuilds the path.
            const base = route.match.pathPrefix.endsWith('/') ? route.match.pathPrefix.slice(0, -1) : route.match.pathPrefix;
            assert.ok(path === base + upstream || (upstream === '/' && path === base), where);
          }
        }
      }),
      { numRuns: RUNS.routes },
    );
  });

  it('every prefix-selected upstream path for every route is safe, not just the winning one', () => {
    // Exercises stripPathPrefix directly over all matching (path, prefix) pairs.
    fc.assert(
      fc.property(rawPathArb, prefixArb, (raw, prefix) => {
        const path = normalizePath(raw);
        if (path === undefined || !prefixMatches(path, prefix)) return;
        assert.equal(prefixMatches(path, prefix), referencePrefixMatch(path, prefix));
        const upstream = stripPathPrefix(path, prefix);
        assert.ok(upstream.startsWith('/'), `${path} - ${prefix} = ${upstream}`);
        assert.equal(normalizePath(upstream), upstream, `${path} - ${prefix} = ${upstream}`);
      }),
      { numRuns: RUNS.path },
    );
  });

  it('prefixMatches agrees with the reference on rooted paths', () => {
    fc.assert(
      fc.property(rawPathArb, prefixArb, (raw, prefix) => {
        const path = normalizePath(raw) ?? (raw.startsWith('/') ? raw : '/' + raw);
        assert.equal(prefixMatches(path, prefix), referencePrefixMatch(path, prefix), `${path} vs ${prefix}`);
      }),
      { numRuns: RUNS.path },
    );
  });
});

describe('reference sanity', () => {
  it('the references give the known answers', () => {
    assert.equal(rfcRemoveDotSegments('/a/b/c/./../../g'), '/a/g'); // RFC 3986 §5.2.4 example
    assert.equal(rfcRemoveDotSegments('mid/content=5/../6'), 'mid/6'); // RFC 3986 §5.2.4 example
    assert.equal(rfcRemoveDotSegments('/x//../admin'), '/x/admin');
    assert.equal(rfcRemoveDotSegments('/..'), '/');
    assert.equal(rfcResolve('/a/%2E%2e/b'), '/b');
    assert.equal(rfcResolve('//admin'), '/admin');
    assert.equal(rfcResolve('/x//../admin'), '/x/admin');
    assert.equal(referenceNormalize('/a//b/'), '/a/b/');
    assert.equal(referenceNormalize('/a/b/..'), '/a/');
    assert.equal(referenceNormalize('/..'), undefined);
    assert.equal(referenceNormalize('/a/..x'), undefined);
    assert.equal(referenceNormalize('/'), '/');
    assert.equal(referenceNormalize('//'), '/');
  });
});
