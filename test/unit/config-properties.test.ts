/**
 * Property tests for the config loader: whatever the text, parseConfig returns either
 * { ok: true, config } or { ok: false, problems } with every problem placed on a real 1-based
 * line:col and carrying a reason; it never throws. Inputs: random and YAML-ish text, mutations of
 * valid configs, and random JS values serialized with yaml's stringify.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse as parseYaml, stringify } from 'yaml';
import { type ParseResult, parseConfig } from '../../src/config/load.ts';

const FILE = 't.yaml';

const GATEWAY_YAML = readFileSync(new URL('../../config/gateway.yaml', import.meta.url), 'utf8');

/** Touches every section of the schema: server/admin/shutdown, both registries, defaults, routes, anchors and merge keys. */
const RICH_YAML = `# every section, most keys
server:
  host: 0.0.0.0
  port: 8443
  workers: 2
  tls: { cert: /etc/waygate/tls.crt, key: /etc/waygate/tls.key }
  trustedProxies: [10.0.0.0/8, 192.168.1.1, "::1"]
  maxBodySize: 5MiB
  headersTimeout: 10s
  requestTimeout: 1m
  keepAliveTimeout: 65s
  maxConnections: 5000
admin:
  host: 127.0.0.1
  port: 9901
  token: s3cret
shutdown:
  drainDelay: 2s
  timeout: 30s
registry:
  static:
    services:
      hello:
        instances:
          - http://127.0.0.1:3001
          - url: http://127.0.0.1:3002
            weight: 3
        healthCheck:
          path: /health
          interval: 5s
          timeout: 2s
          unhealthyThreshold: 3
          healthyThreshold: 2
      secure.api:
        instances: ["https://10.0.0.5:8443"]
        tls: { ca: /etc/ca.pem, serverName: api.internal, insecureSkipVerify: false }
  consul:
    address: http://127.0.0.1:8500
    token: ""
    datacenter: dc1
    wait: 5m
    tls:
      ca: /etc/consul/ca.pem
      cert: /etc/consul/client.crt
      key: /etc/consul/client.key
      serverName: consul.internal
      insecureSkipVerify: false
    instanceTls: { ca: /etc/consul/ca.pem, serverName: svc.internal }
    tagRoutes: true
    register:
      name: waygate
      id: waygate-1
      address: 10.0.0.2
      port: 8443
      tags: [edge, public]
      checkInterval: 10s
defaults: &defaults
  timeout: 30s
  connectTimeout: 2s
  retries: 2
  retryOn: [connect-failure, reset, 503]
  retryBudget: { percent: 20, minConcurrent: 3 }
  maxRetryBodySize: 64KiB
  circuitBreaker:
    failureStatuses: [5xx, 429]
    errorThresholdPercentage: 50
    volumeThreshold: 10
    window: 10s
    resetTimeout: 10s
  outlierDetection:
    consecutiveFailures: 5
    baseEjectionTime: 30s
    maxEjectionTime: 5m
    maxEjectionPercent: 50
  panicThreshold: 50
  maxInFlight: 100
routes:
  - name: hello
    match:
      pathPrefix: /hello
      host: Example.COM
      methods: [GET, post]
      headers: { x-env: prod, x-version: 2 }
    service: hello
    stripPrefix: true
    loadBalancer: consistent-hash
    hashKey: header:X-User
    tags: [v1]
    retries: 1
  - name: api
    match: { pathPrefix: /api/ }
    service: secure.api
    loadBalancer: least-request
    <<: *defaults
    timeout: 5s
  - name: catch-all
    match: { pathPrefix: / }
    service: from-consul
    loadBalancer: random
    hashKey: cookie:session
`;

const VALID_SAMPLES = [GATEWAY_YAML, RICH_YAML];

// ---------------------------------------------------------------------------------------------
// The checked contract

function parse(text: string): ParseResult {
  return parseConfig(text, { file: FILE, env: {} });
}

/** Asserts the result contract; returns the result so callers can add expectations. */
function checkContract(text: string): ParseResult {
  const result = parse(text); // a throw fails the property with the input as counterexample
  assert.equal(typeof result, 'object');
  const lineCount = text.split('\n').length;
  if (result.ok) {
    assert.deepEqual(Object.keys(result).sort(), ['config', 'ok']);
    const { config } = result;
    assert.ok(Array.isArray(config.routes) && config.routes.length > 0, 'an ok config has routes');
    for (const route of config.routes) {
      assert.ok(route.match.pathPrefix.startsWith('/'), `pathPrefix ${route.match.pathPrefix}`);
      assert.equal(typeof route.name, 'string');
    }
    assert.equal(typeof config.server.port, 'number');
    return result;
  }
  assert.equal(result.ok, false);
  assert.deepEqual(Object.keys(result).sort(), ['ok', 'problems']);
  assert.ok(Array.isArray(result.problems) && result.problems.length > 0, 'a failed parse names at least one problem');
  let previous = { line: 0, col: 0 };
  for (const p of result.problems) {
    const where = JSON.stringify(p);
    assert.deepEqual(Object.keys(p).sort(), ['col', 'file', 'line', 'path', 'reason'], where);
    assert.equal(p.file, FILE, where);
    assert.ok(Number.isInteger(p.line) && p.line >= 1 && p.line <= lineCount + 1, `line out of range (${lineCount} lines): ${where}`);
    assert.ok(Number.isInteger(p.col) && p.col >= 1, `col not positive: ${where}`);
    assert.ok(typeof p.path === 'string' && p.path.length > 0, `empty path: ${where}`);
    assert.ok(typeof p.reason === 'string' && p.reason.trim().length > 0, `empty reason: ${where}`);
    // Sorted by position, as documented in load.ts.
    assert.ok(p.line > previous.line || (p.line === previous.line && p.col >= previous.col), `problems out of order at ${where}`);
    previous = p;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// (a) random and YAML-ish text

const YAML_TOKENS = [
  'routes', 'server', 'admin', 'registry', 'static', 'services', 'consul', 'defaults', 'match', 'pathPrefix',
  'name', 'service', 'instances', 'port', 'host', 'x', '<<', '__proto__', 'constructor',
  ':', ': ', ' ', '  ', '    ', '\t', '\n', '\n', '\n  ', '\r\n', '- ', '-', '[', ']', '{', '}', ',', '"', "'", '\\',
  '&a ', '*a', '&b ', '*b', '!!str ', '!!int ', '!!map ', '!!seq ', '!!binary ', '!!set ', '!!omap ', '!!timestamp ', '!local ', '!<tag:x> ',
  '? ', '#', '|', '|-', '>', '>+', '%YAML 1.2\n', '%TAG ! tag:x,2000:\n', '---\n', '...\n', '\0', '\uFEFF', '\u2028', 'é', '😀', '\uD800',
  '1', '-1', '0x1F', '0o17', '1e400', '.inf', '-.nan', '1_000', '65536', '9007199254740993', 'null', '~', 'true', 'no', 'yes',
  '5s', '1m30s', '64KiB', '/hello', 'http://127.0.0.1:3001', 'header:x', 'round-robin',
];

const yamlishArb: fc.Arbitrary<string> = fc.array(
  fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom(...YAML_TOKENS) },
    { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
    { weight: 1, arbitrary: fc.nat({ max: 3000 }).map((n) => 'v'.repeat(n)) },
  ),
  { maxLength: 60 },
).map((tokens) => tokens.join(''));

/** Line-structured YAML-ish documents: indentation, key: value, list items. */
const yamlLinesArb: fc.Arbitrary<string> = fc
  .array(
    fc.tuple(
      fc.constantFrom('', '  ', '    ', '      ', '\t', ' '),
      fc.constantFrom('', '- ', '- - ', '? '),
      fc.constantFrom(...YAML_TOKENS.filter((t) => /^[A-Za-z_<]/.test(t))),
      fc.constantFrom(':', ': ', ':  ', ''),
      fc.constantFrom(...YAML_TOKENS, '', '', '[a, b]', '{a: 1}', '"quoted"', "'single'", '&a {x: 1}', '*a', '!!str 1', '[', '{', '"'),
    ),
    { maxLength: 25 },
  )
  .map((lines) => lines.map((parts) => parts.join('')).join('\n'));

// ---------------------------------------------------------------------------------------------
// (b) mutations of valid configs

type Mutation =
  | { kind: 'delete'; at: number }
  | { kind: 'duplicate'; at: number }
  | { kind: 'swap'; at: number; with: number }
  | { kind: 'indent'; at: number; by: number }
  | { kind: 'scalar'; at: number; value: string }
  | { kind: 'insert'; at: number; line: string }
  | { kind: 'truncate'; at: number };

const REPLACEMENT_VALUES = [
  '0', '42', '-1', '1.5', '1e309', '65536', '9007199254740993', '[]', '[1, 2]', '{}', '{a: 1}', '~', 'null', 'true', 'false',
  '""', "''", '"x"', '5s', '-5s', '0ms', '1.0001ms', '64KiB', '1PB', '/x', 'x', 'http://h:1/p', 'header:', '!!binary AAAA',
  '*missing', '&x 3', '"unterminated', '[', '{', '|', '>', '- a', 'a: b', '\t', 'é😀', 'v'.repeat(2000),
];
const INSERTED_KEYS = [
  'routes', 'server', 'admin', 'shutdown', 'registry', 'static', 'services', 'consul', 'defaults', 'match', 'pathPrefix', 'host',
  'port', 'methods', 'headers', 'name', 'service', 'instances', 'url', 'weight', 'healthCheck', 'tls', 'timeout', 'retries',
  'retryOn', 'circuitBreaker', 'failureStatuses', 'hashKey', 'loadBalancer', 'register', 'token', 'wait', 'stripPrefix',
  'unknownKey', 'Routes', 'pathprefix', '<<', '__proto__', '"quoted key"', '? complex', '[a]', '1',
];

/** Values that keep the YAML well-formed most of the time, so the schema and resolution passes see the damage. */
const replacementArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...REPLACEMENT_VALUES.filter((v) => !/^["[{|>*&!\t-]|: /.test(v))) },
  { weight: 2, arbitrary: fc.constantFrom(...REPLACEMENT_VALUES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('indent' as const), at: fc.nat(), by: fc.integer({ min: -6, max: 6 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('scalar' as const), at: fc.nat(), value: replacementArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      line: fc
        .tuple(fc.constantFrom('', '  ', '    ', '      ', '        ', '- ', '  - '), fc.constantFrom(...INSERTED_KEYS), replacementArb)
        .map(([indent, key, value]) => `${indent}${key}: ${value}`),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
);

function applyMutation(text: string, m: Mutation): string {
  const lines = text.split('\n');
  const i = m.at % Math.max(lines.length, 1);
  switch (m.kind) {
    case 'delete':
      lines.splice(i, 1);
      break;
    case 'duplicate':
      lines.splice(i, 0, lines[i] ?? '');
      break;
    case 'swap': {
      const j = m.with % lines.length;
      [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? ''];
      break;
    }
    case 'indent': {
      const line = lines[i] ?? '';
      lines[i] = m.by >= 0 ? ' '.repeat(m.by) + line : line.replace(new RegExp(`^ {0,${-m.by}}`), '');
      break;
    }
    case 'scalar': {
      // Replace the value after the first "key:" on the line, or the item after "- ", or the whole line.
      // A key whose value is the indented block below it loses that block, so the new value replaces the whole node.
      const line = lines[i] ?? '';
      const keyed = /^(\s*(?:- )?[^:#]+:)(\s.*)?$/.exec(line);
      const item = /^(\s*- )(.*)$/.exec(line);
      lines[i] = keyed ? `${keyed[1]} ${m.value}` : item ? `${item[1]}${m.value}` : m.value;
      if (keyed && (keyed[2] ?? '').trim() === '') {
        const indent = /^\s*/.exec(line)![0].length;
        let end = i + 1;
        while (end < lines.length && (lines[end]!.trim() === '' || /^\s*/.exec(lines[end]!)![0].length > indent)) end++;
        lines.splice(i + 1, end - i - 1);
      }
      break;
    }
    case 'insert':
      lines.splice(i, 0, m.line);
      break;
    case 'truncate':
      return text.slice(0, m.at % (text.length + 1));
  }
  return lines.join('\n');
}

const mutatedArb: fc.Arbitrary<{ sample: number; mutations: Mutation[] }> = fc.record({
  sample: fc.nat({ max: VALID_SAMPLES.length - 1 }),
  mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
});

function mutated({ sample, mutations }: { sample: number; mutations: Mutation[] }): string {
  return mutations.reduce(applyMutation, VALID_SAMPLES[sample]!);
}

/**
 * Structural mutations: the valid sample's data tree with nodes swapped for values of another type,
 * keys deleted or added. The text stays well-formed YAML, so every one reaches the schema and the
 * resolver, which must cope with wrong types everywhere.
 */
type Path = (string | number)[];

function nodePaths(value: unknown, path: Path = [], out: Path[] = []): Path[] {
  out.push(path);
  if (Array.isArray(value)) value.forEach((v, i) => nodePaths(v, [...path, i], out));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) nodePaths(v, [...path, k], out);
  return out;
}

const SAMPLE_DATA = VALID_SAMPLES.map((text) => parseYaml(text, { merge: true }) as unknown);
const SAMPLE_PATHS = SAMPLE_DATA.map((data) => nodePaths(data));

const otherTypeArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, -1, 42, 1.5, 65536, 1e21, Number.MAX_SAFE_INTEGER + 2, true, false, null, '', 'x', '5s', '/x', [], {}),
  fc.array(fc.constantFrom<unknown>(1, 'x', null, true, {}, [], 'GET', 503, '5xx'), { minLength: 1, maxLength: 3 }),
  fc.dictionary(fc.constantFrom('a', 'url', 'path', 'name', 'pathPrefix', 'x-k'), fc.constantFrom<unknown>(1, 'x', null, [], {}), { maxKeys: 3 }),
  fc.string({ maxLength: 6 }),
);

type NodeEdit =
  | { kind: 'replace'; at: number; value: unknown }
  | { kind: 'delete'; at: number }
  | { kind: 'add'; at: number; key: string; value: unknown };

const nodeEditArb: fc.Arbitrary<NodeEdit> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value: otherTypeArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('add' as const), at: fc.nat(), key: fc.constantFrom(...INSERTED_KEYS), value: otherTypeArb }) },
);

function applyNodeEdits(sample: number, edits: readonly NodeEdit[]): unknown {
  const root = structuredClone(SAMPLE_DATA[sample]) as unknown;
  const paths = SAMPLE_PATHS[sample]!;
  let data = root;
  for (const edit of edits) {
    const path = paths[edit.at % paths.length]!;
    if (path.length === 0) {
      if (edit.kind === 'replace') data = edit.value;
      continue;
    }
    // Walk to the parent; an earlier edit may have changed the shape, then this edit does nothing.
    let parent: unknown = data;
    for (const seg of path.slice(0, -1)) parent = parent !== null && typeof parent === 'object' ? (parent as Record<string, unknown>)[seg] : undefined;
    if (parent === null || typeof parent !== 'object') continue;
    const last = path[path.length - 1]!;
    const target = parent as Record<string | number, unknown>;
    if (edit.kind === 'replace') target[last] = edit.value;
    else if (edit.kind === 'delete') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete target[last];
    } else {
      const child = target[last];
      if (child !== null && typeof child === 'object' && !Array.isArray(child)) (child as Record<string, unknown>)[edit.key] = edit.value;
      else if (Array.isArray(child)) child.push({ [edit.key]: edit.value });
    }
  }
  return data;
}

const nodeEditedArb = fc.record({
  sample: fc.nat({ max: VALID_SAMPLES.length - 1 }),
  edits: fc.array(nodeEditArb, { minLength: 1, maxLength: 3 }),
});

// ---------------------------------------------------------------------------------------------
// (c) random JS values through yaml.stringify

const SCHEMA_KEYS = [...new Set([...INSERTED_KEYS.filter((k) => /^[A-Za-z]+$/.test(k)), 'trustedProxies', 'maxBodySize', 'headersTimeout',
  'requestTimeout', 'keepAliveTimeout', 'maxConnections', 'drainDelay', 'interval', 'unhealthyThreshold', 'healthyThreshold', 'ca',
  'cert', 'key', 'serverName', 'insecureSkipVerify', 'datacenter', 'instanceTls', 'tagRoutes', 'id', 'address', 'tags', 'checkInterval',
  'connectTimeout', 'retryBudget', 'percent', 'minConcurrent', 'maxRetryBodySize', 'errorThresholdPercentage', 'volumeThreshold',
  'window', 'resetTimeout', 'outlierDetection', 'consecutiveFailures', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent',
  'panicThreshold', 'maxInFlight'])];

const leafArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...REPLACEMENT_VALUES, 'GET', 'header:x-user', 'cookie:s', 'ip', '5xx', 'consistent-hash', 'connect-failure', '10.0.0.0/8', 'http://127.0.0.1:3001', '/hello'),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
);

/** Values shaped a little like a config: mappings keyed by schema names, lists, and any leaf anywhere. */
const configShapedArb: fc.Arbitrary<unknown> = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 3, arbitrary: leafArb },
    { weight: 2, arbitrary: fc.dictionary(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...SCHEMA_KEYS) }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) }), tie('node'), { maxKeys: 5 }) },
    { weight: 1, arbitrary: fc.array(tie('node'), { maxLength: 4 }) },
  ),
})).node;

const rootShapedArb = fc.dictionary(
  fc.constantFrom('server', 'admin', 'shutdown', 'registry', 'defaults', 'routes', 'routes', 'x'),
  configShapedArb,
  { maxKeys: 6 },
);

/** Nesting far deeper than any config: lists or mappings `depth` levels down, at a few places in the document. */
const deepArb = fc
  .tuple(fc.integer({ min: 1, max: 300 }), fc.constantFrom('list', 'map', 'mixed'), leafArb, fc.constantFrom('routes', 'server', 'header', 'unknown'))
  .map(([depth, shape, leaf, place]) => {
    let value: unknown = leaf;
    for (let d = 0; d < depth; d++) {
      const asList = shape === 'list' || (shape === 'mixed' && d % 2 === 0);
      value = asList ? [value] : { [SCHEMA_KEYS[d % SCHEMA_KEYS.length]!]: value };
    }
    if (place === 'routes') return { routes: value };
    if (place === 'server') return { server: value, routes: [{ name: 'r', service: 's', match: { pathPrefix: '/' } }] };
    if (place === 'unknown') return { routes: [{ name: 'r', service: 's', match: { pathPrefix: '/' }, extra: value }] };
    return { routes: [{ name: 'r', service: 's', match: { pathPrefix: '/', headers: { 'x-deep': value } } }] };
  });

/** stringify of a JS value; undefined when yaml cannot serialize it (not the loader's business). */
function toYaml(value: unknown, flow: boolean): string | undefined {
  try {
    return stringify(value, { collectionStyle: flow ? 'flow' : 'block', aliasDuplicateObjects: true });
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Properties

describe('config loader properties', () => {
  it('the unmutated samples are valid', () => {
    for (const text of VALID_SAMPLES) {
      const result = checkContract(text);
      assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.problems));
    }
    // The rich sample really resolves what it sets.
    const rich = parse(RICH_YAML);
    assert.ok(rich.ok);
    assert.equal(rich.config.routes.length, 3);
    assert.equal(rich.config.routes[1]!.timeoutMs, 5_000);
    assert.equal(rich.config.routes[1]!.maxInFlight, 100);
    assert.equal(rich.config.routes[0]!.match.host, 'example.com');
    assert.deepEqual(rich.config.routes[0]!.match.methods, ['GET', 'POST']);
    assert.ok(rich.config.registry.consul?.register !== undefined);
  });

  it('never throws on random strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 })), (text) => {
        checkContract(text);
      }),
      { numRuns: 3_000 },
    );
  });

  it('never throws on YAML-ish token soup', () => {
    fc.assert(
      fc.property(yamlishArb, (text) => {
        checkContract(text);
      }),
      { numRuns: 2_000 },
    );
  });

  it('never throws on line-structured YAML-ish documents', () => {
    fc.assert(
      fc.property(yamlLinesArb, (text) => {
        checkContract(text);
      }),
      { numRuns: 1_500 },
    );
  });

  it('never throws on mutations of valid configs', () => {
    fc.assert(
      fc.property(mutatedArb, (m) => {
        checkContract(mutated(m));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws when nodes of a valid config change type, vanish or gain keys', () => {
    fc.assert(
      fc.property(nodeEditedArb, fc.boolean(), ({ sample, edits }, flow) => {
        const text = toYaml(applyNodeEdits(sample, edits), flow);
        fc.pre(text !== undefined);
        checkContract(text);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on random values serialized by yaml.stringify', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything({ maxDepth: 4, withNullPrototype: true, withBigInt: true, withDate: true, withMap: true, withSet: true, withSparseArray: true, withBoxedValues: true }),
          rootShapedArb,
        ),
        fc.boolean(),
        (value, flow) => {
          const text = toYaml(value, flow);
          fc.pre(text !== undefined);
          checkContract(text);
        },
      ),
      { numRuns: 600 },
    );
  });

  it('never throws on config-shaped values with random types at known keys', () => {
    fc.assert(
      fc.property(rootShapedArb, fc.boolean(), (value, flow) => {
        const text = toYaml(value, flow);
        fc.pre(text !== undefined);
        checkContract(text);
      }),
      { numRuns: 1_000 },
    );
  });

  it('never throws on very deep nesting', () => {
    fc.assert(
      fc.property(deepArb, fc.boolean(), (value, flow) => {
        const text = toYaml(value, flow);
        fc.pre(text !== undefined);
        checkContract(text);
      }),
      { numRuns: 60 },
    );
  });
});

describe('config loader keeps what it accepts', () => {
  const tokenArb = fc.oneof(
    { weight: 3, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/) },
    { weight: 1, arbitrary: fc.constantFrom('x-env', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__') },
  );

  function withHeader(name: string, value: string): string {
    return stringify({
      registry: { static: { services: { s: { instances: ['http://127.0.0.1:1'] } } } },
      routes: [{ name: 'r', service: 's', match: { pathPrefix: '/admin', headers: { [name]: value } } }],
    });
  }

  function withServices(names: readonly string[]): string {
    return stringify({
      registry: { static: { services: Object.fromEntries([...names, 's'].map((n) => [n, { instances: ['http://127.0.0.1:1'] }])) } },
      routes: [{ name: 'r', service: 's', match: { pathPrefix: '/' } }],
    });
  }

  it('a header condition the loader accepts is kept (ordinary names)', () => {
    fc.assert(
      fc.property(tokenArb.filter((n) => n !== '__proto__'), fc.stringMatching(/^[a-z0-9]{1,8}$/), (name, value) => {
        const result = checkContract(withHeader(name, value));
        assert.ok(result.ok);
        assert.deepEqual({ ...result.config.routes[0]!.match.headers }, { [name.toLowerCase()]: value });
      }),
      { numRuns: 300 },
    );
  });

  // "__proto__" is a valid header token, so
  // the schema and the name check accept `headers: { __proto__: secret }`, but Resolver.match assigns
  // it into a plain {} (headers[name] = ...), which hits the prototype setter: the route loads with
  // headers {} and matches every request, i.e. the header gate silently disappears.
  it('a header condition the loader accepts is kept (any token, __proto__ included)', () => {
    fc.assert(
      fc.property(tokenArb, fc.stringMatching(/^[a-z0-9]{1,8}$/), (name, value) => {
        const result = parse(withHeader(name, value));
        // Either refuse the name or keep the condition; never accept it and drop it.
        if (!result.ok) return;
        assert.deepEqual(Object.entries(result.config.routes[0]!.match.headers ?? {}), [[name.toLowerCase(), value]]);
      }),
      { numRuns: 300 },
    );
  });

  // Same trap in Resolver.services: a service named "__proto__" matches
  // SERVICE_NAME_PATTERN, then `out[name] = ...` on a plain {} sets the map's prototype instead of an
  // entry. Unreferenced, the config loads with the service silently missing; referenced, the loader
  // reports 'unknown service "__proto__"' although it is right there in registry.static.services.
  it('every static service the loader accepts is in the resolved registry', () => {
    fc.assert(
      fc.property(fc.uniqueArray(tokenArb.filter((n) => n !== 's'), { maxLength: 3 }), (names) => {
        const result = parse(withServices(names));
        if (!result.ok) return;
        assert.deepEqual(Object.keys(result.config.registry.static?.services ?? {}).sort(), [...names, 's'].sort());
      }),
      { numRuns: 300 },
    );
  });
});
