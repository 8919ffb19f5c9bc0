import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { diffConfig } from '../../src/config/diff.ts';
import { parseConfig } from '../../src/config/load.ts';
import { applicableConfig, restartRequired } from '../../src/config/reload.ts';
import type { GatewayConfig } from '../../src/config/types.ts';

const SERVICES = `registry:
  static:
    services:
      hello: { instances: ["http://127.0.0.1:3001"] }
      secure.api: { instances: ["https://10.0.0.5:8443"] }
`;
const ROUTES = `routes:
  - { name: hello, match: { pathPrefix: /hello }, service: hello }
`;

function config(head: string, services = SERVICES, routes = ROUTES): GatewayConfig {
  const result = parseConfig(`${head}\n${services}${routes}`, { file: 't.yaml', env: {} });
  if (!result.ok) assert.fail(result.problems.map((p) => `${p.path}: ${p.reason}`).join('\n'));
  return result.config;
}

const BASE = config('');

describe('diffConfig', () => {
  it('finds nothing between equal configs', () => {
    assert.deepEqual(diffConfig(BASE, config('')), { changed: [], restartRequired: [], live: [] });
  });

  it('names keys as the YAML does, durations without their Ms', () => {
    const next = config('server: { headersTimeout: 5s }\nshutdown: { drainDelay: 1s }\ndefaults: { timeout: 3s }');
    assert.deepEqual(diffConfig(BASE, next).changed, ['server.headersTimeout', 'shutdown.drainDelay', 'defaults.timeout', 'routes[0].timeout']);
  });

  it('lists listener, worker, admin, Consul and access-log keys as needing a restart', () => {
    const next = config(`server: { host: 127.0.0.1, port: 8081, workers: 4 }
admin: { host: 0.0.0.0, port: 9902 }
accessLog: { enabled: true }
shutdown: { timeout: 10s }`);
    const diff = diffConfig(BASE, next);
    assert.deepEqual(diff.restartRequired, ['server.host', 'server.port', 'server.workers', 'admin.host', 'admin.port', 'accessLog.enabled']);
    assert.deepEqual(diff.live, ['shutdown.timeout']);
    assert.deepEqual(diff.changed, [...diff.restartRequired.slice(0, 5), 'shutdown.timeout', 'accessLog.enabled']);
  });

  it('reports an added or removed block as one key', () => {
    const withConsul = config('registry: { consul: { address: "http://127.0.0.1:8500" } }', '', ROUTES);
    const staticOnly = config('', 'registry: { static: { services: { hello: { instances: ["http://127.0.0.1:3001"] } } } }\n');
    assert.deepEqual(diffConfig(staticOnly, withConsul).restartRequired, ['registry.consul']);
    assert.deepEqual(diffConfig(staticOnly, withConsul).live, ['registry.static.services.hello']);
    assert.deepEqual(diffConfig(BASE, config('server: { tls: { cert: /c.pem, key: /k.pem } }')).changed, ['server.tls']);
  });

  it('compares a list of values as one key and lists of mappings item by item', () => {
    const next = config(
      'server: { trustedProxies: [10.0.0.0/8] }',
      SERVICES.replace('instances: ["http://127.0.0.1:3001"]', 'instances: ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]'),
      `${ROUTES}  - { name: two, match: { pathPrefix: /two }, service: hello, retryOn: [reset] }\n`,
    );
    assert.deepEqual(diffConfig(BASE, next).changed, ['server.trustedProxies', 'registry.static.services.hello.instances[1]', 'routes[1]']);
    const retry = config('', SERVICES, ROUTES.replace('service: hello', 'service: hello, retryOn: [reset, 503]'));
    assert.deepEqual(diffConfig(BASE, retry).changed, ['routes[0].retryOn']);
  });

  it('keeps names the user chose as they are, quoted where they are not plain words', () => {
    const services = SERVICES.replace('https://10.0.0.5:8443', 'https://10.0.0.6:8443') + '      timeoutMs: { instances: ["http://127.0.0.1:1"] }\n';
    assert.deepEqual(diffConfig(BASE, config('', services)).changed, [
      'registry.static.services["secure.api"].instances[0].url',
      'registry.static.services.timeoutMs',
    ]);
  });
});

describe('reload: restartRequired and applicableConfig', () => {
  const samples = [
    BASE,
    config('server: { port: 9000, workers: 2, maxConnections: 5 }'),
    config('admin: { token: t }\naccessLog: { enabled: true, path: /var/log/gw.log }'),
    config('defaults: { retries: 0 }\nshutdown: { drainDelay: 0s }'),
    config('', `${SERVICES}  consul: { address: "http://10.0.0.1:8500", tagRoutes: true }\n`),
    config('server: { host: 127.0.0.1 }', `${SERVICES}  consul: { address: "http://10.0.0.2:8500" }\n`, `${ROUTES}  - { name: b, match: { pathPrefix: /b }, service: secure.api }\n`),
  ];

  it('restartRequired is the diff of the restart-only keys', () => {
    assert.deepEqual(restartRequired(BASE, samples[1] as GatewayConfig), ['server.port', 'server.workers', 'server.maxConnections']);
    assert.deepEqual(restartRequired(BASE, samples[2] as GatewayConfig), ['admin.token', 'accessLog.enabled', 'accessLog.path']);
    assert.deepEqual(restartRequired(BASE, samples[3] as GatewayConfig), []);
    assert.deepEqual(restartRequired(samples[4] as GatewayConfig, samples[5] as GatewayConfig), ['server.host', 'registry.consul.address', 'registry.consul.tagRoutes']);
  });

  it('applies every live change and none of the restart-only ones, for any pair of configs', () => {
    for (const running of samples) {
      for (const next of samples) {
        const applied = applicableConfig(running, next);
        const wanted = diffConfig(running, next);
        const got = diffConfig(running, applied);
        assert.deepEqual(got.restartRequired, []);
        assert.deepEqual(got.changed, wanted.live);
        assert.deepEqual(diffConfig(applied, next).changed, wanted.restartRequired);
        // A running config without Consul keeps none, rather than a consul key set to undefined.
        if (running.registry.consul === undefined) assert.ok(!Object.hasOwn(applied.registry, 'consul'));
      }
    }
  });
});

describe('keys read only at start inside live sections', () => {
  it("a static service's tls is reported as needing a restart; its instances are still live", async () => {
    const { parseConfig } = await import('../../src/config/load.ts');
    const { diffConfig } = await import('../../src/config/diff.ts');
    const yaml = (ca: string, port: number) => `registry:\n  static:\n    services:\n      api: { instances: ["https://127.0.0.1:${port}"], tls: { serverName: ${ca} } }\nroutes:\n  - { name: r, match: { pathPrefix: /r }, service: api }\n`;
    const parse = (text: string) => {
      const result = parseConfig(text, { file: 'gw.yaml', env: {} });
      assert.ok(result.ok);
      return result.config;
    };
    const diff = diffConfig(parse(yaml('a.internal', 9001)), parse(yaml('b.internal', 9002)));
    assert.deepEqual(diff.restartRequired, ['registry.static.services.api.tls.serverName']);
    assert.deepEqual(diff.live, ['registry.static.services.api.instances[0].url']);
  });
});
