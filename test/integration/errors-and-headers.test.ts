import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { rawRequest, type RawResponse, type RunningGateway, startGateway } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

interface Echo {
  instance: string;
  url: string;
  headers: IncomingHttpHeaders;
}

let echo: TestUpstream;
let statusA: TestUpstream;
let statusB: TestUpstream;
let sick: TestUpstream;
let slow: TestUpstream;
let gw: RunningGateway;
let dead1: number;
let dead2: number;

/** Answers /status/NNN with that status, a custom header, two cookies and a text body. */
function statusHandler(name: string) {
  return (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => {
    if (request.url === '/status/hop') {
      response.writeHead(200, {
        connection: 'keep-alive, X-Resp-Hop',
        'x-resp-hop': 'secret',
        'keep-alive': 'timeout=99, max=1234',
        'proxy-connection': 'keep-alive',
        'x-upstream': name,
        'x-end-to-end': 'kept',
        'content-type': 'text/plain',
      });
      response.end('hop');
      return;
    }
    const match = /^\/status\/(\d{3})/.exec(request.url ?? '');
    if (!match) {
      response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      response.end(JSON.stringify({ instance: name, url: request.url, headers: request.headers }));
      return;
    }
    const status = Number(match[1]);
    response.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'x-upstream': name,
      'x-custom': `custom-${status}`,
      'set-cookie': ['a=1; Path=/', 'b=2; HttpOnly'],
      'cache-control': 'no-store',
    });
    response.end(`body of ${status} from upstream`);
  };
}

before(async () => {
  echo = await startUpstream('echo');
  statusA = await startUpstream('status-a', { handler: statusHandler('status-a') });
  statusB = await startUpstream('status-b', { handler: statusHandler('status-b') });
  sick = await startUpstream('sick', {
    handler: (_request, response) => {
      response.writeHead(500, { 'x-upstream': 'sick' });
      response.end('unhealthy');
    },
  });
  slow = await startUpstream('slow');
  slow.mode = 'hang';
  dead1 = await deadPort();
  dead2 = await deadPort();
  gw = await startGateway(`
registry:
  static:
    services:
      echo: { instances: ["${echo.url}"] }
      status: { instances: ["${statusA.url}", "${statusB.url}"] }
      sick:
        instances: ["${sick.url}"]
        healthCheck: { path: /health, interval: 1s, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1 }
      onedead: { instances: ["http://127.0.0.1:${dead1}"] }
      alldead: { instances: ["http://127.0.0.1:${dead1}", "http://127.0.0.1:${dead2}"] }
      slow: { instances: ["${slow.url}"] }
routes:
  - { name: echo, match: { pathPrefix: /echo }, service: echo, stripPrefix: true }
  - { name: status, match: { pathPrefix: /status }, service: status, retryOn: [connect-failure] }
  - { name: sick, match: { pathPrefix: /sick }, service: sick }
  - { name: onedead, match: { pathPrefix: /onedead }, service: onedead, retries: 0 }
  - { name: alldead, match: { pathPrefix: /alldead }, service: alldead }
  - { name: slow, match: { pathPrefix: /slow }, service: slow, timeout: 300ms, retries: 0 }
`);
});

after(async () => {
  await gw?.stop();
  await Promise.all([echo, statusA, statusB, sick, slow].map((u) => u?.close()));
});

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

function assertGatewayError(response: RawResponse, status: number, code: string): ErrorBody {
  assert.equal(response.status, status, response.body);
  assert.equal(response.headers['x-upstream'], undefined, 'must be made by the gateway');
  assert.match(String(response.headers['content-type']), /^application\/json(;|$)/);
  const body = JSON.parse(response.body) as ErrorBody;
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'requestId']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.requestId, 'string');
  assert.ok(body.error.requestId.length > 0);
  assert.equal(body.error.requestId, response.headers['x-request-id'], 'body requestId equals the x-request-id header');
  return body;
}

describe('gateway-made errors', () => {
  test('no route -> 404 ROUTE_NOT_FOUND', async () => {
    assertGatewayError(await rawRequest(gw.url, { path: '/nowhere' }), 404, 'ROUTE_NOT_FOUND');
    assertGatewayError(await rawRequest(gw.url, { path: '/', method: 'POST', body: 'x' }), 404, 'ROUTE_NOT_FOUND');
  });

  test('an error keeps the client request id in body and header', async () => {
    const response = await rawRequest(gw.url, { path: '/nowhere', headers: { 'x-request-id': 'client-id-404' } });
    const body = assertGatewayError(response, 404, 'ROUTE_NOT_FOUND');
    assert.equal(body.error.requestId, 'client-id-404');
  });

  test('no healthy instance -> 503 NO_HEALTHY_INSTANCE with Retry-After', async () => {
    const before = sick.received.filter((r) => !r.url.startsWith('/health')).length;
    const response = await rawRequest(gw.url, { path: '/sick/x' });
    assertGatewayError(response, 503, 'NO_HEALTHY_INSTANCE');
    assert.match(String(response.headers['retry-after']), /^[1-9]\d*$/);
    assert.equal(sick.received.filter((r) => !r.url.startsWith('/health')).length, before, 'no traffic to an unhealthy instance');
  });

  test('connect failure with retries: 0 -> 502 UPSTREAM_UNAVAILABLE', async () => {
    assertGatewayError(await rawRequest(gw.url, { path: '/onedead' }), 502, 'UPSTREAM_UNAVAILABLE');
  });

  test('every instance refusing connections -> 502 UPSTREAM_UNAVAILABLE', async () => {
    assertGatewayError(await rawRequest(gw.url, { path: '/alldead/x' }), 502, 'UPSTREAM_UNAVAILABLE');
    assertGatewayError(await rawRequest(gw.url, { path: '/alldead/x', method: 'POST', body: 'payload' }), 502, 'UPSTREAM_UNAVAILABLE');
  });

  test('upstream slower than the route timeout -> 504 UPSTREAM_TIMEOUT', async () => {
    const before = slow.received.length;
    assertGatewayError(await rawRequest(gw.url, { path: '/slow/x' }), 504, 'UPSTREAM_TIMEOUT');
    assert.equal(slow.received.length, before + 1, 'the upstream did get the request');
  });

  test('a malformed percent-escape in the path gets the gateway JSON error shape', async () => {
    assertGatewayError(await rawRequest(gw.url, { path: '/echo/%zz' }), 400, 'INVALID_PATH');
  });

  test('a malformed percent-escape in the query is passed through untouched', async () => {
    const response = await rawRequest(gw.url, { path: '/echo/q?x=%zz&y=%' });
    assert.equal(response.status, 200, response.body);
    assert.equal((JSON.parse(response.body) as Echo).url, '/q?x=%zz&y=%');
  });
});

describe('upstream answers pass through unchanged', () => {
  for (const status of [404, 500, 418, 503]) {
    test(`status ${status} with its headers and body`, async () => {
      const before = statusA.received.length + statusB.received.length;
      const response = await rawRequest(gw.url, { path: `/status/${status}`, headers: { 'x-request-id': `pass-${status}` } });
      assert.equal(response.status, status);
      assert.equal(response.body, `body of ${status} from upstream`);
      assert.equal(response.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(response.headers['x-custom'], `custom-${status}`);
      assert.equal(response.headers['cache-control'], 'no-store');
      assert.deepEqual(response.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
      assert.match(String(response.headers['x-upstream']), /^status-[ab]$/);
      assert.equal(response.headers['x-request-id'], `pass-${status}`);
      assert.equal(statusA.received.length + statusB.received.length, before + 1, 'not retried (retryOn is connect-failure only)');
    });
  }

  test('a POST answered 500 is not retried either', async () => {
    const before = statusA.received.length + statusB.received.length;
    const response = await rawRequest(gw.url, { path: '/status/500', method: 'POST', body: 'data', headers: { 'content-type': 'text/plain' } });
    assert.equal(response.status, 500);
    assert.equal(response.body, 'body of 500 from upstream');
    assert.equal(statusA.received.length + statusB.received.length, before + 1);
  });
});

describe('request id', () => {
  test('a client x-request-id is kept, sent upstream and returned', async () => {
    const response = await rawRequest(gw.url, { path: '/echo/x', headers: { 'x-request-id': 'abc-123.def_456' } });
    assert.equal(response.status, 200);
    assert.equal(response.headers['x-request-id'], 'abc-123.def_456');
    const seen = JSON.parse(response.body) as Echo;
    assert.equal(seen.headers['x-request-id'], 'abc-123.def_456');
  });

  test('without one, the gateway mints an id, sends it upstream and returns the same value', async () => {
    const first = await rawRequest(gw.url, { path: '/echo/x' });
    const second = await rawRequest(gw.url, { path: '/echo/x' });
    for (const response of [first, second]) {
      const id = response.headers['x-request-id'];
      assert.equal(typeof id, 'string');
      assert.ok(String(id).length >= 8, `id looks real: ${String(id)}`);
      assert.equal((JSON.parse(response.body) as Echo).headers['x-request-id'], id);
    }
    assert.notEqual(first.headers['x-request-id'], second.headers['x-request-id']);
  });
});

describe('forwarding headers', () => {
  test('x-forwarded-for/proto/host are set from the client connection', async () => {
    const response = await rawRequest(gw.url, { path: '/echo/fwd', headers: { host: 'public.example.test:8443' } });
    const seen = JSON.parse(response.body) as Echo;
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], 'public.example.test:8443');
  });

  test('from a peer that is not a trusted proxy, forwarding headers are replaced by what the gateway saw', async () => {
    const response = await rawRequest(gw.url, {
      path: '/echo/fwd',
      headers: {
        host: 'real.example',
        'x-forwarded-for': '203.0.113.7, 198.51.100.2',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'spoofed.example',
        'x-forwarded-port': '443',
        'x-forwarded-prefix': '/admin',
        'x-real-ip': '203.0.113.9',
        forwarded: 'for=203.0.113.7;proto=https',
      },
    });
    const seen = JSON.parse(response.body) as Echo;
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], 'real.example');
    for (const name of ['x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip', 'forwarded']) assert.equal(seen.headers[name], undefined, name);
  });

  test('end-to-end headers and the body reach the upstream', async () => {
    const response = await rawRequest(gw.url, {
      path: '/echo/e2e',
      method: 'PUT',
      headers: { 'x-end-to-end': 'kept', authorization: 'Bearer t0k3n', cookie: 'sid=1', 'content-type': 'text/plain' },
      body: 'hello body',
    });
    const seen = JSON.parse(response.body) as Echo & { body: string; method: string };
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.body, 'hello body');
    assert.equal(seen.headers['x-end-to-end'], 'kept');
    assert.equal(seen.headers.authorization, 'Bearer t0k3n');
    assert.equal(seen.headers.cookie, 'sid=1');
    assert.equal(seen.headers['content-type'], 'text/plain');
  });
});

/** A response read off a raw socket (Connection: close), with chunked bodies decoded. */
interface SocketResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes request bytes as given (node:http refuses some hop-by-hop combinations) and reads the answer. */
function socketRequest(baseUrl: string, head: string, body = ''): Promise<SocketResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(head + '\r\n' + body));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const lines = text.slice(0, split).split('\r\n');
      const status = Number(lines[0]?.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        headers[name] = headers[name] === undefined ? line.slice(colon + 1).trim() : `${headers[name]}, ${line.slice(colon + 1).trim()}`;
      }
      let rest = text.slice(split + 4);
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        let decoded = '';
        for (;;) {
          const eol = rest.indexOf('\r\n');
          const size = parseInt(rest.slice(0, eol), 16);
          if (!size) break;
          decoded += rest.slice(eol + 2, eol + 2 + size);
          rest = rest.slice(eol + 2 + size + 2);
        }
        rest = decoded;
      }
      resolve({ status, headers, body: rest });
    });
  });
}

describe('hop-by-hop headers', () => {
  test('request: Connection, the headers it names, Keep-Alive, Proxy-Authorization/-Authenticate/-Connection, TE, Trailer and Upgrade are not forwarded', async () => {
    const head = [
      'GET /echo/hop HTTP/1.1',
      'Host: gw.test',
      'Connection: close, X-Hop-Custom, x-hop-other',
      'X-Hop-Custom: secret',
      'x-hop-other: secret2',
      'Keep-Alive: timeout=99',
      'Proxy-Authorization: Basic Zm9vOmJhcg==',
      'Proxy-Authenticate: Basic',
      'Proxy-Connection: keep-alive',
      'TE: trailers, gzip',
      'Trailer: X-Checksum',
      'Upgrade: h2c',
      'X-End-To-End: kept',
      '',
    ].join('\r\n');
    const response = await socketRequest(gw.url, head);
    assert.equal(response.status, 200, response.body);
    const seen = JSON.parse(response.body) as Echo;
    for (const name of ['x-hop-custom', 'x-hop-other', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
      assert.equal(seen.headers[name], undefined, `${name} must not reach the upstream`);
    }
    assert.doesNotMatch(String(seen.headers.connection ?? ''), /hop|close/i);
    assert.equal(seen.headers['x-end-to-end'], 'kept');
  });

  test('request: headers named by Connection are dropped whatever their case, also via node:http', async () => {
    const response = await rawRequest(gw.url, {
      path: '/echo/hop',
      headers: { connection: 'keep-alive, X-HOP-A', 'x-hop-a': '1', 'keep-alive': 'timeout=99', te: 'trailers', 'x-end-to-end': 'kept' },
    });
    const seen = JSON.parse(response.body) as Echo;
    assert.equal(seen.headers['x-hop-a'], undefined);
    assert.equal(seen.headers['keep-alive'], undefined);
    assert.equal(seen.headers.te, undefined);
    assert.equal(seen.headers['x-end-to-end'], 'kept');
  });

  test('request: any other Proxy-* header is not forwarded either', async () => {
    const response = await rawRequest(gw.url, { path: '/echo/hop', headers: { 'proxy-custom': 'x', 'x-end-to-end': 'kept' } });
    const seen = JSON.parse(response.body) as Echo;
    assert.equal(seen.headers['proxy-custom'], undefined);
    assert.equal(seen.headers['x-end-to-end'], 'kept');
  });

  test('response: hop-by-hop headers of the upstream answer are not passed to the client', async () => {
    const response = await socketRequest(gw.url, 'GET /status/hop HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n');
    assert.equal(response.status, 200);
    assert.equal(response.body, 'hop');
    assert.equal(response.headers['x-end-to-end'], 'kept');
    assert.equal(response.headers['x-resp-hop'], undefined);
    assert.equal(response.headers['proxy-connection'], undefined);
    assert.notEqual(response.headers['keep-alive'], 'timeout=99, max=1234');
    assert.doesNotMatch(response.headers.connection ?? '', /x-resp-hop/i);
  });
});
