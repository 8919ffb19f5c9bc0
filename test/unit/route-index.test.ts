import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS } from '../../src/config/load.ts';
import type { RouteConfig, RouteMatch } from '../../src/config/types.ts';
import { findRoute, type RequestFacts, sortRoutes } from '../../src/routing/match.ts';
import { prefixMatches } from '../../src/routing/path.ts';
import { prefixHash, RouteIndex } from '../../src/routing/route-index.ts';
import { type RouteEntry, RouteTable } from '../../src/routing/table.ts';

function route(name: string, match: RouteMatch): RouteConfig {
  return {
    ...DEFAULTS.routeDefaults,
    name,
    match,
    service: 'svc',
    stripPrefix: false,
    loadBalancer: 'round-robin',
    tags: [],
    source: 'yaml',
  };
}

function facts(path: string, extra: Partial<RequestFacts> = {}): RequestFacts {
  return { path, host: 'gw.test', method: 'GET', headers: {}, ...extra };
}

function nameOf(found: RouteConfig | undefined): string | undefined {
  return found?.name;
}

describe('RouteIndex examples', () => {
  it('prefers the longest matching prefix regardless of declaration order', () => {
    const routes = [route('root', { pathPrefix: '/' }), route('api', { pathPrefix: '/api' }), route('v1', { pathPrefix: '/api/v1' })];
    const index = new RouteIndex(routes);
    assert.equal(nameOf(index.find(facts('/api/v1/users'))), 'v1');
    assert.equal(nameOf(index.find(facts('/api/v2'))), 'api');
    assert.equal(nameOf(index.find(facts('/other'))), 'root');
    assert.equal(nameOf(index.find(facts('/'))), 'root');
  });

  it('matches only at segment boundaries', () => {
    const index = new RouteIndex([route('api', { pathPrefix: '/api' }), route('slash', { pathPrefix: '/ap/' })]);
    assert.equal(nameOf(index.find(facts('/api'))), 'api');
    assert.equal(nameOf(index.find(facts('/api/'))), 'api');
    assert.equal(nameOf(index.find(facts('/api/x'))), 'api');
    assert.equal(index.find(facts('/apix')), undefined);
    assert.equal(index.find(facts('/ap')), undefined, "'/ap/' needs the slash");
    assert.equal(nameOf(index.find(facts('/ap/'))), 'slash');
    assert.equal(nameOf(index.find(facts('/ap/i'))), 'slash');
  });

  it('lets a trailing-slash prefix match a longer path but not the bare segment', () => {
    const index = new RouteIndex([route('bare', { pathPrefix: '/a' }), route('slash', { pathPrefix: '/a/' })]);
    assert.equal(nameOf(index.find(facts('/a/b'))), 'slash');
    assert.equal(nameOf(index.find(facts('/a/'))), 'slash');
    assert.equal(nameOf(index.find(facts('/a'))), 'bare');
  });

  it('falls through to a shorter prefix when filters reject the longer one', () => {
    const routes = [
      route('catch-all', { pathPrefix: '/' }),
      route('api', { pathPrefix: '/api' }),
      route('api-post', { pathPrefix: '/api/orders', methods: ['POST'] }),
      route('api-host', { pathPrefix: '/api/orders', host: 'admin.test' }),
      route('api-header', { pathPrefix: '/api/orders', headers: { 'x-tenant': 'blue' } }),
    ];
    const index = new RouteIndex(routes);
    assert.equal(nameOf(index.find(facts('/api/orders/1', { method: 'POST' }))), 'api-post');
    assert.equal(nameOf(index.find(facts('/api/orders/1', { host: 'admin.test' }))), 'api-host');
    assert.equal(nameOf(index.find(facts('/api/orders/1', { headers: { 'x-tenant': ['red', 'blue'] } }))), 'api-header');
    assert.equal(nameOf(index.find(facts('/api/orders/1'))), 'api');
    assert.equal(nameOf(index.find(facts('/x', { method: 'DELETE' }))), 'catch-all');
  });

  it('keeps declaration order among routes with the same prefix', () => {
    const first = route('first', { pathPrefix: '/api' });
    const second = route('second', { pathPrefix: '/api' });
    assert.equal(new RouteIndex([first, second]).find(facts('/api/x')), first);
    assert.equal(new RouteIndex([second, first]).find(facts('/api/x')), second);
  });

  it('tells apart prefixes of equal length and equal hash', () => {
    // Found by brute force; the assertion keeps this test honest if the hash function changes.
    const [a, b] = ['/0y9ql9zz', '/b9eh4hv8'];
    assert.equal(prefixHash(a, a.length), prefixHash(b, b.length));
    const first = route('a', { pathPrefix: a });
    const second = route('b', { pathPrefix: b });
    const index = new RouteIndex([first, second]);
    assert.equal(index.find(facts(`${a}/x`)), first);
    assert.equal(index.find(facts(`${b}/x`)), second);
    assert.equal(new RouteIndex([first]).find(facts(b)), undefined);
  });

  it('answers undefined with no routes or no match', () => {
    assert.equal(new RouteIndex([]).find(facts('/a')), undefined);
    assert.equal(new RouteIndex([route('b', { pathPrefix: '/b' })]).find(facts('/a/b')), undefined);
  });

  it('backs RouteTable, whose entries stay in sorted order', () => {
    const routes = [route('root', { pathPrefix: '/' }), route('api', { pathPrefix: '/api' })];
    const entries: RouteEntry[] = routes.map((r) => ({ route: r }) as unknown as RouteEntry);
    const table = new RouteTable(entries);
    assert.deepEqual(table.entries.map((entry) => entry.route.name), ['api', 'root']);
    assert.equal(table.find(facts('/api/x')), entries[1]);
    assert.equal(table.find(facts('/x')), entries[0]);
  });
});

// A small alphabet so that prefixes collide, nest and sit next to non-aligned neighbours ('/ap' vs '/api').
const segment = fc.constantFrom('a', 'ab', 'ap', 'api', 'v1', '');
const segmentsPath = fc
  .tuple(fc.array(segment, { maxLength: 3 }), fc.boolean())
  .map(([segments, trailing]) => '/' + segments.join('/') + (trailing && segments.length > 0 ? '/' : ''));
// Mostly rooted prefixes; now and then '' or an unrooted one, which the schema refuses but the index must still agree on.
const prefixArb = fc.oneof(
  { weight: 12, arbitrary: segmentsPath },
  { weight: 1, arbitrary: fc.constant('/') },
  { weight: 1, arbitrary: fc.constantFrom('', 'api', 'a/') },
);
// Appended to a route's own prefix: aligned continuations, the bare prefix, and non-aligned ones ('/api' -> '/apix').
const suffixArb = fc.constantFrom('', '/', '/a', '/api/v1', '/ab/', 'x', 'i', 'b/a', '//a');
// Either a route's prefix plus a suffix (so lookups often hit and nest), or an independent path, rarely unrooted or empty.
const pathChoice = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('derived' as const), pick: fc.nat(), suffix: suffixArb }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('free' as const), path: segmentsPath }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('free' as const), path: fc.constantFrom('', 'api', 'api/v1', 'a/') }) },
);
type PathChoice = typeof pathChoice extends fc.Arbitrary<infer T> ? T : never;

function pathFor(choice: PathChoice, routes: readonly RouteConfig[]): string {
  if (choice.kind === 'free') return choice.path;
  const base = routes.length === 0 ? '/' : routes[choice.pick % routes.length]!.match.pathPrefix;
  return base + choice.suffix;
}

const hosts = ['gw.test', 'admin.test'];
const methods = ['GET', 'POST', 'PUT'];
const headerNames = ['x-a', 'x-b'];
const headerValues = ['1', '2'];

// Each filter is present on about a third of routes, so lookups both pass and fall through.
const sometimes = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

const matchArb: fc.Arbitrary<RouteMatch> = fc.record({
  pathPrefix: prefixArb,
  host: sometimes(fc.constantFrom(...hosts)),
  methods: sometimes(fc.subarray(methods)),
  headers: sometimes(fc.dictionary(fc.constantFrom(...headerNames), fc.constantFrom(...headerValues), { maxKeys: 2 })),
});

const requestArb = fc.record({
  path: pathChoice,
  host: fc.constantFrom(...hosts, 'other.test'),
  method: fc.constantFrom(...methods, 'DELETE'),
  headers: fc.dictionary(
    fc.constantFrom(...headerNames),
    fc.oneof(fc.constantFrom(...headerValues), fc.subarray(headerValues), fc.constant(undefined)),
    { maxKeys: 2 },
  ),
});

describe('RouteIndex property', () => {
  it('answers the same route object as the sorted linear scan', () => {
    const seen = { requests: 0, misses: 0, rootHits: 0, deeperHits: 0, fallThroughs: 0 };
    fc.assert(
      fc.property(fc.array(matchArb, { maxLength: 25 }), fc.array(requestArb, { minLength: 1, maxLength: 8 }), (matches, requests) => {
        const routes = matches.map((match, i) => route(`r${i}`, match));
        const sorted = sortRoutes(routes);
        const index = new RouteIndex(routes);
        for (const choice of requests) {
          const request: RequestFacts = { ...choice, path: pathFor(choice.path, routes) };
          const expected = findRoute(sorted, request);
          assert.equal(index.find(request), expected, `path ${JSON.stringify(request.path)}: want ${expected?.name}`);
          seen.requests++;
          if (expected === undefined) seen.misses++;
          else if (expected.match.pathPrefix.length <= 1) seen.rootHits++;
          else seen.deeperHits++;
          // A longer prefix matched the path but its filters sent the lookup on to a shorter one.
          if (expected && sorted.some((r) => r.match.pathPrefix.length > expected.match.pathPrefix.length && prefixMatches(request.path, r.match.pathPrefix))) {
            seen.fallThroughs++;
          }
        }
      }),
      { numRuns: 5000 },
    );
    if (process.env['ROUTE_INDEX_STATS']) console.log(seen);
    // The generators must exercise every outcome, or agreement would prove little.
    const share = (n: number) => n / seen.requests;
    assert.ok(share(seen.misses) > 0.05, `misses ${seen.misses}/${seen.requests}`);
    assert.ok(share(seen.rootHits) > 0.05, `root hits ${seen.rootHits}/${seen.requests}`);
    assert.ok(share(seen.deeperHits) > 0.1, `deeper hits ${seen.deeperHits}/${seen.requests}`);
    assert.ok(share(seen.fallThroughs) > 0.02, `fall-throughs ${seen.fallThroughs}/${seen.requests}`);
  });
});
