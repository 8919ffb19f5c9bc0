import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { type RunningGateway, startGateway, waitFor } from '../support/gateway.ts';
import { startUpstream, type TestUpstream } from '../support/upstream.ts';

let dir: string;
let ca: string;
let upstream: TestUpstream;

/** Signs a fresh certificate for 127.0.0.1/localhost with the test CA into name.pem / name.key. */
function issue(name: string): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'waygate-tls-term-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=waygate test CA'], { cwd: dir, stdio: 'pipe' });
  ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
  issue('first');
  issue('second');
  copyFileSync(join(dir, 'first.pem'), join(dir, 'live.pem'));
  copyFileSync(join(dir, 'first.key'), join(dir, 'live.key'));
  upstream = await startUpstream('u', {
    handler: (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ httpVersion: req.httpVersion, proto: req.headers['x-forwarded-proto'], host: req.headers['x-forwarded-host'] }));
    },
  });
});

after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function yaml(): string {
  return `
registry:
  static:
    services:
      u: { instances: ["${upstream.url}"] }
routes:
  - { name: u, match: { pathPrefix: / }, service: u }
`;
}

/** The CN of the certificate a fresh TLS handshake gets, and the ALPN protocol chosen. */
function handshake(url: string, alpn: string[]): Promise<{ cn: string; alpn: string | false }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca, ALPNProtocols: alpn, servername: 'localhost' }, () => {
      const cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      resolve({ cn, alpn: socket.alpnProtocol ?? false });
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('TLS on the public port', () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGateway(yaml(), { server: `tls: { cert: "${join(dir, 'live.pem')}", key: "${join(dir, 'live.key')}" }` });
  });
  after(async () => {
    await gw.stop();
  });

  test('HTTP/1.1 over TLS: upstream gets HTTP/1.1 with x-forwarded-proto https', async () => {
    assert.match(gw.url, /^https:/);
    const { port } = new URL(gw.url);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/h1', ca, servername: 'localhost', agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => { body += chunk; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), { httpVersion: '1.1', proto: 'https', host: `127.0.0.1:${port}` });
  });

  test('HTTP/2 by ALPN: the client speaks h2, the upstream still gets HTTP/1.1', async () => {
    assert.equal((await handshake(gw.url, ['h2', 'http/1.1'])).alpn, 'h2');
    assert.equal((await handshake(gw.url, ['http/1.1'])).alpn, 'http/1.1');
    const session = http2Connect(gw.url, { ca, servername: 'localhost' });
    try {
      const answer = await new Promise<{ status: number; body: string; requestId: unknown }>((resolve, reject) => {
        const stream = session.request({ ':path': '/h2', ':method': 'GET' });
        let status = 0;
        let requestId: unknown;
        let body = '';
        stream.on('response', (headers) => { status = Number(headers[':status']); requestId = headers['x-request-id']; });
        stream.on('data', (chunk) => { body += chunk; });
        stream.on('end', () => resolve({ status, body, requestId }));
        stream.on('error', reject);
        stream.end();
      });
      assert.equal(answer.status, 200);
      assert.equal(typeof answer.requestId, 'string');
      assert.equal(JSON.parse(answer.body).httpVersion, '1.1');
      assert.equal(JSON.parse(answer.body).proto, 'https');
    } finally {
      session.close();
    }
  });

  test('new certificate files are picked up without dropping open connections', async () => {
    assert.equal((await handshake(gw.url, ['h2'])).cn, 'first');
    const session = http2Connect(gw.url, { ca, servername: 'localhost' });
    const get = (path: string) => new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':path': path });
      let status = 0;
      stream.on('response', (headers) => { status = Number(headers[':status']); });
      stream.on('data', () => undefined);
      stream.on('end', () => resolve(status));
      stream.on('error', reject);
      stream.end();
    });
    try {
      assert.equal(await get('/before'), 200);
      copyFileSync(join(dir, 'second.key'), join(dir, 'live.key'));
      copyFileSync(join(dir, 'second.pem'), join(dir, 'live.pem'));
      await waitFor('new handshakes to get the new certificate', async () => (await handshake(gw.url, ['h2'])).cn === 'second', 15_000, 100);
      assert.equal(await get('/after'), 200, 'the session opened before the reload still serves');
      assert.equal(session.closed || session.destroyed, false);
    } finally {
      session.close();
    }
  });
});

describe('TLS start-up errors', () => {
  test('a key that does not match the certificate is a clear error', async () => {
    await assert.rejects(
      startGateway(yaml(), { server: `tls: { cert: "${join(dir, 'first.pem')}", key: "${join(dir, 'second.key')}" }` }),
      /server\.tls: .*first\.pem and .*second\.key are not a usable certificate and key/,
    );
  });

  test('a missing file names the key and the path', async () => {
    await assert.rejects(
      startGateway(yaml(), { server: `tls: { cert: "${join(dir, 'nope.pem')}", key: "${join(dir, 'first.key')}" }` }),
      /server\.tls\.cert: cannot read .*nope\.pem/,
    );
  });
});
