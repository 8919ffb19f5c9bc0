import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { rawRequest, type RawResponse, type RunningGateway, startGateway } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

/** What the default test upstream answers: which instance served the request and the URL it saw. */
interface Echo {
  instance: string;
  method: string;
  url: string;
  headers: Record<string, string>;
}

const NAMES = ['hello', 'admin', 'api', 'apiv2', 'hosted', 'unhosted', 'post', 'canary', 'stable', 'root'] as const;
type Name = (typeof NAMES)[number];

let up: Record<Name, TestUpstream>;
let gw: RunningGateway;
let rootGw: RunningGateway;

function services(names: readonly Name[]): string {
  return names.map((name) => `      ${name}:\n        instances: ["${up[name].url}"]\n`).join('');
}

before(async () => {
  const started = await Promise.all(NAMES.map((name) => startUpstream(name)));
  up = Object.fromEntries(started.map((u) => [u.name, u])) as Record<Name, TestUpstream>;
  gw = await startGateway(`
registry:
  static:
    services:
${services(NAMES.filter((n) => n !== 'root'))}
routes:
  - { name: hello, match: { pathPrefix: /hello }, service: hello, stripPrefix: true }
  - { name: admin, match: { pathPrefix: /admin }, service: admin }
  # declared shorter-first on purpose: the longest prefix must win anyway
  - { name: api, match: { pathPrefix: /api }, service: api }
  - { name: apiv2, match: { pathPrefix: /api/v2 }, service: apiv2, stripPrefix: true }
  - { name: hosted, match: { pathPrefix: /site, host: API.Example.test }, service: hosted }
  - { name: unhosted, match: { pathPrefix: /site }, service: unhosted }
  - { name: post, match: { pathPrefix: /m, methods: [post, PUT] }, service: post }
  - { name: canary, match: { pathPrefix: /app, headers: { X-Canary: "1" } }, service: canary }
  - { name: stable, match: { pathPrefix: /app }, service: stable }
`);
  rootGw = await startGateway(`
registry:
  static:
    services:
${services(['hello', 'root'])}
routes:
  - { name: root, match: { pathPrefix: / }, service: root }
  - { name: hello, match: { pathPrefix: /hello }, service: hello, stripPrefix: true }
`);
});

after(async () => {
  await gw?.stop();
  await rootGw?.stop();
  await Promise.all(Object.values(up ?? {}).map((u) => u.close()));
});

async function get(path: string, init: { method?: string; headers?: Record<string, string>; gateway?: RunningGateway } = {}): Promise<RawResponse & { echo: Echo }> {
  const response = await rawRequest((init.gateway ?? gw).url, { method: init.method ?? 'GET', path, headers: init.headers ?? {} });
  let echo = undefined as unknown as Echo;
  if (response.headers['x-upstream'] !== undefined) echo = JSON.parse(response.body) as Echo;
  return { ...response, echo };
}

function assertGatewayError(response: RawResponse, status: number, code: string): void {
  assert.equal(response.status, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  assert.equal(response.headers['x-upstream'], undefined, 'must not come from an upstream');
  const body = JSON.parse(response.body) as { error: { code: string; message: string; requestId: string } };
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(body.error.requestId, response.headers['x-request-id']);
}

/** Sends raw bytes on a socket and returns the status line (for paths node:http would refuse to send). */
function rawStatusLine(baseUrl: string, requestText: string): Promise<string> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(requestText));
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const end = data.indexOf('\r\n');
      if (end !== -1) {
        resolve(data.slice(0, end));
        socket.destroy();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(data.split('\r\n')[0] ?? ''));
  });
}

describe('prefix matching at segment boundaries', () => {
  test('/hello and /hello/x reach the hello route', async () => {
    const exact = await get('/hello');
    assert.equal(exact.status, 200);
    assert.equal(exact.echo.instance, 'hello');
    const nested = await get('/hello/x/y');
    assert.equal(nested.status, 200);
    assert.equal(nested.echo.instance, 'hello');
  });

  test('/helloworld does not match /hello', async () => {
    const before = up.hello.received.length;
    assertGatewayError(await get('/helloworld'), 404, 'ROUTE_NOT_FOUND');
    assertGatewayError(await get('/hello-x'), 404, 'ROUTE_NOT_FOUND');
    assert.equal(up.hello.received.length, before);
  });

  test('with a catch-all route, /helloworld goes to the catch-all, not to /hello', async () => {
    const response = await get('/helloworld', { gateway: rootGw });
    assert.equal(response.status, 200);
    assert.equal(response.echo.instance, 'root');
    assert.equal(response.echo.url, '/helloworld');
    const hello = await get('/hello/x', { gateway: rootGw });
    assert.equal(hello.echo.instance, 'hello');
    assert.equal(hello.echo.url, '/x');
  });

  test('matching is case-sensitive on the path', async () => {
    assertGatewayError(await get('/HELLO'), 404, 'ROUTE_NOT_FOUND');
  });
});

describe('longest prefix wins', () => {
  test('/api/v2/... goes to the longer /api/v2 route even though /api was declared first', async () => {
    const response = await get('/api/v2/users?id=7');
    assert.equal(response.echo.instance, 'apiv2');
    assert.equal(response.echo.url, '/users?id=7');
  });

  test('/api/x and /api/v2x stay on /api', async () => {
    const a = await get('/api/x');
    assert.equal(a.echo.instance, 'api');
    assert.equal(a.echo.url, '/api/x');
    const b = await get('/api/v2x');
    assert.equal(b.echo.instance, 'api');
    assert.equal(b.echo.url, '/api/v2x');
  });
});

describe('stripPrefix', () => {
  test('stripPrefix: /hello/x?q=1 -> upstream sees /x?q=1', async () => {
    const response = await get('/hello/x?q=1');
    assert.equal(response.echo.url, '/x?q=1');
  });

  test('stripPrefix: /hello and /hello/ -> upstream sees /', async () => {
    assert.equal((await get('/hello')).echo.url, '/');
    assert.equal((await get('/hello/')).echo.url, '/');
    assert.equal((await get('/hello?a=b&c=%2F')).echo.url, '/?a=b&c=%2F');
  });

  test('a query string is never normalized or rejected: ../ inside it passes through', async () => {
    const plain = await get('/hello/x?next=../y');
    assert.equal(plain.status, 200, plain.body);
    assert.equal(plain.echo.url, '/x?next=../y');
    const encoded = await get('/hello/x?next=%2e%2e%2fy');
    assert.equal(encoded.status, 200, encoded.body);
    assert.equal(encoded.echo.url, '/x?next=%2e%2e%2fy');
  });

  test('without stripPrefix the upstream sees the full path and query', async () => {
    const response = await get('/admin/users/1?x=1&y=%20z');
    assert.equal(response.echo.instance, 'admin');
    assert.equal(response.echo.url, '/admin/users/1?x=1&y=%20z');
  });

  test('the method is passed through', async () => {
    const response = await get('/hello/x', { method: 'DELETE' });
    assert.equal(response.echo.method, 'DELETE');
  });
});

describe('route conditions', () => {
  test('host condition: case-insensitive, port ignored', async () => {
    const hosted = await get('/site/page', { headers: { host: 'api.example.TEST:8443' } });
    assert.equal(hosted.echo.instance, 'hosted');
    const bare = await get('/site/page', { headers: { host: 'api.example.test' } });
    assert.equal(bare.echo.instance, 'hosted');
    const other = await get('/site/page', { headers: { host: 'www.example.test' } });
    assert.equal(other.echo.instance, 'unhosted');
  });

  test('method condition', async () => {
    assert.equal((await get('/m/x', { method: 'POST' })).echo.instance, 'post');
    assert.equal((await get('/m/x', { method: 'PUT' })).echo.instance, 'post');
    assertGatewayError(await get('/m/x', { method: 'GET' }), 404, 'ROUTE_NOT_FOUND');
    assertGatewayError(await get('/m/x', { method: 'DELETE' }), 404, 'ROUTE_NOT_FOUND');
  });

  test('header condition, header name case-insensitive', async () => {
    assert.equal((await get('/app/x', { headers: { 'x-canary': '1' } })).echo.instance, 'canary');
    assert.equal((await get('/app/x', { headers: { 'X-CANARY': '1' } })).echo.instance, 'canary');
    assert.equal((await get('/app/x', { headers: { 'x-canary': '2' } })).echo.instance, 'stable');
    assert.equal((await get('/app/x')).echo.instance, 'stable');
  });
});

describe('path normalization happens before matching', () => {
  const traversals = [
    '/hello/../admin',
    '/hello/../admin/secret',
    '/hello/x/../../admin/secret',
    '/hello/%2e%2e/admin/secret',
    '/hello/%2E%2E/admin/secret',
    '/hello/.%2e/admin/secret',
    '/hello/%2e./admin/secret',
    '/hello/./../admin/secret',
  ];
  for (const path of traversals) {
    test(`${path} never reaches the hello upstream`, async () => {
      const before = up.hello.received.length;
      const response = await get(path);
      assert.equal(up.hello.received.length, before, 'hello upstream must not be contacted');
      assert.equal(response.status, 200, response.body);
      assert.equal(response.echo.instance, 'admin');
      assert.match(response.echo.url, /^\/admin(\/secret)?$/);
      assert.doesNotMatch(response.echo.url, /\.\.|%2e/i);
    });
  }

  test('an empty segment counts when ".." resolves (RFC 3986): /hello//../admin/secret is /hello/admin/secret', async () => {
    const before = up.admin.received.length;
    const response = await get('/hello//../admin/secret');
    assert.equal(up.admin.received.length, before, 'the admin upstream is not reached: a front proxy resolving by the RFC sees /hello/... too');
    assert.equal(response.status, 200, response.body);
    assert.equal(response.echo.instance, 'hello');
  });

  test('dot-segments inside a route resolve before stripping', async () => {
    const response = await get('/hello/a/./b/../c?x=1');
    assert.equal(response.echo.instance, 'hello');
    assert.equal(response.echo.url, '/a/c?x=1');
  });

  test('duplicate slashes collapse', async () => {
    const response = await get('//hello//x');
    assert.equal(response.echo.instance, 'hello');
    assert.equal(response.echo.url, '/x');
  });

  test('segments with dots inside are ordinary names', async () => {
    for (const [path, seen] of [['/hello/a..b', '/a..b'], ['/hello/[...slug]', '/[...slug]'], ['/hello/x.y/.z', '/x.y/.z']] as const) {
      const response = await get(path);
      assert.equal(response.status, 200, `${path}: ${response.body}`);
      assert.equal(response.echo.url, seen);
    }
  });

  test('segments beginning or ending with ".." are refused with INVALID_PATH (never a late BAD_REQUEST)', async () => {
    const before = up.hello.received.length;
    for (const path of ['/hello/..well', '/hello/x..', '/hello/x../y', '/hello/...', '/hello/%2e%2ewell']) {
      assertGatewayError(await get(path), 400, 'INVALID_PATH');
    }
    assert.equal(up.hello.received.length, before);
  });

  test('/helloworld/../hello/x normalizes into the hello route', async () => {
    const response = await get('/helloworld/../hello/x');
    assert.equal(response.echo.instance, 'hello');
    assert.equal(response.echo.url, '/x');
  });

  const invalid = ['/..', '/../admin', '/hello/../../admin', '/hello/%2e%2e/%2e%2e/admin', '/hello/..%2fadmin', '/hello%2F..%2Fadmin', '/hello/..%5cadmin', '/hello\\..\\admin'];
  for (const path of invalid) {
    test(`${path} -> 400 INVALID_PATH`, async () => {
      const counts = { hello: up.hello.received.length, admin: up.admin.received.length };
      assertGatewayError(await get(path), 400, 'INVALID_PATH');
      assert.deepEqual({ hello: up.hello.received.length, admin: up.admin.received.length }, counts);
    });
  }

  test('a raw socket request with a traversal path is normalized too', async () => {
    const before = up.hello.received.length;
    const line = await rawStatusLine(gw.url, 'GET /hello/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(line, 'HTTP/1.1 400 Bad Request');
    const ok = await rawStatusLine(gw.url, 'GET /hello/../admin/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    assert.equal(ok, 'HTTP/1.1 200 OK');
    assert.equal(up.hello.received.length, before);
    assert.equal(up.admin.received.at(-1)?.url, '/admin/x');
  });
});
