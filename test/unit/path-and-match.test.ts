import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS } from '../../src/config/load.ts';
import type { RouteConfig, RouteMatch } from '../../src/config/types.ts';
import { findRoute, hostWithoutPort, type RequestFacts, routeMatches, sortRoutes } from '../../src/routing/match.ts';
import { normalizePath, prefixMatches, stripPathPrefix } from '../../src/routing/path.ts';

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

describe('normalizePath', () => {
  const cases: Array<[string, string | undefined]> = [
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a/b/', '/a/b/'],
    ['/a/./b', '/a/b'],
    ['/a/../b', '/b'],
    ['/a/b/../../c', '/c'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..', '/'],
    ['//a//b', '/a/b'],
    ['/hello/../admin', '/admin'],
    // encoded dots are resolved like plain ones
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E%2E/b', '/b'],
    ['/a/.%2e/b', '/b'],
    ['/a/%2e./b', '/b'],
    ['/a/%2e/b', '/a/b'],
    ['/hello/%2e%2e/admin', '/admin'],
    // an empty segment is a segment when ".." is resolved (RFC 3986 §5.2.4); slashes collapse afterwards
    ['/x//../admin', '/x/admin'],
    ['/a/b//..', '/a/b/'],
    ['//..', '/'],
    // other escapes are left alone
    ['/a%20b/c', '/a%20b/c'],
    ['/a/a..b', '/a/a..b'],
    ['/a/[...slug]', '/a/[...slug]'],
    ['/a/.b/c.', '/a/.b/c.'],
    // segments beginning or ending with ".." are refused (an upstream or library may read them as traversal)
    ['/a/...', undefined],
    ['/a/..b', undefined],
    ['/a/b..', undefined],
    ['/a/b../c', undefined],
    ['/a/%2e%2eb', undefined],
    // climbing above the root
    ['/..', undefined],
    ['/../a', undefined],
    ['/a/../..', undefined],
    ['/a/../../b', undefined],
    ['/%2e%2e/a', undefined],
    ['/a/%2e%2e/%2e%2e/b', undefined],
    // encoded slash / backslash, raw backslash
    ['/a%2fb', undefined],
    ['/a%2Fb', undefined],
    ['/a/%2e%2e%2fb', undefined],
    ['/a%5cb', undefined],
    ['/a%5C..%5Cb', undefined],
    ['/a\\..\\b', undefined],
    // not an origin-form path
    ['', undefined],
    ['a/b', undefined],
    ['*', undefined],
    ['http://x/a', undefined],
  ];
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)} -> ${expected === undefined ? 'rejected' : JSON.stringify(expected)}`, () => {
      assert.equal(normalizePath(input), expected);
    });
  }

  it('is idempotent on its own output', () => {
    for (const [input] of cases) {
      const once = normalizePath(input);
      if (once !== undefined) assert.equal(normalizePath(once), once, input);
    }
  });
});

describe('prefixMatches', () => {
  const cases: Array<[string, string, boolean]> = [
    ['/hello', '/hello', true],
    ['/hello/', '/hello', true],
    ['/hello/x', '/hello', true],
    ['/hello/x/y', '/hello', true],
    ['/helloworld', '/hello', false],
    ['/hello-x', '/hello', false],
    ['/hell', '/hello', false],
    ['/Hello', '/hello', false],
    ['/other', '/hello', false],
    ['/', '/', true],
    ['/anything/at/all', '/', true],
    ['/hello/x', '/hello/', true],
    ['/api/v2', '/api/v2', true],
    ['/api/v2x', '/api/v2', false],
  ];
  for (const [path, prefix, expected] of cases) {
    it(`${path} ${expected ? 'matches' : 'does not match'} ${prefix}`, () => {
      assert.equal(prefixMatches(path, prefix), expected);
    });
  }
});

describe('stripPathPrefix', () => {
  const cases: Array<[string, string, string]> = [
    ['/hello/x', '/hello', '/x'],
    ['/hello/x/y', '/hello', '/x/y'],
    ['/hello', '/hello', '/'],
    ['/hello/', '/hello', '/'],
    ['/hello/x', '/hello/', '/x'],
    ['/x', '/', '/x'],
    ['/', '/', '/'],
    ['/api/v2/users', '/api/v2', '/users'],
  ];
  for (const [path, prefix, expected] of cases) {
    it(`${path} - ${prefix} = ${expected}`, () => {
      assert.equal(stripPathPrefix(path, prefix), expected);
    });
  }
});

describe('sortRoutes', () => {
  it('puts longer prefixes first whatever the declaration order', () => {
    const sorted = sortRoutes([route('root', { pathPrefix: '/' }), route('api', { pathPrefix: '/api' }), route('v2', { pathPrefix: '/api/v2' })]);
    assert.deepEqual(sorted.map((r) => r.name), ['v2', 'api', 'root']);
  });

  it('keeps declaration order between equal prefixes', () => {
    const sorted = sortRoutes([route('first', { pathPrefix: '/x' }), route('long', { pathPrefix: '/xyz' }), route('second', { pathPrefix: '/x' }), route('third', { pathPrefix: '/y' })]);
    assert.deepEqual(sorted.map((r) => r.name), ['long', 'first', 'second', 'third']);
  });

  it('does not modify its input', () => {
    const input = [route('a', { pathPrefix: '/' }), route('b', { pathPrefix: '/b' })];
    sortRoutes(input);
    assert.deepEqual(input.map((r) => r.name), ['a', 'b']);
  });
});

describe('findRoute / routeMatches', () => {
  const sorted = sortRoutes([
    route('root', { pathPrefix: '/' }),
    route('api', { pathPrefix: '/api' }),
    route('v2-host', { pathPrefix: '/api/v2', host: 'v2.example.test' }),
    route('v2-post', { pathPrefix: '/api/v2', methods: ['POST', 'PUT'] }),
    route('canary', { pathPrefix: '/app', headers: { 'x-canary': '1' } }),
    route('app', { pathPrefix: '/app' }),
  ]);
  const find = (path: string, extra: Partial<RequestFacts> = {}) => findRoute(sorted, facts(path, extra))?.name;

  it('longest matching prefix wins', () => {
    assert.equal(find('/api/x'), 'api');
    assert.equal(find('/api'), 'api');
    assert.equal(find('/apix'), 'root');
    assert.equal(find('/other'), 'root');
  });

  it('host condition', () => {
    assert.equal(find('/api/v2/users', { host: 'v2.example.test' }), 'v2-host');
    assert.equal(find('/api/v2/users', { host: 'other.test' }), 'api');
  });

  it('method condition', () => {
    assert.equal(find('/api/v2/users', { method: 'POST' }), 'v2-post');
    assert.equal(find('/api/v2/users', { method: 'PUT' }), 'v2-post');
    assert.equal(find('/api/v2/users', { method: 'DELETE' }), 'api');
  });

  it('header condition, including repeated headers', () => {
    assert.equal(find('/app/x', { headers: { 'x-canary': '1' } }), 'canary');
    assert.equal(find('/app/x', { headers: { 'x-canary': ['0', '1'] } }), 'canary');
    assert.equal(find('/app/x', { headers: { 'x-canary': '0' } }), 'app');
    assert.equal(find('/app/x', { headers: {} }), 'app');
  });

  it('returns undefined when nothing matches', () => {
    const only = sortRoutes([route('hello', { pathPrefix: '/hello', methods: ['GET'] })]);
    assert.equal(findRoute(only, facts('/helloworld')), undefined);
    assert.equal(findRoute(only, facts('/hello', { method: 'POST' })), undefined);
    assert.equal(findRoute(only, facts('/hello/x'))?.name, 'hello');
  });

  it('every condition must hold at once', () => {
    const r = route('all', { pathPrefix: '/p', host: 'h.test', methods: ['GET'], headers: { 'x-a': 'b' } });
    assert.equal(routeMatches(r, facts('/p', { host: 'h.test', headers: { 'x-a': 'b' } })), true);
    assert.equal(routeMatches(r, facts('/p', { host: 'x.test', headers: { 'x-a': 'b' } })), false);
    assert.equal(routeMatches(r, facts('/p', { host: 'h.test', method: 'POST', headers: { 'x-a': 'b' } })), false);
    assert.equal(routeMatches(r, facts('/p', { host: 'h.test', headers: { 'x-a': 'c' } })), false);
    assert.equal(routeMatches(r, facts('/q', { host: 'h.test', headers: { 'x-a': 'b' } })), false);
  });
});

describe('hostWithoutPort', () => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, ''],
    ['', ''],
    ['example.test', 'example.test'],
    ['Example.TEST', 'example.test'],
    ['Example.TEST:8080', 'example.test'],
    ['127.0.0.1:9000', '127.0.0.1'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
    ['[2001:DB8::1]:443', '[2001:db8::1]'],
  ];
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(hostWithoutPort(input), expected);
    });
  }
});
