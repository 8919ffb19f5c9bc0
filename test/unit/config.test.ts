import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir, hostname } from 'node:os';
import { parseWorkers, usableCores } from '../../src/config/workers.ts';
import { join } from 'node:path';
import { formatDuration, parseDuration } from '../../src/config/duration.ts';
import { formatSize, parseSize } from '../../src/config/size.ts';
import {
  ConfigError,
  DEFAULTS,
  formatProblem,
  loadConfigFile,
  parseConfig,
  type ConfigProblem,
} from '../../src/config/load.ts';
import type { GatewayConfig, RouteDefaults } from '../../src/config/types.ts';

const FILE = 'gw.yaml';

function ok(text: string, env: NodeJS.ProcessEnv = {}, readFile?: (p: string) => string): GatewayConfig {
  const r = parseConfig(text, readFile === undefined ? { file: FILE, env } : { file: FILE, env, readFile });
  if (!r.ok) assert.fail(`expected a valid config, got:\n${r.problems.map(formatProblem).join('\n')}`);
  return r.config;
}

function problems(text: string, env: NodeJS.ProcessEnv = {}, readFile?: (p: string) => string): string[] {
  const r = parseConfig(text, readFile === undefined ? { file: FILE, env } : { file: FILE, env, readFile });
  assert.equal(r.ok, false, 'expected problems');
  return r.ok ? [] : r.problems.map(formatProblem);
}

/** A routes section that is valid against a static service named hello. */
const HELLO = `registry:
  static:
    services:
      hello:
        instances: [http://127.0.0.1:3001]
routes:
  - name: hello
    service: hello
    match: { pathPrefix: /hello }
`;

/** The public listener's limits when the YAML sets none. */
const SERVER_LIMITS = {
  trustedProxies: [],
  maxBodySize: 10 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 65_000,
  maxConnections: 10_000,
  workers: 1,
};

const EXPECTED_ROUTE_DEFAULTS: RouteDefaults = {
  timeoutMs: 30_000,
  connectTimeoutMs: 2_000,
  retries: 2,
  retryOn: ['connect-failure', 'reset'],
  retryBudget: { percent: 20, minConcurrent: 3 },
  maxRetryBodySize: 65_536,
  circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 50, volumeThreshold: 10, windowMs: 10_000, resetTimeoutMs: 10_000 },
  outlierDetection: { consecutiveFailures: 5, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 },
  panicThreshold: 50,
};

describe('parseDuration / formatDuration', () => {
  it('parses valid durations to milliseconds', () => {
    const cases: [unknown, number][] = [
      ['250ms', 250],
      ['5s', 5_000],
      ['5m', 300_000],
      ['1h', 3_600_000],
      ['1m30s', 90_000],
      ['1h2m3s4ms', 3_723_004],
      ['1.5s', 1_500],
      ['0', 0],
      ['0s', 0],
      [0, 0],
      [1500, 1_500],
    ];
    for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, `parseDuration(${JSON.stringify(input)})`);
  });

  it('rejects invalid durations', () => {
    for (const input of ['', '5', '5x', '-1s', '5 s', '5S', 'ms', '1m30', '0.5ms', 's5', -1, 1.5, NaN, null, true, {}, [5]]) {
      assert.equal(parseDuration(input), undefined, `parseDuration(${JSON.stringify(input)})`);
    }
  });

  it('formats in the compound form parseDuration reads back', () => {
    assert.equal(formatDuration(0), '0ms');
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(5_000), '5s');
    assert.equal(formatDuration(90_000), '1m30s');
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(3_723_004), '1h2m3s4ms');
    for (const ms of [1, 999, 1_000, 61_001, 86_400_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
  });
});

describe('parseSize / formatSize', () => {
  it('parses valid sizes to bytes', () => {
    const cases: [unknown, number][] = [
      [0, 0],
      [1024, 1_024],
      ['512B', 512],
      ['64KiB', 65_536],
      ['1MiB', 1_048_576],
      ['1GiB', 1_073_741_824],
      ['100KB', 100_000],
      ['1MB', 1_000_000],
      ['64kib', 65_536],
      ['64 KiB', 65_536],
    ];
    for (const [input, bytes] of cases) assert.equal(parseSize(input), bytes, `parseSize(${JSON.stringify(input)})`);
  });

  it('rejects invalid sizes', () => {
    for (const input of ['', '1.5MiB', '-1', 'KiB', '10XB', '10', '1 TB', -1, 1.5, true, null]) {
      assert.equal(parseSize(input), undefined, `parseSize(${JSON.stringify(input)})`);
    }
  });

  it('formats with the largest exact IEC unit', () => {
    assert.equal(formatSize(65_536), '64KiB');
    assert.equal(formatSize(1_048_576), '1MiB');
    assert.equal(formatSize(1_000), '1000B');
    assert.equal(formatSize(0), '0B');
  });
});

describe('parseConfig: resolved values', () => {
  it('resolves a full config to exact values', () => {
    const text = `server: { host: 10.0.0.1, port: 8000 }
admin: { host: 127.0.0.2, port: 9000 }
shutdown: { drainDelay: 1s, timeout: 1m }
registry:
  static:
    services:
      hello:
        instances: ["http://127.0.0.1:3001/", { url: "https://h2.example:3002", weight: 3 }]
        healthCheck: { path: /ping, interval: 1s, timeout: 500ms, unhealthyThreshold: 3, healthyThreshold: 2 }
      other.svc:
        instances: [http://127.0.0.1:4000]
        healthCheck: {}
  consul:
    address: consul.internal:8500
    token: secret
    datacenter: dc2
    wait: 2m
    tls: { ca: /ca.pem, cert: /c.pem, key: /k.pem, serverName: consul, insecureSkipVerify: true }
    tagRoutes: true
    register: { name: edge, id: edge-1, address: 10.0.0.9, port: 8001, tags: [a, b], checkInterval: 15s }
defaults:
  timeout: 10s
  connectTimeout: 1s
  retries: 1
  retryOn: [connect-failure, 503]
  retryBudget: { percent: 10, minConcurrent: 1 }
  maxRetryBodySize: 1MiB
  circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 40, volumeThreshold: 5, window: 20s, resetTimeout: 15s }
  outlierDetection: { consecutiveFailures: 3, baseEjectionTime: 10s, maxEjectionTime: 100s, maxEjectionPercent: 30 }
  panicThreshold: 40
routes:
  - name: hello
    match: { pathPrefix: /hello, host: A.Example, methods: [get, Post], headers: { X-Canary: "1" } }
    service: hello
    stripPrefix: true
    loadBalancer: consistent-hash
    hashKey: header:X-User-Id
    tags: [v2]
    retries: 4
    retryOn: ["502", 504, 502]
    circuitBreaker: { volumeThreshold: 20 }
    outlierDetection: { maxEjectionPercent: 100 }
  - name: other
    match: { pathPrefix: / }
    service: other.svc
    loadBalancer: least-request
    hashKey: cookie:Session
`;
    const expected: GatewayConfig = {
      server: { host: '10.0.0.1', port: 8000, ...SERVER_LIMITS },
      admin: { host: '127.0.0.2', port: 9000 },
      shutdown: { drainDelayMs: 1_000, timeoutMs: 60_000 },
      accessLog: { enabled: false, path: 'stdout' },
      registry: {
        static: {
          services: {
            hello: {
              instances: [
                { url: 'http://127.0.0.1:3001', weight: 1 },
                { url: 'https://h2.example:3002', weight: 3 },
              ],
              healthCheck: { path: '/ping', intervalMs: 1_000, timeoutMs: 500, unhealthyThreshold: 3, healthyThreshold: 2 },
            },
            'other.svc': {
              instances: [{ url: 'http://127.0.0.1:4000', weight: 1 }],
              healthCheck: { path: '/health', intervalMs: 5_000, timeoutMs: 2_000, unhealthyThreshold: 2, healthyThreshold: 1 },
            },
          },
        },
        consul: {
          address: 'http://consul.internal:8500',
          consistency: 'stale',
          token: 'secret',
          datacenter: 'dc2',
          waitMs: 120_000,
          tls: { ca: '/ca.pem', cert: '/c.pem', key: '/k.pem', serverName: 'consul', insecureSkipVerify: true },
          instanceTls: { ca: '/ca.pem', insecureSkipVerify: true },
          tagRoutes: true,
          register: { name: 'edge', id: 'edge-1', address: '10.0.0.9', port: 8001, tags: ['a', 'b'], checkIntervalMs: 15_000 },
        },
      },
      defaults: {
        timeoutMs: 10_000,
        connectTimeoutMs: 1_000,
        retries: 1,
        retryOn: ['connect-failure', '503'],
        retryBudget: { percent: 10, minConcurrent: 1 },
        maxRetryBodySize: 1_048_576,
        circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 40, volumeThreshold: 5, windowMs: 20_000, resetTimeoutMs: 15_000 },
        outlierDetection: { consecutiveFailures: 3, baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 100_000, maxEjectionPercent: 30 },
        panicThreshold: 40,
      },
      routes: [
        {
          name: 'hello',
          match: { pathPrefix: '/hello', host: 'a.example', methods: ['GET', 'POST'], headers: { 'x-canary': '1' } },
          service: 'hello',
          stripPrefix: true,
          loadBalancer: 'consistent-hash',
          hashKey: { kind: 'header', name: 'x-user-id' },
          tags: ['v2'],
          timeoutMs: 10_000,
          connectTimeoutMs: 1_000,
          retries: 4,
          retryOn: ['502', '504'],
          retryBudget: { percent: 10, minConcurrent: 1 },
          maxRetryBodySize: 1_048_576,
          circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 40, volumeThreshold: 20, windowMs: 20_000, resetTimeoutMs: 15_000 },
          outlierDetection: { consecutiveFailures: 3, baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 100_000, maxEjectionPercent: 100 },
          panicThreshold: 40,
          source: 'yaml',
        },
        {
          name: 'other',
          match: { pathPrefix: '/' },
          service: 'other.svc',
          stripPrefix: false,
          loadBalancer: 'least-request',
          hashKey: { kind: 'cookie', name: 'Session' },
          tags: [],
          timeoutMs: 10_000,
          connectTimeoutMs: 1_000,
          retries: 1,
          retryOn: ['connect-failure', '503'],
          retryBudget: { percent: 10, minConcurrent: 1 },
          maxRetryBodySize: 1_048_576,
          circuitBreaker: { failureStatuses: ['5xx'], errorThresholdPercentage: 40, volumeThreshold: 5, windowMs: 20_000, resetTimeoutMs: 15_000 },
          outlierDetection: { consecutiveFailures: 3, baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 100_000, maxEjectionPercent: 30 },
          panicThreshold: 40,
          source: 'yaml',
        },
      ],
    };
    // Env must not override what the YAML sets.
    const env = { CONSUL_HTTP_ADDR: 'https://env:1', CONSUL_HTTP_TOKEN: 'env-token', CONSUL_CACERT: '/env-ca.pem' };
    assert.deepStrictEqual(ok(text, env), expected);
  });

  it('fills every default for a minimal config', () => {
    const config = ok(HELLO);
    assert.deepStrictEqual(config, {
      server: { host: '0.0.0.0', port: 8080, ...SERVER_LIMITS },
      admin: { host: '127.0.0.1', port: 9901 },
      shutdown: { drainDelayMs: 5_000, timeoutMs: 30_000 },
      registry: { static: { services: { hello: { instances: [{ url: 'http://127.0.0.1:3001', weight: 1 }] } } } },
      defaults: EXPECTED_ROUTE_DEFAULTS,
      routes: [
        {
          name: 'hello',
          match: { pathPrefix: '/hello' },
          service: 'hello',
          stripPrefix: false,
          loadBalancer: 'round-robin',
          tags: [],
          ...EXPECTED_ROUTE_DEFAULTS,
          source: 'yaml',
        },
      ],
      accessLog: { enabled: false, path: 'stdout' },
    } satisfies GatewayConfig);
    assert.equal('consul' in config.registry, false);
    assert.equal('hashKey' in (config.routes[0] ?? {}), false);
  });

  it('exports the defaults it applies', () => {
    assert.deepStrictEqual(DEFAULTS.routeDefaults, EXPECTED_ROUTE_DEFAULTS);
    assert.deepStrictEqual(DEFAULTS.server, { host: '0.0.0.0', port: 8080 });
    assert.deepStrictEqual(DEFAULTS.admin, { host: '127.0.0.1', port: 9901 });
    assert.equal(DEFAULTS.consul.address, 'http://127.0.0.1:8500');
    assert.equal(DEFAULTS.consul.waitMs, 300_000);
    assert.equal(DEFAULTS.route.loadBalancer, 'round-robin');
    assert.ok(Object.isFrozen(DEFAULTS.routeDefaults.circuitBreaker));
  });

  it('defaults hashKey to ip for consistent-hash only', () => {
    const config = ok(`${HELLO}    loadBalancer: consistent-hash\n`);
    assert.deepStrictEqual(config.routes[0]?.hashKey, { kind: 'ip' });
    assert.equal(config.routes[0]?.loadBalancer, 'consistent-hash');
  });

  it('accepts durations and sizes as integers (ms / bytes)', () => {
    const config = ok(`defaults: { timeout: 1500, maxRetryBodySize: 2048 }\n${HELLO}`);
    assert.equal(config.defaults.timeoutMs, 1_500);
    assert.equal(config.defaults.maxRetryBodySize, 2_048);
  });

  it('supports YAML anchors and merge keys', () => {
    const text = `${HELLO}    retryBudget: &budget { percent: 5 }
  - name: second
    service: hello
    match: { pathPrefix: /second }
    retryBudget: { <<: *budget, minConcurrent: 9 }
    tags: &tags [x]
  - { name: third, service: hello, match: { pathPrefix: /third }, tags: *tags, retryBudget: { <<: *budget, bogus: 1 } }
`;
    // Line 16 is the third route; the unknown key inside it is still located.
    assert.deepStrictEqual(problems(text), ['gw.yaml:16:108 routes[2].retryBudget.bogus: unknown key "bogus"']);
    const config = ok(text.replace(', bogus: 1', ''));
    assert.deepStrictEqual(config.routes[1]?.retryBudget, { percent: 5, minConcurrent: 9 });
    assert.deepStrictEqual(config.routes[2]?.tags, ['x']);
  });
});

describe('parseConfig: problems', () => {
  it('reports unknown keys at several depths at the key position', () => {
    const text = `serverr: {}
server: { hots: x }
registry:
  static:
    services:
      hello:
        instances: [http://127.0.0.1:3001]
        healthCheck: { intervall: 5s }
  consul:
    tls: { caa: x }
defaults:
  circuitBreaker:
    windows: 10s
routes:
  - name: hello
    service: hello
    match: { pathprefix: /hello }
    timout: 5s
`;
    assert.deepStrictEqual(problems(text), [
      'gw.yaml:1:1 serverr: unknown key "serverr" (did you mean "server"?)',
      'gw.yaml:2:11 server.hots: unknown key "hots" (did you mean "host"?)',
      'gw.yaml:8:24 registry.static.services.hello.healthCheck.intervall: unknown key "intervall" (did you mean "interval"?)',
      'gw.yaml:10:12 registry.consul.tls.caa: unknown key "caa" (did you mean "ca"?)',
      'gw.yaml:13:5 defaults.circuitBreaker.windows: unknown key "windows" (did you mean "window"?)',
      'gw.yaml:17:12 routes[0].match.pathPrefix: is required',
      'gw.yaml:17:14 routes[0].match.pathprefix: unknown key "pathprefix" (did you mean "pathPrefix"?)',
      'gw.yaml:18:5 routes[0].timout: unknown key "timout" (did you mean "timeout"?)',
    ]);
  });

  it('reports every problem in one pass, sorted, with line:col and path', () => {
    const text = `server: { port: 70000 }
registry:
  static:
    services:
      hello:
        instances:
          - http://127.0.0.1:3001/path
          - { url: "http://127.0.0.1:3002", weight: 0 }
          - ftp://127.0.0.1
        healthCheck: { path: health, unhealthyThreshold: 0 }
      empty:
        instances: []
      "bad name":
        instances: [http://127.0.0.1:1]
defaults:
  timeout: 5 seconds
  retryOn: [500]
  maxRetryBodySize: 1.5MiB
  panicThreshold: 101
routes:
  - name: a
    match: { pathPrefix: hello, methods: [GET, "NOT A METHOD"] }
    service: missing
    loadBalancer: least-connections
    hashKey: query:x
  - name: a
    match: { pathPrefix: /b }
    service: hello
    circuitBreaker: { errorThresholdPercentage: -1 }
  - match: { pathPrefix: /c }
`;
    const r = parseConfig(text, { file: FILE, env: {} });
    assert.equal(r.ok, false);
    const got = r.ok ? [] : r.problems.map(({ line, col, path, reason }) => ({ line, col, path, reason }));
    const origin = 'must be an http:// or https:// origin without path or query, like http://127.0.0.1:3001';
    assert.deepStrictEqual(got, [
      { line: 1, col: 17, path: 'server.port', reason: 'must be between 0 and 65535' },
      { line: 7, col: 13, path: 'registry.static.services.hello.instances[0]', reason: origin },
      { line: 8, col: 53, path: 'registry.static.services.hello.instances[1].weight', reason: 'must be at least 1' },
      { line: 9, col: 13, path: 'registry.static.services.hello.instances[2]', reason: origin },
      { line: 10, col: 30, path: 'registry.static.services.hello.healthCheck.path', reason: 'must start with "/"' },
      { line: 10, col: 58, path: 'registry.static.services.hello.healthCheck.unhealthyThreshold', reason: 'must be at least 1' },
      { line: 12, col: 20, path: 'registry.static.services.empty.instances', reason: 'must list at least one instance' },
      {
        line: 13,
        col: 7,
        path: 'registry.static.services["bad name"]',
        reason: 'must be a service name made of letters, digits, "_", "." and "-"',
      },
      { line: 16, col: 12, path: 'defaults.timeout', reason: 'must be a duration like 250ms, 5s or 5m' },
      { line: 17, col: 13, path: 'defaults.retryOn[0]', reason: 'must be one of connect-failure, reset, 502, 503, 504' },
      { line: 18, col: 21, path: 'defaults.maxRetryBodySize', reason: 'must be a size like 512B, 64KiB or 1MB' },
      { line: 19, col: 19, path: 'defaults.panicThreshold', reason: 'must be between 0 and 100' },
      { line: 22, col: 26, path: 'routes[0].match.pathPrefix', reason: 'must start with "/"' },
      { line: 22, col: 48, path: 'routes[0].match.methods[1]', reason: 'must be an HTTP method like GET' },
      { line: 23, col: 14, path: 'routes[0].service', reason: 'unknown service "missing" (not in registry.static.services)' },
      {
        line: 24,
        col: 19,
        path: 'routes[0].loadBalancer',
        reason: 'must be one of round-robin, random, least-request, consistent-hash',
      },
      { line: 25, col: 14, path: 'routes[0].hashKey', reason: 'must be header:NAME, cookie:NAME or ip' },
      { line: 26, col: 11, path: 'routes[1].name', reason: 'duplicate route name "a" (also routes[0])' },
      { line: 29, col: 49, path: 'routes[1].circuitBreaker.errorThresholdPercentage', reason: 'must be between 0 and 100' },
      { line: 30, col: 5, path: 'routes[2].name', reason: 'is required' },
      { line: 30, col: 5, path: 'routes[2].service', reason: 'is required' },
    ]);
    assert.ok(r.ok === false && r.problems.every((p) => p.file === FILE));
  });

  it('reports a YAML syntax error with its position', () => {
    const text = `routes:
  - name: a
    match: { pathPrefix: /a
    service: a
`;
    const r = parseConfig(text, { file: FILE, env: {} });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.problems.length >= 1, true);
    const first = r.problems[0] as ConfigProblem;
    assert.equal(first.path, '(yaml)');
    assert.match(first.reason, /^invalid YAML: /);
    assert.deepStrictEqual([first.line > 1, first.line <= 5], [true, true]);
  });

  it('points a syntax error at the exact line:col', () => {
    assert.deepStrictEqual(problems('routes:\n  - name: a: b\n'), [
      'gw.yaml:2:11 (yaml): invalid YAML: nested mappings are not allowed in compact mappings',
    ]);
    assert.deepStrictEqual(problems('routes:\n\t- a\n'), ['gw.yaml:2:1 (yaml): invalid YAML: tabs are not allowed as indentation']);
  });

  it('reports duplicate YAML keys and still runs the schema', () => {
    assert.deepStrictEqual(problems(`server: { port: 1 }\nserver: { port: x }\n${HELLO}`), [
      'gw.yaml:2:1 (yaml): invalid YAML: map keys must be unique',
      'gw.yaml:2:17 server.port: must be an integer',
    ]);
  });

  it('reports an empty document', () => {
    for (const text of ['', '\n', '# only a comment\n', '---\n']) {
      assert.deepStrictEqual(problems(text), ['gw.yaml:1:1 (root): config is empty']);
    }
  });

  it('requires routes, and at least one', () => {
    assert.deepStrictEqual(problems('server: { port: 1 }\n'), ['gw.yaml:1:1 routes: is required']);
    assert.deepStrictEqual(problems('routes: []\n'), ['gw.yaml:1:9 routes: must list at least one route']);
    assert.deepStrictEqual(problems('- a\n'), ['gw.yaml:1:1 (root): must be a mapping']);
  });

  it('reports an unknown service unless consul is configured', () => {
    const text = `routes:\n  - { name: a, service: ghost, match: { pathPrefix: / } }\n`;
    assert.deepStrictEqual(problems(text), [
      'gw.yaml:2:25 routes[0].service: unknown service "ghost" (not in registry.static.services)',
    ]);
    const config = ok(`registry:\n  consul: {}\n${text}`);
    assert.equal(config.routes[0]?.service, 'ghost');
  });

  it('reports duplicate route names at the second name', () => {
    const text = `${HELLO}  - name: hello\n    service: hello\n    match: { pathPrefix: /other }\n`;
    assert.deepStrictEqual(problems(text), ['gw.yaml:10:11 routes[1].name: duplicate route name "hello" (also routes[0])']);
  });

  it('validates instance URLs, weights, ports and percentages', () => {
    const text = `server: { port: -1 }
admin: { port: 1.5 }
registry:
  static:
    services:
      s:
        instances:
          - http://a:1?x=1
          - http://user:pw@a:1
          - { url: "http://a:2", weight: 1.5 }
          - http://a:3
          - http://a:3/
routes:
  - { name: a, service: s, match: { pathPrefix: / }, retryBudget: { percent: 120 } }
`;
    const origin = 'must be an http:// or https:// origin without path or query, like http://127.0.0.1:3001';
    assert.deepStrictEqual(problems(text), [
      'gw.yaml:1:17 server.port: must be between 0 and 65535',
      'gw.yaml:2:16 admin.port: must be an integer',
      `gw.yaml:8:13 registry.static.services.s.instances[0]: ${origin}`,
      `gw.yaml:9:13 registry.static.services.s.instances[1]: ${origin}`,
      'gw.yaml:10:42 registry.static.services.s.instances[2].weight: must be an integer',
      'gw.yaml:12:13 registry.static.services.s.instances[4]: duplicates instances[3] (http://a:3)',
      'gw.yaml:14:78 routes[0].retryBudget.percent: must be between 0 and 100',
    ]);
  });

  it('caps consul.wait at 10m and checks outlier ejection times', () => {
    const text = `registry:
  consul: { wait: 11m }
defaults:
  outlierDetection: { baseEjectionTime: 1m, maxEjectionTime: 30s }
routes:
  - { name: a, service: s, match: { pathPrefix: / } }
`;
    assert.deepStrictEqual(problems(text), [
      'gw.yaml:2:19 registry.consul.wait: must be at most 10m',
      'gw.yaml:4:62 defaults.outlierDetection.maxEjectionTime: must not be less than baseEjectionTime (1m)',
    ]);
  });

  it('checks header names, case-insensitively unique', () => {
    const text = `${HELLO.replace('match: { pathPrefix: /hello }', 'match: { pathPrefix: /hello, headers: { X-A: 1, x-a: 2, "b c": 3 } }')}`;
    assert.deepStrictEqual(problems(text), [
      'gw.yaml:9:53 routes[0].match.headers.x-a: duplicate header "x-a" (header names are case-insensitive)',
      'gw.yaml:9:61 routes[0].match.headers["b c"]: must be a valid header name',
    ]);
  });
});

describe('parseConfig: consul env fallbacks', () => {
  const CONSUL = `registry:\n  consul: {}\nroutes:\n  - { name: a, service: s, match: { pathPrefix: / } }\n`;
  const consul = (env: NodeJS.ProcessEnv, readFile?: (p: string) => string) => ok(CONSUL, env, readFile).registry.consul;

  it('uses the local agent when nothing is set', () => {
    assert.deepStrictEqual(consul({}), { address: 'http://127.0.0.1:8500', waitMs: 300_000, consistency: 'stale', tagRoutes: false });
  });

  it('ignores consul env when there is no consul block', () => {
    assert.equal(ok(HELLO, { CONSUL_HTTP_ADDR: 'x:1', CONSUL_HTTP_SSL: 'bogus' }).registry.consul, undefined);
  });

  it('reads CONSUL_HTTP_ADDR with and without a scheme', () => {
    assert.equal(consul({ CONSUL_HTTP_ADDR: 'https://consul.example:8501' })?.address, 'https://consul.example:8501');
    assert.equal(consul({ CONSUL_HTTP_ADDR: 'http://consul.example:8500/' })?.address, 'http://consul.example:8500');
    assert.equal(consul({ CONSUL_HTTP_ADDR: '10.0.0.5:8500' })?.address, 'http://10.0.0.5:8500');
    assert.equal(consul({ CONSUL_HTTP_ADDR: '10.0.0.5:8500', CONSUL_HTTP_SSL: 'true' })?.address, 'https://10.0.0.5:8500');
    assert.equal(consul({ CONSUL_HTTP_ADDR: '10.0.0.5:8500', CONSUL_HTTP_SSL: '1' })?.address, 'https://10.0.0.5:8500');
    assert.equal(consul({ CONSUL_HTTP_ADDR: '10.0.0.5:8500', CONSUL_HTTP_SSL: 'false' })?.address, 'http://10.0.0.5:8500');
    // An explicit scheme wins over CONSUL_HTTP_SSL.
    assert.equal(consul({ CONSUL_HTTP_ADDR: 'http://c:1', CONSUL_HTTP_SSL: 'true' })?.address, 'http://c:1');
  });

  it('prefers the YAML address over the env', () => {
    const config = ok(CONSUL.replace('consul: {}', 'consul: { address: "http://yaml:8500" }'), { CONSUL_HTTP_ADDR: 'env:1' });
    assert.equal(config.registry.consul?.address, 'http://yaml:8500');
  });

  it('reads the token from CONSUL_HTTP_TOKEN, else the token file', () => {
    const reads: string[] = [];
    const readFile = (p: string) => {
      reads.push(p);
      return '  file-token\n';
    };
    assert.equal(consul({ CONSUL_HTTP_TOKEN_FILE: '/run/token' }, readFile)?.token, 'file-token');
    assert.deepStrictEqual(reads, ['/run/token']);
    assert.equal(consul({ CONSUL_HTTP_TOKEN: 'env-token', CONSUL_HTTP_TOKEN_FILE: '/run/token' }, readFile)?.token, 'env-token');
    assert.deepStrictEqual(reads, ['/run/token']);
  });

  it('reports an unreadable token file', () => {
    const readFile = () => {
      throw new Error('EACCES: permission denied');
    };
    assert.deepStrictEqual(problems(CONSUL, { CONSUL_HTTP_TOKEN_FILE: '/run/token' }, readFile), [
      'gw.yaml:2:11 registry.consul.token: cannot read env CONSUL_HTTP_TOKEN_FILE="/run/token": EACCES: permission denied',
    ]);
  });

  it('builds tls from env, and only when something is set', () => {
    assert.deepStrictEqual(consul({ CONSUL_HTTP_SSL_VERIFY: 'false' })?.tls, { insecureSkipVerify: true });
    assert.deepStrictEqual(consul({ CONSUL_HTTP_SSL_VERIFY: '0' })?.tls, { insecureSkipVerify: true });
    assert.equal(consul({ CONSUL_HTTP_SSL_VERIFY: 'true' })?.tls, undefined);
    assert.deepStrictEqual(
      consul({
        CONSUL_CACERT: '/ca.pem',
        CONSUL_CLIENT_CERT: '/c.pem',
        CONSUL_CLIENT_KEY: '/k.pem',
        CONSUL_TLS_SERVER_NAME: 'consul.internal',
      })?.tls,
      { ca: '/ca.pem', cert: '/c.pem', key: '/k.pem', serverName: 'consul.internal', insecureSkipVerify: false },
    );
    // YAML keys win, env fills the rest.
    const config = ok(CONSUL.replace('consul: {}', 'consul: { tls: { ca: /yaml-ca.pem } }'), {
      CONSUL_CACERT: '/env-ca.pem',
      CONSUL_TLS_SERVER_NAME: 'n',
    });
    assert.deepStrictEqual(config.registry.consul?.tls, { ca: '/yaml-ca.pem', serverName: 'n', insecureSkipVerify: false });
  });

  it('reports bad env values at the consul block', () => {
    assert.deepStrictEqual(problems(CONSUL, { CONSUL_HTTP_SSL: 'yes', CONSUL_HTTP_ADDR: 'c:1/path' }), [
      'gw.yaml:2:11 registry.consul: env CONSUL_HTTP_SSL="yes" must be true, false, 1 or 0',
      'gw.yaml:2:11 registry.consul.address: from env CONSUL_HTTP_ADDR="c:1/path": must be an http:// or https:// address like http://127.0.0.1:8500',
    ]);
    assert.deepStrictEqual(problems(CONSUL, { CONSUL_CLIENT_CERT: '/c.pem' }), [
      'gw.yaml:2:11 registry.consul.tls.key: is required when tls.cert is set',
    ]);
  });

  it('defaults the registration from the server block', () => {
    const withRegister = CONSUL.replace('consul: {}', 'consul: { register: {} }');
    assert.deepStrictEqual(ok(withRegister).registry.consul?.register, {
      name: 'waygate',
      id: `waygate-${hostname()}`,
      address: '127.0.0.1',
      port: 8080,
      tags: [],
      checkIntervalMs: 10_000,
    });
    const named = `server: { host: 10.1.2.3, port: 8888 }\n${CONSUL.replace('consul: {}', 'consul: { register: { name: edge } }')}`;
    assert.deepStrictEqual(ok(named).registry.consul?.register, {
      name: 'edge',
      id: `edge-${hostname()}`,
      address: '10.1.2.3',
      port: 8888,
      tags: [],
      checkIntervalMs: 10_000,
    });
    const ipv6 = `server: { host: "::" }\n${withRegister}`;
    assert.equal(ok(ipv6).registry.consul?.register?.address, '127.0.0.1');
  });
});

describe('formatProblem / ConfigError / loadConfigFile', () => {
  const p1: ConfigProblem = { file: 'a.yaml', line: 3, col: 7, path: 'routes[0].name', reason: 'is required' };
  const p2: ConfigProblem = { file: 'a.yaml', line: 9, col: 1, path: 'server', reason: 'unknown key "x"' };

  it('formats file:line:col path: reason', () => {
    assert.equal(formatProblem(p1), 'a.yaml:3:7 routes[0].name: is required');
  });

  it('ConfigError carries problems and one line per problem', () => {
    const err = new ConfigError([p1, p2]);
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'ConfigError');
    assert.deepStrictEqual(err.problems, [p1, p2]);
    assert.equal(err.message, 'a.yaml:3:7 routes[0].name: is required\na.yaml:9:1 server: unknown key "x"');
  });

  it('loads a file, and throws ConfigError for unreadable or invalid files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'waygate-config-'));
    try {
      const good = join(dir, 'good.yaml');
      writeFileSync(good, HELLO);
      assert.equal(loadConfigFile(good, {}).routes[0]?.name, 'hello');

      const missing = join(dir, 'missing.yaml');
      assert.throws(
        () => loadConfigFile(missing, {}),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.deepStrictEqual(err.problems, [
            { file: missing, line: 1, col: 1, path: '(file)', reason: 'cannot read config: file not found' },
          ]);
          return true;
        },
      );

      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'routes:\n  - name: a\n');
      assert.throws(
        () => loadConfigFile(bad, {}),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.equal(err.message, `${bad}:2:5 routes[0].match: is required\n${bad}:2:5 routes[0].service: is required`);
          return true;
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('circuitBreaker.failureStatuses', () => {
  const base = `registry:
  static:
    services:
      s: { instances: ["http://127.0.0.1:1"] }
routes:
  - name: r
    match: { pathPrefix: / }
    service: s
`;

  it('defaults to every 5xx and takes "5xx" or single codes from 400 to 599', () => {
    const plain = parseConfig(base, { file: 'gw.yaml', env: {} });
    assert.ok(plain.ok);
    assert.deepStrictEqual(plain.config.routes[0]!.circuitBreaker.failureStatuses, ['5xx']);
    const custom = parseConfig(`${base}    circuitBreaker: { failureStatuses: [503, 429, 503] }\n`, { file: 'gw.yaml', env: {} });
    assert.ok(custom.ok);
    assert.deepStrictEqual(custom.config.routes[0]!.circuitBreaker.failureStatuses, [503, 429]);
  });

  it('reports anything else at its position', () => {
    assert.deepStrictEqual(problems(`${base}    circuitBreaker: { failureStatuses: [5xx, 200] }\n`), [
      'gw.yaml:9:46 routes[0].circuitBreaker.failureStatuses[1]: must be "5xx" or a status code from 400 to 599',
    ]);
  });
});

describe('consul.consistency', () => {
  it('defaults to stale; default and consistent are accepted; anything else is an error', () => {
    const doc = (extra: string) => `registry: { consul: { address: "http://127.0.0.1:8500"${extra} } }\nroutes: [{ name: r, match: { pathPrefix: / }, service: s }]\n`;
    const stale = parseConfig(doc(''), { file: 't.yaml', env: {} });
    assert.ok(stale.ok);
    assert.equal(stale.config.registry.consul?.consistency, 'stale');
    for (const mode of ['default', 'consistent'] as const) {
      const result = parseConfig(doc(`, consistency: ${mode}`), { file: 't.yaml', env: {} });
      assert.ok(result.ok);
      assert.equal(result.config.registry.consul?.consistency, mode);
    }
    const bad = parseConfig(doc(', consistency: eventual'), { file: 't.yaml', env: {} });
    assert.ok(!bad.ok);
    assert.equal(bad.problems[0]?.path, 'registry.consul.consistency');
  });
});

describe('hardening keys', () => {
  const base = 'registry: { static: { services: { s: { instances: ["http://127.0.0.1:1"] } } } }\nroutes: [{ name: r, match: { pathPrefix: / }, service: s }]\n';
  const parse = (text: string, env: NodeJS.ProcessEnv = {}) => parseConfig(text, { file: 't.yaml', env });

  it('admin.token comes from YAML, else WAYGATE_ADMIN_TOKEN; an empty YAML token means open', () => {
    const fromEnv = parse(base, { WAYGATE_ADMIN_TOKEN: 'env-t' });
    assert.ok(fromEnv.ok);
    assert.equal(fromEnv.config.admin.token, 'env-t');
    const fromYaml = parse(`admin: { token: yaml-t }\n${base}`, { WAYGATE_ADMIN_TOKEN: 'env-t' });
    assert.ok(fromYaml.ok);
    assert.equal(fromYaml.config.admin.token, 'yaml-t');
    const open = parse(`admin: { token: "" }\n${base}`, { WAYGATE_ADMIN_TOKEN: 'env-t' });
    assert.ok(open.ok);
    assert.equal(open.config.admin.token, undefined);
  });

  it('server limits resolve to ms and bytes; trustedProxies must be IPs or CIDRs', () => {
    const result = parse(`server: { maxBodySize: 2MiB, headersTimeout: 5s, requestTimeout: 30s, keepAliveTimeout: 75s, maxConnections: 100, trustedProxies: [10.0.0.0/8, "::1"] }\n${base}`);
    assert.ok(result.ok);
    assert.deepEqual(
      { ...result.config.server, host: undefined, port: undefined },
      { host: undefined, port: undefined, workers: 1, maxBodySize: 2 * 1024 * 1024, headersTimeoutMs: 5_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 75_000, maxConnections: 100, trustedProxies: ['10.0.0.0/8', '::1'] },
    );
    const bad = parse(`server: { trustedProxies: [10.0.0.0/33, "not-an-ip"] }\n${base}`);
    assert.ok(!bad.ok);
    assert.deepEqual(bad.problems.map((p) => [p.path, p.reason]), [
      ['server.trustedProxies[0]', 'must be an IP address or a CIDR block like 10.0.0.0/8'],
      ['server.trustedProxies[1]', 'must be an IP address or a CIDR block like 10.0.0.0/8'],
    ]);
  });

  it('maxInFlight is inherited from defaults and may be overridden per route', () => {
    const result = parse(`defaults: { maxInFlight: 50 }\nregistry: { static: { services: { s: { instances: ["http://127.0.0.1:1"] } } } }\nroutes: [{ name: a, match: { pathPrefix: /a }, service: s }, { name: b, match: { pathPrefix: /b }, service: s, maxInFlight: 5 }]\n`);
    assert.ok(result.ok);
    assert.deepEqual(result.config.routes.map((route) => route.maxInFlight), [50, 5]);
  });
});

describe('split routes', () => {
  const services = 'registry: { static: { services: { a: { instances: ["http://127.0.0.1:1"] }, b: { instances: ["http://127.0.0.1:2"] } } } }\n';
  const parse = (route: string) => parseConfig(`${services}routes:\n  - ${route}\n`, { file: 't.yaml', env: {} });

  it('resolves weighted backends; service, tags and meta describe the first', () => {
    const result = parse('{ name: s, match: { pathPrefix: /s }, split: [{ service: a, weight: 90 }, { service: b, tags: [v2], meta: { version: "2" }, weight: 10 }] }');
    assert.ok(result.ok);
    const route = result.config.routes[0]!;
    assert.equal(route.service, 'a');
    assert.deepEqual(route.split, [{ service: 'a', tags: [], weight: 90 }, { service: 'b', tags: ['v2'], meta: { version: '2' }, weight: 10 }]);
  });

  it('needs exactly one of service and split, a known service per backend, and some weight', () => {
    const reasons = (route: string) => {
      const result = parse(route);
      return result.ok ? [] : result.problems.map((p) => `${p.path}: ${p.reason}`);
    };
    assert.deepEqual(reasons('{ name: s, match: { pathPrefix: /s }, service: a, split: [{ service: b, weight: 1 }] }'), ['routes[0].split: use either service or split, not both']);
    assert.deepEqual(reasons('{ name: s, match: { pathPrefix: /s } }'), ['routes[0].service: is required']);
    assert.deepEqual(reasons('{ name: s, match: { pathPrefix: /s }, split: [{ service: nope, weight: 1 }] }'), ['routes[0].split[0].service: unknown service "nope" (not in registry.static.services)']);
    assert.deepEqual(reasons('{ name: s, match: { pathPrefix: /s }, split: [{ service: a, weight: 0 }] }'), ['routes[0].split: needs at least one backend with a weight above 0']);
  });
});

describe('datacenters', () => {
  it('is a list of Consul datacenters, deduplicated; it needs Consul and does not combine with split', () => {
    const consul = 'registry: { consul: { address: "http://127.0.0.1:8500" } }\n';
    const ok = parseConfig(`${consul}routes: [{ name: r, match: { pathPrefix: / }, service: web, datacenters: [dc1, dc2, dc1] }]\n`, { file: 't.yaml', env: {} });
    assert.ok(ok.ok);
    assert.deepEqual(ok.config.routes[0]!.datacenters, ['dc1', 'dc2']);
    const noConsul = parseConfig('registry: { static: { services: { web: { instances: ["http://127.0.0.1:1"] } } } }\nroutes: [{ name: r, match: { pathPrefix: / }, service: web, datacenters: [dc1] }]\n', { file: 't.yaml', env: {} });
    assert.ok(!noConsul.ok);
    assert.equal(noConsul.problems[0]!.reason, 'needs registry.consul (datacenters are Consul datacenters)');
    const withSplit = parseConfig(`${consul}routes: [{ name: r, match: { pathPrefix: / }, split: [{ service: web, weight: 1 }], datacenters: [dc1] }]\n`, { file: 't.yaml', env: {} });
    assert.ok(!withSplit.ok);
    assert.equal(withSplit.problems[0]!.reason, 'cannot be combined with split');
  });
});

describe('server.workers', () => {
  const base = 'registry: { static: { services: { s: { instances: ["http://127.0.0.1:1"] } } } }\nroutes: [{ name: r, match: { pathPrefix: / }, service: s }]\n';
  const parse = (workers: string) => parseConfig(`server:\n  workers: ${workers}\n${base}`, { file: 't.yaml', env: {} });

  it('defaults to 1 and takes whole numbers from 1 to 64', () => {
    const absent = parseConfig(base, { file: 't.yaml', env: {} });
    assert.ok(absent.ok);
    assert.equal(absent.config.server.workers, 1);
    assert.equal(DEFAULTS.serverLimits.workers, 1);
    for (const n of [1, 2, 8, 64]) {
      const result = parse(String(n));
      assert.ok(result.ok);
      assert.equal(result.config.server.workers, n);
    }
  });

  it('resolves auto to the cores this process may use', () => {
    const result = parse('auto');
    assert.ok(result.ok);
    assert.equal(result.config.server.workers, usableCores());
    assert.ok(usableCores() <= availableParallelism());
  });

  it('auto honours a container CPU quota (cgroup v2 cpu.max, else v1 cfs quota) and never exceeds the CPUs', () => {
    const files = (entries: Record<string, string>) => (path: string) => {
      if (!(path in entries)) throw new Error('ENOENT');
      return entries[path]!;
    };
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu.max': '200000 100000\n' }), 32), 2);
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' }), 32), 2, 'a part core rounds up');
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }), 32), 1);
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' }), 32), 32, 'no quota');
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu.max': '800000 100000' }), 4), 4, 'a quota above the CPUs');
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }), 32), 3);
    assert.equal(usableCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }), 32), 32, 'v1: -1 = none');
    assert.equal(usableCores(files({}), 8), 8);
    assert.equal(parseWorkers('auto', () => 200), 64, 'auto stays within the 64 a number may say');
  });

  it('reports anything else at its position', () => {
    for (const bad of ['0', '65', '-1', '1.5', '"4"', 'all', 'true', '[2]']) {
      const result = parse(bad);
      assert.ok(!result.ok, bad);
      assert.deepEqual(result.problems.map(formatProblem), ['t.yaml:2:12 server.workers: must be auto or a whole number from 1 to 64'], bad);
    }
  });
});
