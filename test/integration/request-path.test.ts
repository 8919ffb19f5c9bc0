import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { metricValue, oneServiceYaml, rawRequest, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const serviceYaml = (urls: readonly string[], route = ''): string => oneServiceYaml(urls, route);

/** A TCP server that answers every connection with the same bytes (then, optionally, resets). */
async function rawUpstream(answer: (socket: Socket) => void): Promise<{ url: string; close(): Promise<void>; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', () => answer(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Sends raw bytes and collects everything until the gateway closes or `enough` says stop. */
function rawExchange(url: string, bytes: string, enough: (text: string) => boolean): Promise<{ text: string; closedByPeer: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    let done = false;
    const finish = (closedByPeer: boolean) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ text, closedByPeer });
    };
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      if (enough(text)) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', reject);
    socket.write(bytes);
  });
}

/** Reads a response whose connection may break: what arrived, and whether the body ended cleanly. */
function readPossiblyCut(url: string): Promise<{ status: number; body: string; cleanEnd: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      let body = '';
      let cleanEnd = false;
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => { cleanEnd = true; });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, cleanEnd: cleanEnd && res.complete }));
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    req.end();
  });
}

function countStatusLines(text: string): number {
  return text.split('\r\n').filter((line) => /^HTTP\/1\.[01] \d{3}/.test(line)).length;
}

describe('Expect: 100-continue', () => {
  let upstream: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    upstream = await startUpstream('a');
    gw = await startGateway(serviceYaml([upstream.url], '    circuitBreaker: { volumeThreshold: 2, errorThresholdPercentage: 10 }'));
  });
  after(async () => {
    await gw.stop();
    await upstream.close();
  });

  test('the body reaches the upstream intact, the client gets its answer, and the instance is not blamed', async () => {
    const body = 'x'.repeat(200_000);
    for (let i = 0; i < 15; i++) {
      const response = await new Promise<{ status: number; text: string; sawContinue: boolean }>((resolve, reject) => {
        const { port } = new URL(gw.url);
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/x/upload', agent: false, headers: { expect: '100-continue', 'content-length': String(body.length), 'content-type': 'text/plain' } });
        let sawContinue = false;
        req.on('continue', () => {
          sawContinue = true;
          req.end(body);
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (chunk) => { text += chunk; });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, sawContinue }));
        });
        req.on('error', reject);
      });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.sawContinue, true);
      assert.equal((JSON.parse(response.text) as { body: string }).body.length, body.length);
    }
    assert.equal(upstream.received.at(-1)!.body, body);
    assert.equal(upstream.received.at(-1)!.headers.expect, undefined, 'the gateway answered the expectation itself');
    assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { outcome: 'failure' }), undefined);
    assert.equal(await metricValue(gw.adminUrl, 'waygate_circuit_breaker_open', { instance: upstream.url }) ?? 0, 0);
  });
});

describe('client aborts', () => {
  test('a client that leaves cancels the upstream request and counts as 499 and outcome="aborted", not as a success or failure', async () => {
    const closedUpstream: string[] = [];
    const hung = await startUpstream('hung', {
      handler: (req: IncomingMessage, res: ServerResponse) => {
        res.on('close', () => closedUpstream.push(req.url ?? ''));
      },
    });
    const metrics = new GatewayMetrics({ processMetrics: false });
    const gw = await startGateway(serviceYaml([hung.url], '    timeout: 60s\n    circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 0 }'), { metrics });
    try {
      const { port } = new URL(gw.url);
      const req = httpRequest({ host: '127.0.0.1', port, path: '/x/wait', agent: false });
      req.on('error', () => undefined);
      req.end();
      await waitFor('the upstream to receive the request', () => hung.received.length === 1);
      req.destroy();
      await waitFor('the upstream request to be cancelled', () => closedUpstream.includes('/x/wait'));
      await waitFor('the 499 to be counted', async () => (await metricValue(gw.adminUrl, 'waygate_requests_total', { route: 'r', code: '499' })) === 1);
      assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { outcome: 'aborted' }), 1);
      assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { outcome: 'success' }), undefined);
      assert.equal(await metricValue(gw.adminUrl, 'waygate_upstream_attempts_total', { outcome: 'failure' }), undefined);
      const entry = gw.gateway.routeTable.entries[0]!;
      assert.equal(entry.pool.inflight(hung.url), 0);
      assert.equal(entry.pool.runtime(hung.url)!.breaker.state, 'closed', 'an abort is no verdict, even with a zero threshold');
    } finally {
      await gw.stop();
      await hung.close();
    }
  });

  test('a client that leaves during a budgeted retry gives the retry slot back', async () => {
    const resetter = await startUpstream('resetter');
    resetter.mode = 'reset';
    const holder = await startUpstream('holder');
    holder.mode = 'hang';
    const gw = await startGateway(serviceYaml([resetter.url, holder.url], '    retries: 2\n    timeout: 60s'));
    try {
      const entry = gw.gateway.routeTable.entries[0]!;
      const { port } = new URL(gw.url);
      const req = httpRequest({ host: '127.0.0.1', port, path: '/x/leave', agent: false });
      req.on('error', () => undefined);
      req.end();
      await waitFor('the retry to reach the second instance', () => holder.received.length === 1);
      assert.equal(entry.budget.retriesInFlight, 1, 'the retry after the reset holds a budget slot');
      req.destroy();
      await waitFor('the retry slot to be given back', () => entry.budget.retriesInFlight === 0);
      await waitFor('the held upstream request to be cancelled', () => holder.openSockets() === 0);
      assert.equal(entry.pool.inflight(holder.url), 0);
    } finally {
      await gw.stop();
      await resetter.close();
      await holder.close();
    }
  });
});

describe('retryOn', () => {
  let resetter: TestUpstream;
  let good: TestUpstream;
  before(async () => {
    resetter = await startUpstream('resetter');
    resetter.mode = 'reset';
    good = await startUpstream('good');
  });
  after(async () => {
    await resetter.close();
    await good.close();
  });

  /** Round-robin starts at the first instance, so the first request always meets the resetter first. */
  async function firstAnswer(retryOn: string, method: string, body?: string) {
    const gw = await startGateway(serviceYaml([resetter.url, good.url], `    retries: 2\n    retryOn: ${retryOn}`));
    try {
      return await rawRequest(gw.url, { method, path: '/x/once', ...(body === undefined ? {} : { body, headers: { 'content-length': String(body.length) } }) });
    } finally {
      await gw.stop();
    }
  }

  test('default [connect-failure, reset]: a GET reset before any response byte moves to another instance', async () => {
    const gw = await startGateway(serviceYaml([resetter.url, good.url], '    retries: 2'));
    try {
      const answer = await rawRequest(gw.url, { path: '/x/once' });
      assert.equal(answer.status, 200);
      assert.equal(JSON.parse(answer.body).instance, 'good');
    } finally {
      await gw.stop();
    }
  });

  test('a POST is never sent twice: a reset answers 502 and no other instance sees it', async () => {
    const before = good.received.length;
    const answer = await firstAnswer('[connect-failure, reset, 502, 503, 504]', 'POST', '{"pay":1}');
    assert.equal(answer.status, 502);
    assert.equal(JSON.parse(answer.body).error.code, 'UPSTREAM_UNAVAILABLE');
    assert.equal(good.received.length, before);
  });

  test('without reset in retryOn a GET reset answers 502', async () => {
    const answer = await firstAnswer('[connect-failure]', 'GET');
    assert.equal(answer.status, 502);
  });

  test('retryOn: [] means no retries, not even after a refused connection', async () => {
    const dead = await deadPort();
    const gw = await startGateway(serviceYaml([`http://127.0.0.1:${dead}`, good.url], '    retries: 2\n    retryOn: []'));
    try {
      const answer = await rawRequest(gw.url, { path: '/x/once' });
      assert.equal(answer.status, 502);
    } finally {
      await gw.stop();
    }
  });

  test('connect-failure retries a POST, whose body never reached an instance', async () => {
    const dead = await deadPort();
    const gw = await startGateway(serviceYaml([`http://127.0.0.1:${dead}`, good.url], '    retries: 2\n    retryOn: [connect-failure]'));
    try {
      const answer = await rawRequest(gw.url, { method: 'POST', path: '/x/once', body: 'hello', headers: { 'content-length': '5' } });
      assert.equal(answer.status, 200);
      assert.equal(JSON.parse(answer.body).body, 'hello');
    } finally {
      await gw.stop();
    }
  });
});

describe('odd upstreams', () => {
  async function viaGateway(answer: (socket: Socket) => void, check: (gw: RunningGateway) => Promise<void>) {
    const upstream = await rawUpstream(answer);
    const gw = await startGateway(serviceYaml([upstream.url], '    retries: 0'));
    try {
      await check(gw);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  }

  for (const [what, bytes] of [
    ['a status of 600', 'HTTP/1.1 600 Weird\r\ncontent-length: 2\r\n\r\nok'],
    ['a status of 999', 'HTTP/1.1 999 Weird\r\ncontent-length: 2\r\n\r\nok'],
    ['an invalid status line', 'HTTP/1.1 2x0 What\r\ncontent-length: 2\r\n\r\nok'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.2\r\n\r\n'],
    ['response headers over 64 KiB', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}\r\ncontent-length: 2\r\n\r\nok`],
  ] as const) {
    test(`${what}: exactly one 502 UPSTREAM_INVALID_RESPONSE`, async () => {
      await viaGateway((socket) => socket.end(bytes), async (gw) => {
        const { text } = await rawExchange(gw.url, 'GET /x/odd HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n', () => false);
        assert.equal(countStatusLines(text), 1, text.slice(0, 300));
        assert.match(text, /^HTTP\/1\.1 502 /);
        assert.match(text, /"code":"UPSTREAM_INVALID_RESPONSE"/);
      });
    });
  }

  test('response headers under 64 KiB pass', async () => {
    await viaGateway((socket) => socket.end(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(40 * 1024)}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok`), async (gw) => {
      const { text } = await rawExchange(gw.url, 'GET /x/big HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n', () => false);
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.ok(text.includes(`x-big: ${'a'.repeat(40 * 1024)}\r\n`));
      assert.ok(text.endsWith('\r\n\r\nok'));
    });
  });

  test('a reset mid-body with content-length: the client gets fewer bytes and no clean end', async () => {
    await viaGateway((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n' + 'a'.repeat(1000));
      setImmediate(() => socket.resetAndDestroy());
    }, async (gw) => {
      const result = await readPossiblyCut(`${gw.url}/x/cut`);
      assert.equal(result.status, 200);
      assert.equal(result.cleanEnd, false);
      assert.ok(result.body.length < 100_000);
    });
  });

  test('a reset mid-body when chunked: no final chunk reaches the client', async () => {
    await viaGateway((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setImmediate(() => socket.resetAndDestroy());
    }, async (gw) => {
      const { text, closedByPeer } = await rawExchange(gw.url, 'GET /x/cut HTTP/1.1\r\nHost: gw\r\n\r\n', (t) => t.includes('0\r\n\r\n'));
      assert.equal(closedByPeer, true, 'the gateway closes the connection');
      assert.ok(!text.includes('\r\n0\r\n\r\n'), 'never a terminating chunk');
      assert.match(text, /hello/);
    });
  });

  test('an informational 103 before the answer is not mistaken for the answer', async () => {
    await viaGateway((socket) => socket.end('HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'), async (gw) => {
      const answer = await rawRequest(gw.url, { path: '/x/hints' });
      assert.equal(answer.status, 200);
      assert.equal(answer.body, 'ok');
    });
  });
});

describe('headers, bodies and methods', () => {
  let upstream: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    upstream = await startUpstream('echo', {
      handler: (req, res, body) => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'upstream-made-this' });
        res.end(JSON.stringify({ method: req.method, headers: req.headers, body }));
      },
    });
    gw = await startGateway(`
registry:
  static:
    services:
      svc:
        instances: ["${upstream.url}"]
routes:
  - { name: readonly, match: { pathPrefix: /ro, methods: [GET, HEAD] }, service: svc }
  - { name: all, match: { pathPrefix: /x }, service: svc }
`);
  });
  after(async () => {
    await gw.stop();
    await upstream.close();
  });

  test("the gateway's x-request-id reaches the client even when the upstream sets its own", async () => {
    const answer = await rawRequest(gw.url, { path: '/x/id', headers: { 'x-request-id': 'client-chosen-1' } });
    assert.equal(answer.headers['x-request-id'], 'client-chosen-1');
    const minted = await rawRequest(gw.url, { path: '/x/id' });
    assert.notEqual(minted.headers['x-request-id'], 'upstream-made-this');
    assert.equal(JSON.parse(minted.body).headers['x-request-id'], minted.headers['x-request-id']);
  });

  test('a GET body is forwarded, and no content-type is invented', async () => {
    const answer = await rawRequest(gw.url, { method: 'GET', path: '/x/search', body: '{"q":1}', headers: { 'content-length': '7' } });
    const seen = JSON.parse(answer.body);
    assert.equal(seen.body, '{"q":1}');
    assert.equal(seen.headers['content-type'], undefined);
    const post = JSON.parse((await rawRequest(gw.url, { method: 'POST', path: '/x/raw', body: 'abc', headers: { 'content-length': '3' } })).body);
    assert.equal(post.body, 'abc');
    assert.equal(post.headers['content-type'], undefined);
  });

  test('a chunked body streams through', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(gw.url);
      const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: '/x/chunks', agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.write('part1-');
      setImmediate(() => req.end('part2'));
    });
    assert.equal(JSON.parse(answer).body, 'part1-part2');
  });

  for (const method of ['PROPFIND', 'MKCOL', 'REPORT', 'PURGE']) {
    test(`${method} is proxied like any method`, async () => {
      const answer = await rawRequest(gw.url, { method, path: '/x/dav', body: '<x/>', headers: { 'content-length': '4' } });
      assert.equal(answer.status, 200, answer.body);
      const seen = JSON.parse(answer.body);
      assert.equal(seen.method, method);
      assert.equal(seen.body, '<x/>');
    });
  }

  test('match.methods still excludes methods: PROPFIND on a GET/HEAD route falls to 404 ROUTE_NOT_FOUND', async () => {
    const answer = await rawRequest(gw.url, { method: 'PROPFIND', path: '/ro/dav' });
    assert.equal(answer.status, 404);
    assert.equal(JSON.parse(answer.body).error.code, 'ROUTE_NOT_FOUND');
  });
});
