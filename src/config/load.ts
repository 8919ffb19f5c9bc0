/**
 * Config loader: YAML text -> validated, fully-defaulted GatewayConfig.
 *
 * Three passes, all of which report into one list so a user sees every problem at once:
 *  1. YAML syntax (positions from the `yaml` package),
 *  2. JSON schema on the raw document (schema.ts),
 *  3. resolution: defaults, env fallbacks and cross-field rules.
 * Every problem is mapped back to the 1-based line:col of the offending YAML node.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { ErrorObject } from 'ajv';
import type { BalancerName } from '../routing/balancers/types.ts';
import { formatDuration, parseDuration } from './duration.ts';
import { parseSize } from './size.ts';
import {
  BALANCERS,
  RETRY_CONDITIONS,
  SERVICE_NAME_PATTERN,
  SERVICE_NAME_REASON,
  TOKEN_PATTERN,
  validateRawConfig,
} from './schema.ts';
import type {
  ConsulConfig,
  ConsulRegisterConfig,
  ConsulTlsConfig,
  EtcdConfig,
  EtcdRegisterConfig,
  GatewayConfig,
  HashKeySource,
  HealthCheckConfig,
  AdminConfig,
  ListenConfig,
  ServerConfig,
  SplitBackend,
  UpstreamTlsConfig,
  RetryCondition,
  RouteConfig,
  RouteDefaults,
  RouteMatch,
  RegistryName,
  StaticInstanceConfig,
  StaticServiceConfig,
} from './types.ts';

export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  path: string;
  reason: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col} ${p.path}: ${p.reason}`;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface ParseOptions {
  /** Name used in problem locations. */
  file: string;
  /** Source of CONSUL_* fallbacks; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Used for CONSUL_HTTP_TOKEN_FILE; defaults to fs.readFileSync(path, 'utf8'). */
  readFile?: (p: string) => string;
}

export type ParseResult = { ok: true; config: GatewayConfig } | { ok: false; problems: ConfigProblem[] };

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Every default the loader applies, in resolved units (ms, bytes). */
export const DEFAULTS = deepFreeze({
  server: { host: '0.0.0.0', port: 8080 },
  serverLimits: {
    trustedProxies: [] as readonly string[],
    maxBodySize: 10 * 1024 * 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 60_000,
    // Longer than the 60 s idle timeout of common load balancers (AWS ALB, GCP), so they never reuse a connection the gateway just closed.
    keepAliveTimeoutMs: 65_000,
    maxConnections: 10_000,
  },
  admin: { host: '127.0.0.1', port: 9901 },
  shutdown: { drainDelayMs: 5_000, timeoutMs: 30_000 },
  // Off by default: request lines are volume an operator opts into; stdout suits containers.
  accessLog: { enabled: false, path: 'stdout' },
  instanceWeight: 1,
  healthCheck: { path: '/health', intervalMs: 5_000, timeoutMs: 2_000, unhealthyThreshold: 2, healthyThreshold: 1 },
  consul: {
    address: 'http://127.0.0.1:8500',
    waitMs: 300_000,
    maxWaitMs: 600_000,
    tagRoutes: false,
    insecureSkipVerify: false,
    // Any server answers, so reads keep working through leader elections (fabio PR #811; CONTRACT fact 26).
    consistency: 'stale' as const,
  },
  /** `id` defaults to `${name}-${os.hostname()}`; address/port come from `server` (see resolveRegister). */
  consulRegister: { name: 'waygate', tags: [] as readonly string[], checkIntervalMs: 10_000, wildcardAddress: '127.0.0.1' },
  etcd: { endpoints: ['http://127.0.0.1:2379'] as readonly string[], prefix: '/services/' },
  /** `id` defaults to `${service}-${os.hostname()}`; no address = the public listener's (see Gateway). */
  etcdRegister: { service: 'waygate', ttlMs: 10_000 },
  routeDefaults: {
    timeoutMs: 30_000,
    connectTimeoutMs: 2_000,
    retries: 2,
    retryOn: ['connect-failure', 'reset'] as readonly RetryCondition[],
    retryBudget: { percent: 20, minConcurrent: 3 },
    maxRetryBodySize: 65_536,
    circuitBreaker: { failureStatuses: ['5xx'] as readonly (number | '5xx')[], errorThresholdPercentage: 50, volumeThreshold: 10, windowMs: 10_000, resetTimeoutMs: 10_000 },
    outlierDetection: { consecutiveFailures: 5, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 50 },
    panicThreshold: 50,
  } satisfies RouteDefaults,
  route: {
    stripPrefix: false,
    loadBalancer: 'round-robin' as BalancerName,
    tags: [] as readonly string[],
    /** hashKey used when loadBalancer is consistent-hash and none is given. */
    consistentHashKey: { kind: 'ip' } as HashKeySource,
  },
});

// ---------------------------------------------------------------------------------------------
// Paths and positions

type Segment = string | number;

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(root)' : out;
}

/** Maps a data path to the YAML node it came from, falling back to the closest ancestor. */
class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** `key` points at the mapping key (for unknown keys); `value` at the value. */
  locate(path: readonly Segment[], target: 'key' | 'value' = 'value'): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let best = this.pos(node) ?? { line: 1, col: 1 };
    for (let i = 0; i < path.length; i++) {
      node = this.deref(node);
      const seg = path[i] as Segment;
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = this.findPair(node, String(seg), 0);
        if (pair === undefined) return best;
        const keyPos = this.pos(pair.key);
        if (last && target === 'key') return keyPos ?? best;
        const valuePos = this.pos(pair.value, true);
        // `key:` with no value has an empty scalar; the key is the useful place to point.
        best = valuePos ?? keyPos ?? best;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item: unknown = node.items[seg];
        if (item === undefined) return best;
        best = this.pos(item, true) ?? best;
        node = item;
      } else {
        return best;
      }
    }
    return best;
  }

  private deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  // Follows `<<` merge keys so values pulled in from an anchor still get a position.
  private findPair(map: { items: { key: unknown; value: unknown }[] }, key: string, depth: number): { key: unknown; value: unknown } | undefined {
    // Search from the end: with a duplicated key (already a YAML error) toJS keeps the last value.
    let direct: { key: unknown; value: unknown } | undefined;
    for (let i = map.items.length - 1; i >= 0 && direct === undefined; i--) {
      const p = map.items[i];
      if (p !== undefined && isScalar(p.key) && String(p.key.value) === key) direct = p;
    }
    if (direct !== undefined || depth > 10) return direct;
    for (const p of map.items) {
      if (!isScalar(p.key) || p.key.value !== '<<') continue;
      const sources = isSeq(p.value) ? p.value.items : [p.value];
      for (const src of sources) {
        const target = this.deref(src);
        if (isMap(target)) {
          const found = this.findPair(target, key, depth + 1);
          if (found !== undefined) return found;
        }
      }
    }
    return undefined;
  }

  private pos(node: unknown, skipEmpty = false): { line: number; col: number } | undefined {
    const range = (node as Node | null | undefined)?.range;
    if (range === undefined || range === null) return undefined;
    if (skipEmpty && isScalar(node) && node.value === null && node.source === '') return undefined;
    return this.lines.linePos(range[0]);
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

export function parseConfig(text: string, options: ParseOptions): ParseResult {
  const { file } = options;
  const problems: ConfigProblem[] = [];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, merge: true, prettyErrors: true, logLevel: 'error' });
  const locator = new Locator(doc, lines);

  for (const err of doc.errors) {
    const at = err.linePos?.[0] ?? { line: 1, col: 1 };
    problems.push({ file, line: at.line, col: at.col, path: '(yaml)', reason: `invalid YAML: ${yamlReason(err.message)}` });
  }
  // A duplicate key still leaves a usable tree; any other syntax error makes later passes guess.
  const usable = doc.errors.every((e) => e.code === 'DUPLICATE_KEY');
  if (!usable) return { ok: false, problems: sortProblems(problems) };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    problems.push({ file, line: 1, col: 1, path: '(yaml)', reason: `invalid YAML: ${errorMessage(err)}` });
    return { ok: false, problems: sortProblems(problems) };
  }
  if (data === null || data === undefined) {
    problems.push({ file, line: 1, col: 1, path: '(root)', reason: 'config is empty' });
    return { ok: false, problems: sortProblems(problems) };
  }

  const report = (path: readonly Segment[], reason: string, target: 'key' | 'value' = 'value', at?: readonly Segment[]): void => {
    const { line, col } = locator.locate(at ?? path, target);
    problems.push({ file, line, col, path: formatPath(path), reason });
  };

  for (const err of validateRawConfig(data)) schemaProblem(err, data, report);

  const resolver = new Resolver(report, options.env ?? process.env, options.readFile ?? ((p) => readFileSync(p, 'utf8')));
  const config = resolver.resolve(data);

  if (problems.length > 0) return { ok: false, problems: sortProblems(dedupe(problems)) };
  return { ok: true, config };
}

export function loadConfigFile(file: string, env?: NodeJS.ProcessEnv): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, path: '(file)', reason: readFailure(err) }]);
  }
  const result = parseConfig(text, env === undefined ? { file } : { file, env });
  if (!result.ok) throw new ConfigError(result.problems);
  return result.config;
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'cannot read config: file not found';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot read config: permission denied';
  if (code === 'EISDIR') return 'cannot read config: is a directory';
  return `cannot read config: ${errorMessage(err)}`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** "Map keys must be unique at line 2, column 1:\n\n<frame>" -> "map keys must be unique". */
function yamlReason(message: string): string {
  const first = (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '').trim();
  return first.charAt(0).toLowerCase() + first.slice(1);
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  // Array.prototype.sort is stable, so problems on the same node keep discovery order.
  return problems.sort((a, b) => a.line - b.line || a.col - b.col);
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = formatProblem(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Schema errors -> problems

type Report = (path: readonly Segment[], reason: string, target?: 'key' | 'value', at?: readonly Segment[]) => void;

function pointerToPath(pointer: string, data: unknown): Segment[] {
  if (pointer === '') return [];
  const out: Segment[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const index = Number(key);
      out.push(index);
      cur = cur[index];
    } else {
      out.push(key);
      cur = isObject(cur) ? cur[key] : undefined;
    }
  }
  return out;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  null: 'empty',
};

function schemaProblem(err: ErrorObject, data: unknown, report: Report): void {
  const path = pointerToPath(err.instancePath, data);
  const parent = (err.parentSchema ?? {}) as Record<string, unknown>;
  const override = (parent['x-reasons'] as Record<string, string> | undefined)?.[err.keyword];
  const params = err.params as Record<string, unknown>;

  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String(params['additionalProperty']);
      const known = Object.keys((parent['properties'] as Record<string, unknown> | undefined) ?? {});
      report([...path, key], unknownKey(key, known), 'key');
      return;
    }
    case 'required':
      // Point at the mapping that lacks the key; the path names the missing key.
      report([...path, String(params['missingProperty'])], override ?? 'is required', 'value', path);
      return;
  }

  let reason = override;
  if (reason === undefined) {
    switch (err.keyword) {
      case 'type': {
        const types = Array.isArray(params['type']) ? (params['type'] as string[]) : String(params['type']).split(',');
        reason = `must be ${types.map((t) => TYPE_NAMES[t] ?? t).join(' or ')}`;
        break;
      }
      case 'enum': {
        const allowed = [...new Set((params['allowedValues'] as unknown[]).map(String))];
        reason = `must be one of ${allowed.join(', ')}`;
        break;
      }
      case 'minimum':
      case 'maximum': {
        const min = parent['minimum'];
        const max = parent['maximum'];
        reason =
          min !== undefined && max !== undefined
            ? `must be between ${String(min)} and ${String(max)}`
            : err.keyword === 'minimum'
              ? `must be at least ${String(min)}`
              : `must be at most ${String(max)}`;
        break;
      }
      case 'minItems':
      case 'minLength':
        reason = 'must not be empty';
        break;
      default:
        // Custom keywords (duration, size) carry their own human message.
        reason = err.message ?? `is invalid (${err.keyword})`;
    }
  }
  report(path, reason);
}

function unknownKey(key: string, known: readonly string[]): string {
  const lower = key.toLowerCase();
  const guess =
    known.find((k) => k.toLowerCase() === lower) ?? known.find((k) => editDistance(k.toLowerCase(), lower) <= 2);
  return guess === undefined ? `unknown key "${key}"` : `unknown key "${key}" (did you mean "${guess}"?)`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

// ---------------------------------------------------------------------------------------------
// Resolution. The schema has already reported type/format errors, so accessors here quietly
// fall back to defaults for values of the wrong shape; only rules the schema cannot express
// are reported from this pass.

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const asObj = (v: unknown): Obj => (isObject(v) ? v : {});
const asString = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const asBool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
const asInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : undefined;
const asPercent = (v: unknown): number | undefined => (typeof v === 'number' && v >= 0 && v <= 100 ? v : undefined);
const asDuration = (v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined => {
  const ms = parseDuration(v);
  return ms !== undefined && ms >= min && ms <= max ? ms : undefined;
};
const asStringList = (v: unknown): string[] | undefined =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : undefined;

/** Drops undefined-valued keys so optional fields are absent rather than present-but-undefined. */
/** A mapping of strings (route `meta`), or undefined when absent or empty. */
function stringMap(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) if (typeof item === 'string') setOwn(out, key, item);
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Assigns an own property, even for names like "__proto__" that a plain `obj[name] =` would turn into a prototype change. */
function setOwn<V>(target: Record<string, V>, name: string, value: V): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}

/** `{ key: value }` when the value is set, else nothing, so resolved objects carry no undefined keys. */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function compact<T extends object>(value: T): T {
  for (const k of Object.keys(value) as (keyof T)[]) if (value[k] === undefined) delete value[k];
  return value;
}

const SERVICE_NAME = new RegExp(SERVICE_NAME_PATTERN);
const TOKEN = new RegExp(TOKEN_PATTERN);
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);
const ORIGIN_REASON = 'must be an http:// or https:// origin without path or query, like http://127.0.0.1:3001';

/** http(s) origin with no path/query/credentials; returns the normalised origin or undefined. */
/** Keeps the valid entries of a failureStatuses list (the schema has reported the others), without duplicates. */
function failureStatuses(items: unknown[]): (number | '5xx')[] {
  const out: (number | '5xx')[] = [];
  for (const item of items) {
    const valid = item === '5xx' || (Number.isInteger(item) && (item as number) >= 400 && (item as number) <= 599);
    if (valid && !out.includes(item as number | '5xx')) out.push(item as number | '5xx');
  }
  return out;
}

export function normaliseOrigin(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(raw)) return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  return url.origin;
}

/** Go's strconv.ParseBool, which is what the Consul CLI uses for CONSUL_HTTP_SSL & co. */
function parseEnvBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  return undefined;
}

class Resolver {
  constructor(
    private readonly report: Report,
    private readonly env: NodeJS.ProcessEnv,
    private readonly readFile: (p: string) => string,
  ) {}

  resolve(data: unknown): GatewayConfig {
    const root = asObj(data);
    const server = this.server(root['server']);
    const admin = this.admin(root['admin']);
    const shutdownRaw = asObj(root['shutdown']);
    const registryRaw = asObj(root['registry']);
    const services = this.services(asObj(asObj(registryRaw['static'])['services']));
    const consul = isObject(registryRaw['consul']) ? this.consul(registryRaw['consul'], server) : undefined;
    const etcd = isObject(registryRaw['etcd']) ? this.etcd(registryRaw['etcd']) : undefined;
    const dynamic = [...(consul ? ['consul' as const] : []), ...(etcd ? ['etcd' as const] : [])];
    const defaults = this.routeDefaults(root['defaults'], DEFAULTS.routeDefaults, ['defaults']);
    const routes = this.routes(root['routes'], defaults, services, consul !== undefined, dynamic);

    return {
      server,
      admin,
      shutdown: {
        drainDelayMs: asDuration(shutdownRaw['drainDelay']) ?? DEFAULTS.shutdown.drainDelayMs,
        timeoutMs: asDuration(shutdownRaw['timeout']) ?? DEFAULTS.shutdown.timeoutMs,
      },
      registry: compact({ static: { services }, consul, etcd }),
      defaults,
      routes,
      accessLog: {
        enabled: asBool(asObj(root['accessLog'])['enabled']) ?? DEFAULTS.accessLog.enabled,
        path: asString(asObj(root['accessLog'])['path']) ?? DEFAULTS.accessLog.path,
      },
    };
  }

  private server(rawValue: unknown): ServerConfig {
    const raw = asObj(rawValue);
    const d = DEFAULTS.serverLimits;
    const tls = asObj(raw['tls']);
    const cert = asString(tls['cert']);
    const key = asString(tls['key']);
    return compact({
      ...this.listen(raw, DEFAULTS.server),
      tls: cert !== undefined && key !== undefined ? { cert, key } : undefined,
      trustedProxies: asStringList(raw['trustedProxies']) ?? [...d.trustedProxies],
      maxBodySize: parseSize(raw['maxBodySize']) ?? d.maxBodySize,
      headersTimeoutMs: asDuration(raw['headersTimeout'], 1) ?? d.headersTimeoutMs,
      requestTimeoutMs: asDuration(raw['requestTimeout'], 1) ?? d.requestTimeoutMs,
      keepAliveTimeoutMs: asDuration(raw['keepAliveTimeout'], 1) ?? d.keepAliveTimeoutMs,
      maxConnections: asInt(raw['maxConnections'], 1) ?? d.maxConnections,
    });
  }

  /** The admin token comes from YAML, else env WAYGATE_ADMIN_TOKEN; an empty YAML token means open. */
  private admin(rawValue: unknown): AdminConfig {
    const raw = asObj(rawValue);
    const token = typeof raw['token'] === 'string' ? raw['token'] : this.envString('WAYGATE_ADMIN_TOKEN');
    return compact({ ...this.listen(raw, DEFAULTS.admin), token: token === '' ? undefined : token });
  }

  private upstreamTls(rawValue: unknown, fallback: { ca?: string | undefined; insecureSkipVerify?: boolean } = {}): UpstreamTlsConfig | undefined {
    if (!isObject(rawValue) && fallback.ca === undefined && !fallback.insecureSkipVerify) return undefined;
    const raw = asObj(rawValue);
    return compact({
      ca: asString(raw['ca']) ?? fallback.ca,
      serverName: asString(raw['serverName']),
      insecureSkipVerify: asBool(raw['insecureSkipVerify']) ?? fallback.insecureSkipVerify ?? false,
    });
  }

  private listen(raw: unknown, def: ListenConfig): ListenConfig {
    const o = asObj(raw);
    return { host: asString(o['host']) ?? def.host, port: asInt(o['port'], 0, 65535) ?? def.port };
  }

  private services(raw: Obj): Record<string, StaticServiceConfig> {
    const out: Record<string, StaticServiceConfig> = {};
    for (const [name, svcRaw] of Object.entries(raw)) {
      const path: Segment[] = ['registry', 'static', 'services', name];
      if (!SERVICE_NAME.test(name)) this.report(path, SERVICE_NAME_REASON, 'key');
      const svc = asObj(svcRaw);
      const instances: StaticInstanceConfig[] = [];
      const firstIndex = new Map<string, number>();
      (Array.isArray(svc['instances']) ? svc['instances'] : []).forEach((item: unknown, i) => {
        const objectForm = isObject(item);
        const url = objectForm ? item['url'] : item;
        if (typeof url !== 'string') return; // schema reported it
        const urlPath = objectForm ? [...path, 'instances', i, 'url'] : [...path, 'instances', i];
        const origin = normaliseOrigin(url);
        if (origin === undefined) {
          this.report(urlPath, ORIGIN_REASON);
          return;
        }
        const seen = firstIndex.get(origin);
        if (seen !== undefined) {
          this.report(urlPath, `duplicates instances[${seen}] (${origin})`);
          return;
        }
        firstIndex.set(origin, i);
        instances.push({ url: origin, weight: (objectForm ? asInt(item['weight'], 1) : undefined) ?? DEFAULTS.instanceWeight });
      });
      setOwn(out, name, compact({
        instances,
        healthCheck: isObject(svc['healthCheck']) ? this.healthCheck(svc['healthCheck']) : undefined,
        tls: this.upstreamTls(svc['tls']),
      }));
    }
    return out;
  }

  private healthCheck(raw: Obj): HealthCheckConfig {
    const d = DEFAULTS.healthCheck;
    return {
      path: typeof raw['path'] === 'string' && raw['path'].startsWith('/') ? raw['path'] : d.path,
      intervalMs: asDuration(raw['interval'], 1) ?? d.intervalMs,
      timeoutMs: asDuration(raw['timeout'], 1) ?? d.timeoutMs,
      unhealthyThreshold: asInt(raw['unhealthyThreshold'], 1) ?? d.unhealthyThreshold,
      healthyThreshold: asInt(raw['healthyThreshold'], 1) ?? d.healthyThreshold,
    };
  }

  /** Reads a boolean env var, reporting (at the consul block) values Consul would reject too. */
  private envBool(name: string): boolean | undefined {
    const value = this.env[name];
    if (value === undefined || value === '') return undefined;
    const parsed = parseEnvBool(value);
    if (parsed === undefined) this.report(['registry', 'consul'], `env ${name}="${value}" must be true, false, 1 or 0`);
    return parsed;
  }

  private envString(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value === '' ? undefined : value;
  }

  private consul(raw: Obj, server: ListenConfig): ConsulConfig {
    const base: Segment[] = ['registry', 'consul'];

    // Address: YAML, then CONSUL_HTTP_ADDR, then the local agent. A bare host:port takes its
    // scheme from CONSUL_HTTP_SSL, like the consul CLI does.
    const ssl = this.envBool('CONSUL_HTTP_SSL') ?? false;
    const yamlAddress = asString(raw['address']);
    const envAddress = this.envString('CONSUL_HTTP_ADDR');
    let address: string = DEFAULTS.consul.address;
    const given = yamlAddress ?? envAddress;
    if (given !== undefined) {
      const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(given) ? given : `${ssl ? 'https' : 'http'}://${given}`;
      const origin = normaliseOrigin(withScheme);
      if (origin === undefined) {
        const hint = 'must be an http:// or https:// address like http://127.0.0.1:8500';
        this.report([...base, 'address'], yamlAddress !== undefined ? hint : `from env CONSUL_HTTP_ADDR="${given}": ${hint}`);
      } else {
        address = origin;
      }
    }

    // Token: YAML (even if empty, which means "no token"), CONSUL_HTTP_TOKEN, then the token file.
    let token: string | undefined;
    if (typeof raw['token'] === 'string') {
      token = raw['token'] === '' ? undefined : raw['token'];
    } else {
      token = this.envString('CONSUL_HTTP_TOKEN');
      const tokenFile = this.envString('CONSUL_HTTP_TOKEN_FILE');
      if (token === undefined && tokenFile !== undefined) {
        try {
          token = this.readFile(tokenFile).trim() || undefined;
        } catch (err) {
          this.report([...base, 'token'], `cannot read env CONSUL_HTTP_TOKEN_FILE="${tokenFile}": ${errorMessage(err)}`);
        }
      }
    }

    const tls = this.tls(raw['tls'], base);
    return compact({
      address,
      token,
      datacenter: asString(raw['datacenter']),
      waitMs: asDuration(raw['wait'], 1, DEFAULTS.consul.maxWaitMs) ?? DEFAULTS.consul.waitMs,
      consistency: (['stale', 'default', 'consistent'] as const).find((mode) => mode === raw['consistency']) ?? DEFAULTS.consul.consistency,
      snapshotFile: asString(raw['snapshotFile']),
      tls,
      instanceTls: this.upstreamTls(raw['instanceTls'], { ca: tls?.ca, insecureSkipVerify: tls?.insecureSkipVerify ?? false }),
      tagRoutes: asBool(raw['tagRoutes']) ?? DEFAULTS.consul.tagRoutes,
      register: isObject(raw['register']) ? this.register(raw['register'], server) : undefined,
    });
  }

  private tls(rawValue: unknown, base: readonly Segment[]): ConsulTlsConfig | undefined {
    const raw = asObj(rawValue);
    const verify = this.envBool('CONSUL_HTTP_SSL_VERIFY');
    const tls = compact({
      ca: asString(raw['ca']) ?? this.envString('CONSUL_CACERT'),
      cert: asString(raw['cert']) ?? this.envString('CONSUL_CLIENT_CERT'),
      key: asString(raw['key']) ?? this.envString('CONSUL_CLIENT_KEY'),
      serverName: asString(raw['serverName']) ?? this.envString('CONSUL_TLS_SERVER_NAME'),
      insecureSkipVerify: asBool(raw['insecureSkipVerify']) ?? (verify === false ? true : undefined),
    });
    if (!isObject(rawValue) && Object.keys(tls).length === 0) return undefined;
    // A client certificate is useless without its key and vice versa.
    if (tls.cert !== undefined && tls.key === undefined) this.report([...base, 'tls', 'key'], 'is required when tls.cert is set');
    if (tls.key !== undefined && tls.cert === undefined) this.report([...base, 'tls', 'cert'], 'is required when tls.key is set');
    return { ...tls, insecureSkipVerify: tls.insecureSkipVerify ?? DEFAULTS.consul.insecureSkipVerify };
  }

  /** registry.etcd: endpoints are origins; ETCD_USERNAME / ETCD_PASSWORD stand in for absent YAML keys. */
  private etcd(raw: Obj): EtcdConfig {
    const base: Segment[] = ['registry', 'etcd'];
    const endpoints: string[] = [];
    (Array.isArray(raw['endpoints']) ? raw['endpoints'] : DEFAULTS.etcd.endpoints).forEach((endpoint: unknown, i) => {
      if (typeof endpoint !== 'string' || endpoint === '') return; // the schema reported it
      const origin = normaliseOrigin(endpoint);
      if (origin === undefined) this.report([...base, 'endpoints', i], 'must be an http:// or https:// origin like http://127.0.0.1:2379');
      else if (!endpoints.includes(origin)) endpoints.push(origin);
    });
    const username = asString(raw['username']) ?? this.envString('ETCD_USERNAME');
    const password = typeof raw['password'] === 'string' ? raw['password'] : this.envString('ETCD_PASSWORD');
    if (password !== undefined && username === undefined) this.report([...base, 'username'], 'is required when a password is set (YAML or env ETCD_PASSWORD)', 'value', base);
    const tlsRaw = asObj(raw['tls']);
    const tls = isObject(raw['tls']) ? compact({ ca: asString(tlsRaw['ca']), cert: asString(tlsRaw['cert']), key: asString(tlsRaw['key']) }) : undefined;
    if (tls?.cert !== undefined && tls.key === undefined) this.report([...base, 'tls', 'key'], 'is required when tls.cert is set');
    if (tls?.key !== undefined && tls.cert === undefined) this.report([...base, 'tls', 'cert'], 'is required when tls.key is set');
    const reg = asObj(raw['register']);
    const service = typeof reg['service'] === 'string' && SERVICE_NAME.test(reg['service']) ? reg['service'] : DEFAULTS.etcdRegister.service;
    const register: EtcdRegisterConfig | undefined = isObject(raw['register'])
      ? compact({ service, id: asString(reg['id']) ?? `${service}-${hostname()}`, address: asString(reg['address']), ttlMs: asDuration(reg['ttl'], 1_000) ?? DEFAULTS.etcdRegister.ttlMs })
      : undefined;
    if (register?.id.includes('/')) this.report([...base, 'register', 'id'], 'must not contain "/" (keys are <prefix><service>/<id>)');
    return compact({ endpoints, prefix: asString(raw['prefix']) ?? DEFAULTS.etcd.prefix, username, password, tls, register });
  }

  /**
   * The registry a route names, checked against the configured ones. With several dynamic registries a
   * route of a non-static service must name one, since its service could live in either.
   */
  private routeRegistry(raw: Obj, path: readonly Segment[], serviceNames: readonly string[], services: Record<string, StaticServiceConfig>, dynamic: readonly RegistryName[]): RegistryName | undefined {
    const named = (['static', 'consul', 'etcd'] as const).find((name) => name === raw['registry']);
    if (named !== undefined && named !== 'static' && !dynamic.includes(named)) this.report([...path, 'registry'], `names registry "${named}", but registry.${named} is not configured`);
    if (named === undefined && dynamic.length > 1 && serviceNames.some((name) => !Object.hasOwn(services, name))) {
      this.report([...path, 'registry'], `is required: both ${dynamic.join(' and ')} are configured (say which one serves this route)`, 'value', path);
    }
    return named;
  }

  private register(raw: Obj, server: ListenConfig): ConsulRegisterConfig {
    const d = DEFAULTS.consulRegister;
    const name = typeof raw['name'] === 'string' && SERVICE_NAME.test(raw['name']) ? raw['name'] : d.name;
    return {
      name,
      id: asString(raw['id']) ?? `${name}-${hostname()}`,
      // Registering 0.0.0.0 would make Consul health-check an unroutable address.
      address: asString(raw['address']) ?? (WILDCARD_HOSTS.has(server.host) ? d.wildcardAddress : server.host),
      port: asInt(raw['port'], 0, 65535) ?? server.port,
      tags: asStringList(raw['tags']) ?? [...d.tags],
      checkIntervalMs: asDuration(raw['checkInterval'], 1) ?? d.checkIntervalMs,
    };
  }

  /** Applies one level of overrides (defaults: or a route) on top of `base`, nested objects key by key. */
  private routeDefaults(rawValue: unknown, base: RouteDefaults, path: readonly Segment[]): RouteDefaults {
    const raw = asObj(rawValue);
    const rb = asObj(raw['retryBudget']);
    const cb = asObj(raw['circuitBreaker']);
    const od = asObj(raw['outlierDetection']);
    const outlierDetection = {
      consecutiveFailures: asInt(od['consecutiveFailures'], 1) ?? base.outlierDetection.consecutiveFailures,
      baseEjectionTimeMs: asDuration(od['baseEjectionTime']) ?? base.outlierDetection.baseEjectionTimeMs,
      maxEjectionTimeMs: asDuration(od['maxEjectionTime']) ?? base.outlierDetection.maxEjectionTimeMs,
      maxEjectionPercent: asPercent(od['maxEjectionPercent']) ?? base.outlierDetection.maxEjectionPercent,
    };
    // Only blame this level if it set one of the two; otherwise the level above already reported it.
    if (outlierDetection.maxEjectionTimeMs < outlierDetection.baseEjectionTimeMs) {
      const { baseEjectionTimeMs: lo, maxEjectionTimeMs: hi } = outlierDetection;
      if ('maxEjectionTime' in od) {
        this.report([...path, 'outlierDetection', 'maxEjectionTime'], `must not be less than baseEjectionTime (${formatDuration(lo)})`);
      } else if ('baseEjectionTime' in od) {
        this.report([...path, 'outlierDetection', 'baseEjectionTime'], `must not be greater than maxEjectionTime (${formatDuration(hi)})`);
      }
    }
    return {
      timeoutMs: asDuration(raw['timeout'], 1) ?? base.timeoutMs,
      connectTimeoutMs: asDuration(raw['connectTimeout'], 1) ?? base.connectTimeoutMs,
      retries: asInt(raw['retries'], 0) ?? base.retries,
      retryOn: Array.isArray(raw['retryOn']) ? this.retryOn(raw['retryOn']) : [...base.retryOn],
      retryBudget: {
        percent: asPercent(rb['percent']) ?? base.retryBudget.percent,
        minConcurrent: asInt(rb['minConcurrent'], 0) ?? base.retryBudget.minConcurrent,
      },
      maxRetryBodySize: parseSize(raw['maxRetryBodySize']) ?? base.maxRetryBodySize,
      circuitBreaker: {
        failureStatuses: Array.isArray(cb['failureStatuses']) ? failureStatuses(cb['failureStatuses']) : [...base.circuitBreaker.failureStatuses],
        errorThresholdPercentage: asPercent(cb['errorThresholdPercentage']) ?? base.circuitBreaker.errorThresholdPercentage,
        volumeThreshold: asInt(cb['volumeThreshold'], 0) ?? base.circuitBreaker.volumeThreshold,
        windowMs: asDuration(cb['window'], 1) ?? base.circuitBreaker.windowMs,
        resetTimeoutMs: asDuration(cb['resetTimeout'], 1) ?? base.circuitBreaker.resetTimeoutMs,
      },
      outlierDetection,
      panicThreshold: asPercent(raw['panicThreshold']) ?? base.panicThreshold,
      ...optional('maxInFlight', asInt(raw['maxInFlight'], 1) ?? base.maxInFlight),
    };
  }

  private retryOn(items: unknown[]): RetryCondition[] {
    const out: RetryCondition[] = [];
    for (const item of items) {
      const s = String(item);
      if ((RETRY_CONDITIONS as readonly string[]).includes(s) && !out.includes(s as RetryCondition)) out.push(s as RetryCondition);
    }
    return out;
  }

  private routes(
    rawValue: unknown,
    defaults: RouteDefaults,
    services: Record<string, StaticServiceConfig>,
    hasConsul: boolean,
    dynamic: readonly RegistryName[] = [],
  ): RouteConfig[] {
    const routes: RouteConfig[] = [];
    const names = new Map<string, number>();
    (Array.isArray(rawValue) ? rawValue : []).forEach((item: unknown, i) => {
      const path: Segment[] = ['routes', i];
      const raw = asObj(item);
      const name = asString(raw['name']) ?? `#${i}`;
      if (typeof raw['name'] === 'string') {
        const first = names.get(name);
        if (first !== undefined) this.report([...path, 'name'], `duplicate route name "${name}" (also routes[${first}])`);
        else names.set(name, i);
      }

      const split = Array.isArray(raw['split']) ? this.split(raw['split'], [...path, 'split']) : undefined;
      if (split !== undefined && raw['service'] !== undefined) this.report([...path, 'split'], 'use either service or split, not both');
      if (split === undefined && raw['service'] === undefined) this.report([...path, 'service'], 'is required');
      const service = typeof raw['service'] === 'string' ? raw['service'] : split?.[0]?.service ?? '';
      const registry = this.routeRegistry(raw, path, split ? split.map((backend) => backend.service) : [service], services, dynamic);
      // With a dynamic registry, services appear at runtime, so only static ones can be checked here.
      const staticOnly = registry === 'static' || (registry === undefined && dynamic.length === 0);
      const checkService = (name: string, at: readonly Segment[]) => {
        if (staticOnly && name !== '' && SERVICE_NAME.test(name) && !Object.hasOwn(services, name)) {
          this.report(at, `unknown service "${name}" (not in registry.static.services)`);
        }
      };
      if (split === undefined) checkService(service, [...path, 'service']);
      else split.forEach((backend, b) => checkService(backend.service, [...path, 'split', b, 'service']));

      const lb = (BALANCERS as readonly unknown[]).includes(raw['loadBalancer'])
        ? (raw['loadBalancer'] as BalancerName)
        : DEFAULTS.route.loadBalancer;
      const hashKey = parseHashKey(raw['hashKey']) ?? (lb === 'consistent-hash' ? { ...DEFAULTS.route.consistentHashKey } : undefined);

      routes.push(
        compact({
          name,
          match: this.match(raw['match'], [...path, 'match']),
          service,
          stripPrefix: asBool(raw['stripPrefix']) ?? DEFAULTS.route.stripPrefix,
          loadBalancer: lb,
          hashKey,
          tags: split?.[0]?.tags ? [...split[0].tags] : asStringList(raw['tags']) ?? [...DEFAULTS.route.tags],
          ...optional('meta', split ? split[0]?.meta : stringMap(raw['meta'])),
          ...optional('split', split),
          ...optional('datacenters', this.datacenters(raw['datacenters'], [...path, 'datacenters'], hasConsul && (registry === undefined || registry === 'consul'), split !== undefined)),
          ...this.routeDefaults(raw, defaults, path),
          source: 'yaml' as const,
          registry,
        }),
      );
    });
    return routes;
  }

  private datacenters(value: unknown, path: readonly Segment[], hasConsul: boolean, isSplit: boolean): string[] | undefined {
    const list = asStringList(value);
    if (list === undefined) return undefined;
    if (!hasConsul) this.report(path, 'needs registry.consul (datacenters are Consul datacenters)');
    if (isSplit) this.report(path, 'cannot be combined with split');
    return [...new Set(list)];
  }

  private split(items: unknown[], path: readonly Segment[]): SplitBackend[] {
    const backends: SplitBackend[] = [];
    for (const item of items) {
      const raw = asObj(item);
      if (typeof raw['service'] !== 'string') continue; // the schema reported it
      backends.push(compact({
        service: raw['service'],
        tags: asStringList(raw['tags']) ?? [],
        meta: stringMap(raw['meta']),
        weight: asInt(raw['weight'], 0) ?? 0,
      }));
    }
    if (backends.length > 0 && backends.every((backend) => backend.weight === 0)) this.report(path, 'needs at least one backend with a weight above 0');
    return backends;
  }

  private match(rawValue: unknown, path: readonly Segment[]): RouteMatch {
    const raw = asObj(rawValue);
    let headers: Record<string, string> | undefined;
    if (isObject(raw['headers'])) {
      headers = {};
      for (const [key, value] of Object.entries(raw['headers'])) {
        const name = key.toLowerCase();
        if (!TOKEN.test(key)) this.report([...path, 'headers', key], 'must be a valid header name', 'key');
        else if (Object.hasOwn(headers, name)) {
          this.report([...path, 'headers', key], `duplicate header "${name}" (header names are case-insensitive)`, 'key');
        }
        if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') setOwn(headers, name, String(value));
      }
    }
    const methods = Array.isArray(raw['methods'])
      ? [...new Set(raw['methods'].filter((m): m is string => typeof m === 'string').map((m) => m.toUpperCase()))]
      : undefined;
    return compact({
      pathPrefix: typeof raw['pathPrefix'] === 'string' ? raw['pathPrefix'] : '/',
      host: asString(raw['host'])?.toLowerCase(),
      methods,
      headers,
    });
  }
}

function parseHashKey(value: unknown): HashKeySource | undefined {
  if (typeof value !== 'string') return undefined;
  if (value === 'ip') return { kind: 'ip' };
  const colon = value.indexOf(':');
  const kind = value.slice(0, colon);
  const name = value.slice(colon + 1);
  if (colon < 0 || !TOKEN.test(name)) return undefined; // schema reported it
  if (kind === 'header') return { kind: 'header', name: name.toLowerCase() };
  if (kind === 'cookie') return { kind: 'cookie', name };
  return undefined;
}
