import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { metricValue, oneServiceYaml, rawRequest, type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

const serviceYaml = (urls: readonly string[], route = ''): string => oneServiceYaml(urls, route);

/** Opens a raw connection; `text()` is everything received so far, `closed` resolves when the gateway closes it. */
function rawSocket(url: string): { socket: Socket; text: () => string; closed: Promise<void> } {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let received = '';
  socket.on('data', (chunk) => { received += chunk.toString('latin1'); });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, text: () => received, closed };
}

async function rawRoundTrip(url: string, bytes: string): Promise<string> {
  const raw = rawSocket(url);
  raw.socket.write(bytes);
  await waitFor('a complete answer', () => /\r\n\r\n[\s\S]*\}$/.test(raw.text()) || raw.socket.destroyed);
  raw.socket.destroy();
  return raw.text();
}

describe('Host header (RFC 9112 §3.2)', () => {
  let upstream: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    upstream = await startUpstream('u');
    gw = await startGateway(serviceYaml([upstream.url]));
  });
  after(async () => {
    await gw.stop();
    await upstream.close();
  });

  const cases: Array<[string, string]> = [
    ['no Host at all (HTTP/1.1)', 'GET /x/a HTTP/1.1\r\n\r\n'],
    ['no Host at all (HTTP/1.0)', 'GET /x/a HTTP/1.0\r\n\r\n'],
    ['two Host lines', 'GET /x/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n'],
    ['a space inside', 'GET /x/a HTTP/1.1\r\nHost: a b.example\r\n\r\n'],
    ['an unclosed IPv6 literal', 'GET /x/a HTTP/1.1\r\nHost: [::1\r\n\r\n'],
    ['a non-numeric port', 'GET /x/a HTTP/1.1\r\nHost: a.example:http\r\n\r\n'],
    ['an out-of-range port', 'GET /x/a HTTP/1.1\r\nHost: a.example:70000\r\n\r\n'],
    ['userinfo', 'GET /x/a HTTP/1.1\r\nHost: user:pw@a.example\r\n\r\n'],
    ['an empty value', 'GET /x/a HTTP/1.1\r\nHost: \r\n\r\n'],
  ];
  for (const [what, bytes] of cases) {
    test(`${what}: 400 BAD_REQUEST as JSON, nothing forwarded`, async () => {
      const before = upstream.received.length;
      const text = await rawRoundTrip(gw.url, bytes);
      assert.match(text, /^HTTP\/1\.1 400 /, text);
      assert.match(text, /"code":"BAD_REQUEST"/);
      assert.equal(upstream.received.length, before);
    });
  }

  test('valid forms pass: name, name:port, IPv4, [IPv6]:port', async () => {
    for (const host of ['a.example', 'a.example:8080', '127.0.0.1', '[::1]:8080']) {
      const answer = await rawRequest(gw.url, { path: '/x/ok', headers: { host } });
      assert.equal(answer.status, 200, host);
    }
  });
});

describe('trusted proxies', () => {
  let upstreams: TestUpstream[];
  let gw: RunningGateway;
  before(async () => {
    upstreams = await Promise.all(['a', 'b', 'c', 'd'].map((name) => startUpstream(name)));
    gw = await startGateway(serviceYaml(upstreams.map((u) => u.url), '    loadBalancer: consistent-hash\n    hashKey: ip'), { server: 'trustedProxies: ["127.0.0.0/8", "10.0.0.0/8"]' });
  });
  after(async () => {
    await gw.stop();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  test('from a trusted peer the forwarding headers are kept and the peer is appended', async () => {
    const answer = await rawRequest(gw.url, {
      path: '/x/fwd',
      headers: { host: 'edge.example', 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example', 'x-real-ip': '203.0.113.7', forwarded: 'for=203.0.113.7' },
    });
    const seen = JSON.parse(answer.body).headers;
    assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['x-forwarded-host'], 'shop.example');
    assert.equal(seen['x-real-ip'], '203.0.113.7');
    assert.equal(seen.forwarded, 'for=203.0.113.7');
  });

  test('hashKey ip uses the right-most address that is not a trusted proxy', async () => {
    const instanceFor = async (xff: string) => JSON.parse((await rawRequest(gw.url, { path: '/x/h', headers: { 'x-forwarded-for': xff } })).body).instance as string;
    const seen = new Set<string>();
    for (let i = 1; i <= 40; i++) {
      const client = `198.51.100.${i}`;
      const direct = await instanceFor(client);
      assert.equal(await instanceFor(`192.0.2.99, ${client}, 10.1.2.3`), direct, 'a trusted hop after the client and anything before it do not move the key');
      seen.add(direct);
    }
    assert.ok(seen.size > 1, 'different clients spread over instances');
  });
});

describe('limits', { timeout: 30_000 }, () => {
  test('a Content-Length over maxBodySize gets 413 PAYLOAD_TOO_LARGE and nothing reaches the upstream', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url]), { server: 'maxBodySize: 1KiB' });
    try {
      const answer = await rawRequest(gw.url, { method: 'POST', path: '/x/big', body: 'a'.repeat(2048), headers: { 'content-length': '2048' } });
      assert.equal(answer.status, 413);
      assert.equal(JSON.parse(answer.body).error.code, 'PAYLOAD_TOO_LARGE');
      assert.equal(upstream.received.length, 0);
      assert.equal((await rawRequest(gw.url, { method: 'POST', path: '/x/small', body: 'a'.repeat(1024), headers: { 'content-length': '1024' } })).status, 200);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });

  test('a chunked body that grows past maxBodySize is cut: 413, and the upstream request is aborted', async () => {
    const upstream = await startUpstream('u');
    upstream.mode = 'hang';
    const gw = await startGateway(serviceYaml([upstream.url]), { server: 'maxBodySize: 1KiB' });
    try {
      const { port } = new URL(gw.url);
      const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/x/stream', agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk) => { body += chunk; });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.write('a'.repeat(800));
        setImmediate(() => req.write('b'.repeat(800)));
      });
      assert.equal(result.status, 413);
      assert.equal(JSON.parse(result.body).error.code, 'PAYLOAD_TOO_LARGE');
      await waitFor('the upstream connection to be closed', () => upstream.openSockets() === 0);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });

  test('headersTimeout: a client that never finishes its headers is disconnected', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url]), { server: 'headersTimeout: 300ms' });
    try {
      const raw = rawSocket(gw.url);
      raw.socket.write('GET /x/slow HTTP/1.1\r\nHost: a.example\r\nX-Drip: 1');
      await raw.closed;
      assert.equal(upstream.received.length, 0);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });

  test('requestTimeout: a body that does not arrive in time gets 408 REQUEST_TIMEOUT and a closed connection', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url]), { server: 'requestTimeout: 400ms' });
    try {
      const raw = rawSocket(gw.url);
      raw.socket.write('POST /x/slow HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\n12345');
      await raw.closed;
      assert.match(raw.text(), /^HTTP\/1\.1 408 /, raw.text());
      assert.match(raw.text(), /"code":"REQUEST_TIMEOUT"/);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });

  test('maxConnections: a connection past the limit is closed at once', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url]), { server: 'maxConnections: 2' });
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const raw = rawSocket(gw.url);
        raw.socket.write('GET /x/keep HTTP/1.1\r\nHost: a.example\r\n\r\n');
        await waitFor('an answer on a held connection', () => raw.text().includes('\r\n\r\n'));
        held.push(raw.socket);
      }
      const extra = rawSocket(gw.url);
      extra.socket.write('GET /x/keep HTTP/1.1\r\nHost: a.example\r\n\r\n');
      await extra.closed;
      assert.equal(extra.text(), '', 'no answer on the refused connection');
      held[0]!.destroy();
      await waitFor('a freed slot to serve again', async () => {
        try {
          return (await rawRequest(gw.url, { path: '/x/again' })).status === 200;
        } catch {
          return false;
        }
      });
    } finally {
      for (const socket of held) socket.destroy();
      await gw.stop();
      await upstream.close();
    }
  });

  test('maxInFlight: past it a route sheds load with 503 OVERLOADED and Retry-After, before the upstream', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url], '    maxInFlight: 1'));
    try {
      upstream.mode = 'hang';
      const { port } = new URL(gw.url);
      const first = httpRequest({ host: '127.0.0.1', port, path: '/x/hold', agent: false });
      first.on('error', () => undefined);
      first.end();
      await waitFor('the first request to reach the upstream', () => upstream.received.length === 1);
      const second = await rawRequest(gw.url, { path: '/x/shed' });
      assert.equal(second.status, 503);
      assert.equal(JSON.parse(second.body).error.code, 'OVERLOADED');
      assert.equal(second.headers['retry-after'], '1');
      assert.equal(upstream.received.length, 1);
      first.destroy();
      upstream.mode = 'ok';
      await waitFor('the slot to free once the first client leaves', async () => (await rawRequest(gw.url, { path: '/x/after' })).status === 200);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });
});

describe('upstream faults', { timeout: 30_000 }, () => {
  test('a slow-drip response is cut by the idle-body timeout: the client sees no clean end', async () => {
    const timers: NodeJS.Timeout[] = [];
    const upstream = await startUpstream('drip', {
      handler: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('a');
        // After the first byte, nothing more: the gateway's 300 ms body timeout must cut it.
        timers.push(setTimeout(() => res.end('b'.repeat(999)), 60_000));
      },
    });
    const gw = await startGateway(serviceYaml([upstream.url], '    timeout: 300ms'));
    try {
      const result = await new Promise<{ status: number; body: string; complete: boolean }>((resolve, reject) => {
        const { port } = new URL(gw.url);
        const req = httpRequest({ host: '127.0.0.1', port, path: '/x/drip', agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk) => { body += chunk; });
          res.on('error', () => undefined);
          res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(result.status, 200);
      assert.equal(result.body, 'a');
      assert.equal(result.complete, false);
      assert.equal(await waitFor('the timeout to be counted', async () => {
        const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
        return /waygate_upstream_attempts_total\{service="svc",outcome="timeout"\} 1/.test(text);
      }), true);
    } finally {
      for (const timer of timers) clearTimeout(timer);
      await gw.stop();
      await upstream.close();
    }
  });

  test('request headers over 16 KiB get 431 HEADERS_TOO_LARGE as JSON', async () => {
    const upstream = await startUpstream('u');
    const gw = await startGateway(serviceYaml([upstream.url]));
    try {
      const text = await rawRoundTrip(gw.url, `GET /x/a HTTP/1.1\r\nHost: a.example\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      assert.match(text, /^HTTP\/1\.1 431 /, text.slice(0, 200));
      assert.match(text, /"code":"HEADERS_TOO_LARGE"/);
      assert.equal(upstream.received.length, 0);
      await waitFor('the 431 to be counted', async () => (await metricValue(gw.adminUrl, 'waygate_requests_total', { route: '(none)', code: '431' })) === 1);
    } finally {
      await gw.stop();
      await upstream.close();
    }
  });
});

describe('admin token', () => {
  let upstream: TestUpstream;
  let gw: RunningGateway;
  before(async () => {
    upstream = await startUpstream('u');
    gw = await startGateway(serviceYaml([upstream.url]), { admin: 'token: "s3cret-token"' });
  });
  after(async () => {
    await gw.stop();
    await upstream.close();
  });

  test('every admin path but the health checks needs the bearer token; otherwise 401 JSON', async () => {
    for (const path of ['/metrics', '/admin/routes', '/no-such-admin-path']) {
      for (const authorization of [undefined, 'Bearer wrong', 'Bearer s3cret-tokenX', 'Bearer ', 's3cret-token', 'Basic czNjcmV0LXRva2Vu']) {
        const response = await fetch(`${gw.adminUrl}${path}`, { headers: authorization === undefined ? {} : { authorization } });
        assert.equal(response.status, 401, `${path} with ${authorization}`);
        assert.equal(response.headers.get('www-authenticate'), 'Bearer');
        assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      }
    }
    const ok = await fetch(`${gw.adminUrl}/admin/routes`, { headers: { authorization: 'Bearer s3cret-token' } });
    assert.equal(ok.status, 200);
    const metrics = await fetch(`${gw.adminUrl}/metrics?x=1`, { headers: { authorization: 'Bearer s3cret-token' } });
    assert.equal(metrics.status, 200);
  });

  test('the health checks stay open for orchestrators', async () => {
    assert.equal((await fetch(`${gw.adminUrl}/health/live`)).status, 200);
    assert.equal((await fetch(`${gw.adminUrl}/health/ready`)).status, 200);
    assert.equal((await fetch(`${gw.adminUrl}/health/ready?probe=1`)).status, 200);
  });
});
