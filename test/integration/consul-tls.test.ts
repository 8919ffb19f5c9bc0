import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { ConsulConfig } from '../../src/config/types.ts';
import { ConsulCallError, ConsulClient } from '../../src/registry/consul/client.ts';

const tlsFile = (name: string) => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url));
const entry = [{ Node: { Node: 'n1', Address: '127.0.0.1' }, Service: { ID: 'web-1', Service: 'web', Address: '', Port: 8080, Tags: [] }, Checks: [] }];

let server: Server;
let address: string;
const tokens: Array<string | undefined> = [];

before(async () => {
  server = createServer({ key: readFileSync(tlsFile('consul-test.key')), cert: readFileSync(tlsFile('consul-test.crt')) }, (request, response) => {
    tokens.push(request.headers['x-consul-token'] as string | undefined);
    response.writeHead(200, { 'content-type': 'application/json', 'x-consul-index': '7' }).end(JSON.stringify(entry));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  address = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function config(tls: ConsulConfig['tls']): ConsulConfig {
  return { address, waitMs: 1_000, consistency: 'default', tagRoutes: false, token: 'tok', tls };
}

test('with the CA and server name configured, the Consul client verifies and talks TLS', async () => {
  const client = new ConsulClient(config({ ca: tlsFile('consul-test.crt'), serverName: 'consul.test', insecureSkipVerify: false }));
  try {
    const answer = await client.get('/v1/health/service/web', { passing: true }, 2_000);
    assert.equal(answer.index, 7n);
    assert.deepEqual(answer.body, entry);
    assert.equal(tokens.at(-1), 'tok');
  } finally {
    await client.close();
  }
});

test('without the CA, an untrusted certificate is refused', async () => {
  const client = new ConsulClient(config(undefined));
  try {
    await assert.rejects(client.get('/v1/health/service/web', {}, 2_000), (error: unknown) => error instanceof ConsulCallError && error.kind === 'unreachable');
  } finally {
    await client.close();
  }
});

test('insecureSkipVerify (CONSUL_HTTP_SSL_VERIFY=false) accepts it', async () => {
  const client = new ConsulClient(config({ insecureSkipVerify: true }));
  try {
    assert.equal((await client.get('/v1/health/service/web', {}, 2_000)).index, 7n);
  } finally {
    await client.close();
  }
});
