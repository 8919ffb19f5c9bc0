import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { captureLogs } from '../support/logs.ts';
import { ConsulDouble } from '../support/consul-double.ts';
import { rawRequest, startGateway, waitFor } from '../support/gateway.ts';

/** A throwaway CA and a server certificate for `api.internal` signed by it, made with openssl. */
function makeCertificates(dir: string): { ca: string; key: string; cert: string; otherCa: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=waygate test CA');
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=some other CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=api.internal');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:api.internal\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  return { ca: join(dir, 'ca.pem'), key: join(dir, 'server.key'), cert: join(dir, 'server.pem'), otherCa: join(dir, 'other.pem') };
}

let dir: string;
let certs: ReturnType<typeof makeCertificates>;
let server: Server;
let url: string;
let port: number;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'waygate-tls-'));
  certs = makeCertificates(dir);
  server = createServer({ key: readFileSync(certs.key), cert: readFileSync(certs.cert) }, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ tls: true, url: req.url, sni: (req.socket as import('node:tls').TLSSocket).servername ?? null }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  url = `https://127.0.0.1:${port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function yaml(tls: string): string {
  return `
registry:
  static:
    services:
      api:
        instances: ["${url}"]
${tls}
routes:
  - { name: api, match: { pathPrefix: /api }, service: api, retries: 0 }
`;
}

describe('https:// instances', () => {
  test('are verified by default: a certificate from an unknown CA is refused with 502', async () => {
    const gw = await startGateway(yaml(''));
    try {
      const answer = await rawRequest(gw.url, { path: '/api/x' });
      assert.equal(answer.status, 502);
    } finally {
      await gw.stop();
    }
  });

  test('with the service CA and serverName, the instance is verified and reached over TLS (SNI = serverName)', async () => {
    const gw = await startGateway(yaml(`        tls: { ca: "${certs.ca}", serverName: api.internal }`));
    try {
      const answer = await rawRequest(gw.url, { path: '/api/x' });
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(JSON.parse(answer.body), { tls: true, url: '/api/x', sni: 'api.internal' });
    } finally {
      await gw.stop();
    }
  });

  test('the CA alone is not enough when the certificate names another host', async () => {
    const gw = await startGateway(yaml(`        tls: { ca: "${certs.ca}" }`));
    try {
      assert.equal((await rawRequest(gw.url, { path: '/api/x' })).status, 502);
    } finally {
      await gw.stop();
    }
  });

  test('a different CA does not verify it', async () => {
    const gw = await startGateway(yaml(`        tls: { ca: "${certs.otherCa}", serverName: api.internal }`));
    try {
      assert.equal((await rawRequest(gw.url, { path: '/api/x' })).status, 502);
    } finally {
      await gw.stop();
    }
  });

  test('insecureSkipVerify accepts it, and says so in the log at start', async () => {
    const { logger, lines } = captureLogs();
    const gw = await startGateway(yaml('        tls: { insecureSkipVerify: true }'), { logger });
    try {
      assert.equal((await rawRequest(gw.url, { path: '/api/x' })).status, 200);
      assert.ok(lines().some((line) => line.level === 40 && String(line.msg).includes('insecureSkipVerify')), 'a warning was logged');
    } finally {
      await gw.stop();
    }
  });

  test('an unreadable CA file is a clear start-up error', async () => {
    await assert.rejects(startGateway(yaml(`        tls: { ca: "${join(dir, 'missing.pem')}" }`)), /service api: cannot read the CA file .*missing\.pem/);
    await assert.rejects(startGateway(yaml(`        tls: { ca: "${certs.key}" }`)), /holds no PEM certificate/);
  });
});

describe('Consul instances marked https', () => {
  const marks: Array<[string, { meta?: Record<string, string>; tags?: string[] }]> = [
    ['Service.Meta waygate-scheme: https', { meta: { 'waygate-scheme': 'https' } }],
    ['the tag waygate.scheme=https', { tags: ['waygate.scheme=https'] }],
  ];
  for (const [how, mark] of marks) {
    test(`are dialled over TLS when marked with ${how}`, async () => {
      const double = new ConsulDouble({ maxJitterFraction: 0 });
      await double.start();
      double.register({ id: 'api-1', name: 'api', address: '127.0.0.1', port, ...mark });
      const gw = await startGateway(`
registry:
  consul:
    address: "${double.address}"
    wait: 2s
    instanceTls: { ca: "${certs.ca}", serverName: api.internal }
routes:
  - { name: api, match: { pathPrefix: /api }, service: api, retries: 0 }
`);
      try {
        await waitFor('the Consul instance to be routed', async () => (await fetch(`${gw.adminUrl}/health/ready`)).status === 200);
        const answer = await rawRequest(gw.url, { path: '/api/c' });
        assert.equal(answer.status, 200, answer.body);
        assert.equal(JSON.parse(answer.body).tls, true);
        const routes = (await (await fetch(`${gw.adminUrl}/admin/routes`)).json()) as { services: Record<string, { instances: Array<{ url: string }> }> };
        assert.equal(routes.services.api!.instances[0]!.url, `https://127.0.0.1:${port}`);
      } finally {
        await gw.stop();
        await double.stop();
      }
    });
  }
});
