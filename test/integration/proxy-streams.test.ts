import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { deadPort, startUpstream, type TestUpstream } from '../support/upstream.ts';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A plain node:http upstream that sees the raw request stream (startUpstream reads bodies as text first). */
async function startRawServer(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Sends a request whose body is written by `write` and returns status, headers and the whole body. */
function send(
  url: string,
  options: { method?: string; headers?: Record<string, string | number> },
  write: (req: import('node:http').ClientRequest) => void | Promise<void>,
  onFirstChunk?: () => void,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = httpRequest(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          if (chunks.length === 0) onFirstChunk?.();
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    Promise.resolve(write(req)).catch(reject);
  });
}

/** Deterministic pseudo-random content, so upstream and test can both compute it. */
function pattern(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const BIG_RESPONSE = pattern(8 * 1024 * 1024, 7);
const BIG_RESPONSE_SHA = sha256(BIG_RESPONSE);

let textUpstream: TestUpstream;
let raw: { server: Server; url: string };
let wsServer: WebSocketServer;
let wsUrl: string;
const wsSeen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
let gw: RunningGateway;
let dead: number;

/** Streaming probes: the upstream waits on these before sending/finishing. */
let releaseResponse: (() => void) | undefined;
let requestFirstChunkSeen = false;

before(async () => {
  dead = await deadPort();
  // startUpstream: answers the sha256 and length of the text body it read, or echoes it.
  textUpstream = await startUpstream('text', {
    handler: (request, response, body) => {
      if (request.url?.startsWith('/echo')) {
        response.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'text' });
        response.end(body);
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'text' });
      response.end(JSON.stringify({ sha256: sha256(body), length: Buffer.byteLength(body), contentLength: request.headers['content-length'] ?? null }));
    },
  });
  // raw upstream: pipes binary bodies back, serves a big response, and has streaming probes
  raw = await startRawServer((request, response) => {
    const url = request.url ?? '/';
    if (url.startsWith('/pipe')) {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      request.pipe(response);
      return;
    }
    if (url.startsWith('/big-chunked')) {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      let offset = 0;
      const pump = () => {
        while (offset < BIG_RESPONSE.length) {
          const chunk = BIG_RESPONSE.subarray(offset, offset + 65_536);
          offset += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
        response.end();
      };
      pump();
      return;
    }
    if (url.startsWith('/big-length')) {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG_RESPONSE.length });
      response.end(BIG_RESPONSE);
      return;
    }
    if (url.startsWith('/trickle')) {
      // first chunk now, the rest only once the test saw the first chunk arrive through the gateway
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.write('first;');
      releaseResponse = () => response.end('second');
      return;
    }
    if (url.startsWith('/upload-probe')) {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => {
        requestFirstChunkSeen = true;
        chunks.push(chunk);
      });
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.end(Buffer.concat(chunks).toString());
      });
      return;
    }
    response.writeHead(404);
    response.end();
  });
  wsServer = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wsServer.once('listening', () => resolve()));
  wsUrl = `http://127.0.0.1:${(wsServer.address() as AddressInfo).port}`;
  wsServer.on('connection', (socket, request) => {
    wsSeen.push({ url: request.url ?? '', headers: request.headers });
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  gw = await startGateway(`
registry:
  static:
    services:
      text: { instances: ["${textUpstream.url}"] }
      raw: { instances: ["${raw.url}"] }
      flaky: { instances: ["http://127.0.0.1:${dead}", "${textUpstream.url}"] }
      ws: { instances: ["${wsUrl}"] }
routes:
  - { name: text, match: { pathPrefix: /text }, service: text, stripPrefix: true }
  - { name: raw, match: { pathPrefix: /raw }, service: raw, stripPrefix: true, timeout: 20s }
  - { name: flaky, match: { pathPrefix: /flaky }, service: flaky, stripPrefix: true, retries: 2 }
  - { name: ws, match: { pathPrefix: /ws }, service: ws, stripPrefix: true }
  - { name: wsfull, match: { pathPrefix: /wsfull }, service: ws }
`);
});

after(async () => {
  releaseResponse?.();
  await gw?.stop();
  await textUpstream?.close();
  await closeServer(raw?.server);
  if (wsServer) {
    for (const client of wsServer.clients) client.terminate();
    await new Promise<void>((resolve) => wsServer.close(() => resolve()));
  }
});

describe('request bodies', () => {
  test('a 5 MB POST body arrives intact (hash and length checked by the upstream)', async () => {
    const body = randomBytes(3_932_160).toString('base64'); // 5 MiB of text
    assert.equal(body.length, 5 * 1024 * 1024);
    const response = await fetch(`${gw.url}/text/hash`, { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
    assert.equal(response.status, 200);
    const seen = (await response.json()) as { sha256: string; length: number; contentLength: string | null };
    assert.equal(seen.length, body.length);
    assert.equal(seen.sha256, sha256(body));
    assert.equal(seen.contentLength, String(body.length));
  });

  test('a 5 MB body is echoed back intact', async () => {
    const body = randomBytes(3_932_160).toString('hex').slice(0, 5 * 1024 * 1024);
    const response = await fetch(`${gw.url}/text/echo`, { method: 'PUT', body });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.equal(text.length, body.length);
    assert.equal(sha256(text), sha256(body));
  });

  test('a 5 MB binary body sent chunked (no content-length) is piped back byte for byte', async () => {
    const body = randomBytes(5 * 1024 * 1024);
    const response = await send(`${gw.url}/raw/pipe`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, async (req) => {
      for (let offset = 0; offset < body.length; offset += 256 * 1024) {
        if (!req.write(body.subarray(offset, offset + 256 * 1024))) await new Promise((resolve) => req.once('drain', resolve));
      }
      req.end();
    });
    assert.equal(response.status, 200);
    assert.equal(response.body.length, body.length);
    assert.equal(sha256(response.body), sha256(body));
  });

  test('small bodies (held for retries) arrive intact, also when the first instance refuses the connection', async () => {
    const body = JSON.stringify({ text: 'ünïcödé ✓', filler: 'x'.repeat(10_000) });
    for (let i = 0; i < 4; i++) {
      const response = await fetch(`${gw.url}/flaky/hash`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(response.status, 200, `request ${i}`);
      const seen = (await response.json()) as { sha256: string; length: number };
      assert.equal(seen.length, Buffer.byteLength(body));
      assert.equal(seen.sha256, sha256(body));
    }
  });

  test('the request body is streamed to the upstream before the client has finished sending', async () => {
    requestFirstChunkSeen = false;
    const response = await send(`${gw.url}/raw/upload-probe`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, async (req) => {
      req.write('part-one;');
      // a gateway that buffered the whole body would never let the upstream see this before end()
      await waitFor('the upstream to receive the first body chunk', () => requestFirstChunkSeen);
      req.end('part-two');
    });
    assert.equal(response.status, 200);
    assert.equal(response.body.toString(), 'part-one;part-two');
  });
});

describe('response bodies', () => {
  test('a large chunked response (8 MB) arrives intact', async () => {
    const response = await send(`${gw.url}/raw/big-chunked`, {}, (req) => void req.end());
    assert.equal(response.status, 200);
    assert.equal(response.body.length, BIG_RESPONSE.length);
    assert.equal(sha256(response.body), BIG_RESPONSE_SHA);
  });

  test('a large response with content-length (8 MB) arrives intact with its length', async () => {
    const response = await send(`${gw.url}/raw/big-length`, {}, (req) => void req.end());
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-length'], String(BIG_RESPONSE.length));
    assert.equal(response.body.length, BIG_RESPONSE.length);
    assert.equal(sha256(response.body), BIG_RESPONSE_SHA);
  });

  test('the response is streamed to the client before the upstream has finished it', async () => {
    releaseResponse = undefined;
    let firstChunk = false;
    const pending = send(`${gw.url}/raw/trickle`, {}, (req) => void req.end(), () => {
      firstChunk = true;
    });
    await waitFor('the first response chunk to reach the client', () => firstChunk);
    const release = releaseResponse as (() => void) | undefined; // set by the upstream handler
    assert.ok(release, 'upstream is still holding the rest');
    release();
    const response = await pending;
    assert.equal(response.status, 200);
    assert.equal(response.body.toString(), 'first;second');
  });
});

/** Opens a client WebSocket and resolves once open (or rejects with the HTTP status it got instead). */
function openSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`unexpected response ${res.statusCode}`), { statusCode: res.statusCode }));
      socket.terminate();
    });
    socket.once('error', reject);
  });
}

/** Sends each message and collects as many answers. */
async function exchange(socket: WebSocket, messages: Array<string | Buffer>): Promise<Array<{ data: Buffer; binary: boolean }>> {
  const answers: Array<{ data: Buffer; binary: boolean }> = [];
  const done = new Promise<void>((resolve, reject) => {
    socket.on('message', (data, isBinary) => {
      answers.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]), binary: isBinary });
      if (answers.length === messages.length) resolve();
    });
    socket.once('close', () => reject(new Error('socket closed early')));
  });
  for (const message of messages) socket.send(message, { binary: Buffer.isBuffer(message) });
  await done;
  return answers;
}

async function closeSocket(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return;
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.close();
    setTimeout(() => socket.terminate(), 2000).unref();
  });
}

describe('WebSocket', () => {
  test('upgrades are proxied and messages echo back in order; stripPrefix applies to the upgrade path', async (t) => {
    const before = wsSeen.length;
    const socket = await openSocket(`${gw.url.replace('http', 'ws')}/ws/chat?room=1`, { 'x-request-id': 'ws-req-1' });
    t.after(() => closeSocket(socket));
    const binary = randomBytes(70_000);
    const answers = await exchange(socket, ['one', 'two', 'three', binary]);
    assert.deepEqual(answers.slice(0, 3).map((a) => [a.data.toString(), a.binary]), [['one', false], ['two', false], ['three', false]]);
    assert.equal(answers[3]!.binary, true);
    assert.ok(answers[3]!.data.equals(binary));
    assert.equal(wsSeen.length, before + 1);
    const seen = wsSeen.at(-1)!;
    assert.equal(seen.url, '/chat?room=1');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-request-id'], 'ws-req-1');
  });

  test('without stripPrefix the upstream sees the full upgrade path', async (t) => {
    const socket = await openSocket(`${gw.url.replace('http', 'ws')}/wsfull/chat`);
    t.after(() => closeSocket(socket));
    const answers = await exchange(socket, ['hello']);
    assert.equal(answers[0]!.data.toString(), 'hello');
    assert.equal(wsSeen.at(-1)!.url, '/wsfull/chat');
  });

  test('several sockets at once each get their own echoes', async (t) => {
    const sockets = await Promise.all([1, 2, 3].map((n) => openSocket(`${gw.url.replace('http', 'ws')}/ws/room/${n}`)));
    t.after(() => Promise.all(sockets.map(closeSocket)));
    const answers = await Promise.all(sockets.map((socket, i) => exchange(socket, [`s${i}-a`, `s${i}-b`])));
    assert.deepEqual(answers.map((list) => list.map((a) => a.data.toString())), [['s0-a', 's0-b'], ['s1-a', 's1-b'], ['s2-a', 's2-b']]);
  });

  test('a raw handshake forwards every end-to-end header, Origin included, under the forwarding rules', async () => {
    const before = wsSeen.length;
    const { hostname, port } = new URL(gw.url);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => undefined);
    let reply = '';
    socket.on('data', (chunk) => { reply += chunk.toString('latin1'); });
    socket.write([
      'GET /ws/raw HTTP/1.1',
      'Host: public.example',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      'Origin: https://evil.example',
      'Cookie: sid=1',
      'X-Custom: kept',
      'X-Forwarded-For: 203.0.113.9',
      'X-Real-IP: 203.0.113.9',
      '', '',
    ].join('\r\n'));
    try {
      await waitFor('the switch to WebSocket', () => reply.startsWith('HTTP/1.1 101'));
      const seen = wsSeen.at(-1)!;
      assert.equal(wsSeen.length, before + 1);
      assert.equal(seen.headers.origin, 'https://evil.example', 'the upstream can refuse cross-site WebSocket hijacking');
      assert.equal(seen.headers.cookie, 'sid=1');
      assert.equal(seen.headers['x-custom'], 'kept');
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'a spoofed X-Forwarded-For from an untrusted peer is replaced');
      assert.equal(seen.headers['x-real-ip'], undefined);
      assert.equal(seen.headers['x-forwarded-host'], 'public.example');
      assert.notEqual(seen.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==', 'the upstream leg has its own handshake');
    } finally {
      socket.destroy();
    }
  });

  test('an upgrade with no matching route is refused with 404', async () => {
    const before = wsSeen.length;
    await assert.rejects(openSocket(`${gw.url.replace('http', 'ws')}/nowhere`), (error: Error & { statusCode?: number }) => error.statusCode === 404);
    assert.equal(wsSeen.length, before);
  });
});
