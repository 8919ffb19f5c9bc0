import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { formatProblem, parseConfig } from '../../src/config/load.ts';
import { applicableConfig, restartRequired } from '../../src/config/reload.ts';
import type { GatewayConfig } from '../../src/config/types.ts';

const FILE = 'gw.yaml';

function ok(text: string, env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const r = parseConfig(text, { file: FILE, env });
  if (!r.ok) assert.fail(`expected a valid config, got:\n${r.problems.map(formatProblem).join('\n')}`);
  return r.config;
}

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  const r = parseConfig(text, { file: FILE, env });
  assert.equal(r.ok, false, 'expected problems');
  return r.ok ? [] : r.problems.map(formatProblem);
}

const ROUTE = `routes:
  - { name: hello, match: { pathPrefix: /hello }, service: hello }`;

describe('registry.etcd', () => {
  it('defaults: the local endpoint, prefix /services/, no auth, no TLS, no registration', () => {
    const config = ok(`registry:\n  etcd: {}\n${ROUTE}`);
    assert.deepEqual(config.registry.etcd, { endpoints: ['http://127.0.0.1:2379'], prefix: '/services/' });
    assert.equal(config.routes[0]!.registry, undefined);
  });

  it('every key, normalised: endpoints as origins (deduplicated), register.ttl in ms', () => {
    const config = ok(`registry:
  etcd:
    endpoints: [http://10.0.0.1:2379/, "https://etcd.internal:2379", http://10.0.0.1:2379]
    prefix: /svc/
    username: gw
    password: secret
    tls: { ca: /ca.pem, cert: /c.pem, key: /k.pem }
    register: { service: edge, id: gw1, address: "10.0.0.7:8080", ttl: 15s }
${ROUTE}`);
    assert.deepEqual(config.registry.etcd, {
      endpoints: ['http://10.0.0.1:2379', 'https://etcd.internal:2379'],
      prefix: '/svc/',
      username: 'gw',
      password: 'secret',
      tls: { ca: '/ca.pem', cert: '/c.pem', key: '/k.pem' },
      instanceTls: { ca: '/ca.pem', insecureSkipVerify: false },
      register: { service: 'edge', id: 'gw1', address: '10.0.0.7:8080', ttlMs: 15_000 },
    });
  });

  it('register defaults: service waygate, id waygate-<hostname>, ttl 10s, address from the listener at start', () => {
    const config = ok(`registry:\n  etcd: { register: {} }\n${ROUTE}`);
    assert.deepEqual(config.registry.etcd!.register, { service: 'waygate', id: `waygate-${hostname()}`, ttlMs: 10_000 });
  });

  it('ETCD_USERNAME / ETCD_PASSWORD fill absent YAML keys; YAML wins', () => {
    const env = { ETCD_USERNAME: 'envuser', ETCD_PASSWORD: 'envpass' };
    const fromEnv = ok(`registry:\n  etcd: {}\n${ROUTE}`, env).registry.etcd!;
    assert.equal(fromEnv.username, 'envuser');
    assert.equal(fromEnv.password, 'envpass');
    const fromYaml = ok(`registry:\n  etcd: { username: y, password: p }\n${ROUTE}`, env).registry.etcd!;
    assert.equal(fromYaml.username, 'y');
    assert.equal(fromYaml.password, 'p');
  });

  it('reports bad values at their line', () => {
    const found = problems(`registry:
  etcd:
    endpoints: [127.0.0.1:2379, http://h:1/path]
    prefix: ""
    tls: { cert: /c.pem }
    register: { id: "a/b", ttl: 100ms, weight: 2 }
${ROUTE}`);
    assert.deepEqual(found, [
      'gw.yaml:3:17 registry.etcd.endpoints[0]: must be an http:// or https:// origin like http://127.0.0.1:2379',
      'gw.yaml:3:33 registry.etcd.endpoints[1]: must be an http:// or https:// origin like http://127.0.0.1:2379',
      'gw.yaml:4:13 registry.etcd.prefix: must not be empty',
      'gw.yaml:5:10 registry.etcd.tls.key: is required when tls.cert is set',
      'gw.yaml:6:21 registry.etcd.register.id: must not contain "/" (keys are <prefix><service>/<id>)',
      'gw.yaml:6:33 registry.etcd.register.ttl: must be at least 1s',
      'gw.yaml:6:40 registry.etcd.register.weight: unknown key "weight"',
    ]);
  });

  it('a password needs a username', () => {
    assert.deepEqual(problems(`registry:\n  etcd: {}\n${ROUTE}`, { ETCD_PASSWORD: 'p' }), ['gw.yaml:2:9 registry.etcd.username: is required when a password is set (YAML or env ETCD_PASSWORD)']);
  });

  it('is restart-only on reload', () => {
    const a = ok(`registry:\n  etcd: { prefix: /a/ }\n${ROUTE}`);
    const b = ok(`registry:\n  etcd: { prefix: /b/ }\n${ROUTE}`);
    assert.deepEqual(restartRequired(a, b), ['registry.etcd.prefix']);
    assert.equal(applicableConfig(a, b).registry.etcd?.prefix, '/a/', 'the running etcd client is kept');
  });
});

describe('route registry', () => {
  const BOTH = `registry:
  static:
    services:
      local: { instances: [http://127.0.0.1:3001] }
  consul: {}
  etcd: {}
`;

  it('a route may name its registry; with one dynamic registry it is optional', () => {
    const config = ok(`registry:\n  etcd: {}\nroutes:\n  - { name: a, match: { pathPrefix: /a }, service: hello, registry: etcd }\n  - { name: b, match: { pathPrefix: /b }, service: other }`);
    assert.equal(config.routes[0]!.registry, 'etcd');
    assert.equal(config.routes[1]!.registry, undefined);
  });

  it('with consul and etcd both configured, a route of a non-static service must name one', () => {
    const found = problems(`${BOTH}routes:
  - { name: a, match: { pathPrefix: /a }, service: hello }
  - { name: b, match: { pathPrefix: /b }, service: hello, registry: etcd }
  - { name: c, match: { pathPrefix: /c }, service: hello, registry: consul }
  - { name: d, match: { pathPrefix: /d }, service: local }
  - name: e
    match: { pathPrefix: /e }
    split: [{ service: local, weight: 1 }, { service: remote, weight: 1 }]
`);
    assert.deepEqual(found, [
      'gw.yaml:8:5 routes[0].registry: is required: both consul and etcd are configured (say which one serves this route)',
      'gw.yaml:12:5 routes[4].registry: is required: both consul and etcd are configured (say which one serves this route)',
    ]);
  });

  it('naming a registry that is not configured, or a static service that does not exist, is an error', () => {
    const found = problems(`registry:\n  etcd: {}\nroutes:
  - { name: a, match: { pathPrefix: /a }, service: hello, registry: consul }
  - { name: b, match: { pathPrefix: /b }, service: nope, registry: static }
  - { name: c, match: { pathPrefix: /c }, service: hello, registry: zookeeper }`);
    assert.deepEqual(found, [
      'gw.yaml:4:69 routes[0].registry: names registry "consul", but registry.consul is not configured',
      'gw.yaml:5:52 routes[1].service: unknown service "nope" (not in registry.static.services)',
      'gw.yaml:6:69 routes[2].registry: must be one of static, consul, etcd',
    ]);
  });

  it('datacenters need a consul route', () => {
    const found = problems(`registry:\n  consul: {}\n  etcd: {}\nroutes:\n  - { name: a, match: { pathPrefix: /a }, service: hello, registry: etcd, datacenters: [dc1] }`);
    assert.deepEqual(found, ['gw.yaml:5:88 routes[0].datacenters: needs registry.consul (datacenters are Consul datacenters)']);
  });
});

describe('registry.etcd.instanceTls', () => {
  it("verifies https instances with its own CA, else the one that verifies etcd, else none is set", () => {
    const with_ = (extra: string) => ok(`registry:\n  etcd: { ${extra} }\n${ROUTE}`).registry.etcd?.instanceTls;
    assert.deepEqual(with_('instanceTls: { ca: /i.pem, serverName: api.internal }'), { ca: '/i.pem', serverName: 'api.internal', insecureSkipVerify: false });
    assert.deepEqual(with_('tls: { ca: /etcd-ca.pem }'), { ca: '/etcd-ca.pem', insecureSkipVerify: false });
    assert.equal(with_('prefix: /p/'), undefined);
  });
});
