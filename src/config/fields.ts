/**
 * The field table: every config leaf with its type, bounds or allowed values, and default, written
 * once. schema.ts builds the ajv schema from it, the resolvers read raw values through it, and
 * defaults.ts derives DEFAULTS from it. Structure (which sections exist, maps of services, the route
 * list, required keys) is assembled in schema.ts; rules across fields live in the resolvers.
 */
import type { BalancerName } from '../routing/balancers/types.ts';
import { anyString, bool, custom, duration, group, int, mapping, oneOf, patterned, percent, port, schemasOf, size, text, textList } from './field-kinds.ts';
import type { RetryCondition } from './types.ts';
import { asObj, asStringList } from './values.ts';
import { parseWorkers } from './workers.ts';

export const BALANCERS = ['round-robin', 'random', 'least-request', 'consistent-hash'] as const satisfies readonly BalancerName[];
export const RETRY_CONDITIONS = ['connect-failure', 'reset', '502', '503', '504'] as const satisfies readonly RetryCondition[];
export const CONSUL_CONSISTENCY = ['stale', 'default', 'consistent'] as const;
/** Consul-compatible service name. */
export const SERVICE_NAME_PATTERN = '^[A-Za-z0-9_.-]+$';
export const SERVICE_NAME_REASON = 'must be a service name made of letters, digits, "_", "." and "-"';
const SERVICE_NAME = new RegExp(SERVICE_NAME_PATTERN);
export const isServiceName = (name: string): boolean => SERVICE_NAME.test(name);
/** RFC 9110 token: valid header, cookie and method names. */
export const TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const TOKEN_CHARS = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
export const HASH_KEY_PATTERN = `^(ip|header:${TOKEN_CHARS}|cookie:${TOKEN_CHARS})$`;
/** Upper bound for Consul blocking-query waits (Consul itself caps at 10m). */
export const MAX_CONSUL_WAIT_MS = 600_000;

export const serviceName = <D extends string | undefined = undefined>(opts: { default?: D } = {}) => patterned(SERVICE_NAME_PATTERN, SERVICE_NAME_REASON, opts);
const startsWithSlash = <D extends string | undefined = undefined>(opts: { default?: D } = {}) => patterned('^/', 'must start with "/"', opts);

export function isFailureStatus(value: unknown): value is number | '5xx' {
  return value === '5xx' || (typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 599);
}

/** Valid entries of a list, each once, in first-seen order (the schema has reported the others). */
function uniqueValid<T>(raw: unknown, pick: (item: unknown) => T | undefined): T[] | undefined {
  if (!Array.isArray(raw)) return undefined;
  const out: T[] = [];
  for (const item of raw) {
    const value = pick(item);
    if (value !== undefined && !out.includes(value)) out.push(value);
  }
  return out;
}

const asRetryCondition = (item: unknown): RetryCondition | undefined => RETRY_CONDITIONS.find((c) => c === String(item));

// ---------------------------------------------------------------------------------------------
// Listeners, limits and process settings

const SERVER_TLS_FIELDS = { cert: text(), key: text() };

/** HTTPS needs both files; with either one missing the schema has reported it and nothing is served over TLS. */
function readCertAndKey(raw: unknown): { cert: string; key: string } | undefined {
  const cert = SERVER_TLS_FIELDS.cert.read(asObj(raw)['cert']);
  const key = SERVER_TLS_FIELDS.key.read(asObj(raw)['key']);
  return cert !== undefined && key !== undefined ? { cert, key } : undefined;
}

const listen = (host: string, portNumber: number) => ({ host: text({ default: host }), port: port({ default: portNumber }) });

export const SERVER_LISTEN_FIELDS = listen('0.0.0.0', 8080);

/** Every `server:` key but the listener, which DEFAULTS keeps apart (it doubles as a ListenConfig). */
export const SERVER_SETTING_FIELDS = {
  workers: custom<number, number>({ workers: true }, (v) => parseWorkers(v), { default: 1 }),
  tls: custom(mapping(schemasOf(SERVER_TLS_FIELDS), ['cert', 'key']), readCertAndKey),
  trustedProxies: custom<readonly string[], readonly string[]>({ type: 'array', items: { type: 'string', ipOrCidr: true } }, asStringList, { default: [] }),
  maxBodySize: size({ default: 10 * 1024 * 1024 }),
  headersTimeout: duration({ min: 1, default: 10_000 }),
  requestTimeout: duration({ min: 1, default: 60_000 }),
  // Longer than the 60 s idle timeout of common load balancers (AWS ALB, GCP), so they never reuse a connection the gateway just closed.
  keepAliveTimeout: duration({ min: 1, default: 65_000 }),
  maxConnections: int({ min: 1, default: 10_000 }),
};

export const SERVER_FIELDS = { ...SERVER_LISTEN_FIELDS, ...SERVER_SETTING_FIELDS };

export const ADMIN_FIELDS = { ...listen('127.0.0.1', 9901), token: anyString() };

export const SHUTDOWN_FIELDS = {
  drainDelay: duration({ default: 5_000 }),
  timeout: duration({ default: 30_000 }),
};

// Off by default: request lines are volume an operator opts into; stdout suits containers.
export const ACCESS_LOG_FIELDS = { enabled: bool({ default: false }), path: text({ default: 'stdout' }) };

// ---------------------------------------------------------------------------------------------
// Registries

export const INSTANCE_FIELDS = { url: custom<string>({ type: 'string' }, (v) => (typeof v === 'string' ? v : undefined)), weight: int({ min: 1, default: 1 }) };

export const HEALTH_CHECK_FIELDS = {
  path: startsWithSlash({ default: '/health' }),
  interval: duration({ min: 1, default: 5_000 }),
  timeout: duration({ min: 1, default: 2_000 }),
  unhealthyThreshold: int({ min: 1, default: 2 }),
  healthyThreshold: int({ min: 1, default: 1 }),
};

export const UPSTREAM_TLS_FIELDS = { ca: text(), serverName: text(), insecureSkipVerify: bool({ default: false }) };

export const CONSUL_TLS_FIELDS = { ca: text(), cert: text(), key: text(), serverName: text(), insecureSkipVerify: bool({ default: false }) };

/** `id` defaults to `${name}-${os.hostname()}`; address and port come from `server` (see resolve-consul.ts). */
export const CONSUL_REGISTER_FIELDS = {
  name: serviceName({ default: 'waygate' }),
  id: text(),
  address: text(),
  port: port(),
  tags: textList({ default: [] }),
  checkInterval: duration({ min: 1, default: 10_000 }),
};

export const CONSUL_FIELDS = {
  address: text({ default: 'http://127.0.0.1:8500' }),
  token: anyString(),
  datacenter: text(),
  wait: duration({ min: 1, max: MAX_CONSUL_WAIT_MS, default: 300_000 }),
  // Any server answers, so reads keep working through leader elections (fabio PR #811; CONTRACT fact 26).
  consistency: oneOf(CONSUL_CONSISTENCY, { default: 'stale' }),
  snapshotFile: text(),
  tls: group(CONSUL_TLS_FIELDS),
  instanceTls: group(UPSTREAM_TLS_FIELDS),
  tagRoutes: bool({ default: false }),
  register: group(CONSUL_REGISTER_FIELDS),
};

export const ETCD_TLS_FIELDS = { ca: text(), cert: text(), key: text() };

/** `id` defaults to `${service}-${os.hostname()}`; no address = the public listener's host and port (see gateway.ts). */
export const ETCD_REGISTER_FIELDS = {
  service: serviceName({ default: 'waygate' }),
  id: text(),
  address: text(),
  // etcd refuses leases shorter than its minimum TTL (about 2 s for a default cluster).
  ttl: duration({ min: 1_000, default: 10_000 }),
};

export const ETCD_FIELDS = {
  endpoints: custom<readonly string[], readonly string[]>(
    { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 }, 'x-reasons': { minItems: 'must list at least one endpoint' } },
    asStringList,
    { default: ['http://127.0.0.1:2379'] },
  ),
  prefix: text({ default: '/services/' }),
  username: text(),
  password: anyString(),
  tls: group(ETCD_TLS_FIELDS),
  instanceTls: group(UPSTREAM_TLS_FIELDS),
  register: group(ETCD_REGISTER_FIELDS),
};

/** Registries a route may name in `registry:`. */
export const REGISTRY_NAMES = ['static', 'consul', 'etcd'] as const;

// ---------------------------------------------------------------------------------------------
// Routes

/** Keys allowed both under `defaults:` and on each route; a route inherits each one it does not set. */
export const ROUTE_DEFAULT_FIELDS = {
  timeout: duration({ min: 1, default: 30_000 }),
  connectTimeout: duration({ min: 1, default: 2_000 }),
  retries: int({ min: 0, default: 2 }),
  retryOn: custom<readonly RetryCondition[], readonly RetryCondition[]>(
    {
      type: 'array',
      items: { enum: [...RETRY_CONDITIONS, 502, 503, 504], 'x-reasons': { enum: `must be one of ${RETRY_CONDITIONS.join(', ')}` } },
    },
    (v) => uniqueValid(v, asRetryCondition),
    { default: ['connect-failure', 'reset'] },
  ),
  retryBudget: group({ percent: percent({ default: 20 }), minConcurrent: int({ min: 0, default: 3 }) }),
  maxRetryBodySize: size({ default: 65_536 }),
  circuitBreaker: group({
    failureStatuses: custom<readonly (number | '5xx')[], readonly (number | '5xx')[]>(
      { type: 'array', items: { failureStatus: true } },
      (v) => uniqueValid(v, (item) => (isFailureStatus(item) ? item : undefined)),
      { default: ['5xx'] },
    ),
    errorThresholdPercentage: percent({ default: 50 }),
    volumeThreshold: int({ min: 0, default: 10 }),
    window: duration({ min: 1, default: 10_000 }),
    resetTimeout: duration({ min: 1, default: 10_000 }),
  }),
  outlierDetection: group({
    consecutiveFailures: int({ min: 1, default: 5 }),
    baseEjectionTime: duration({ default: 30_000 }),
    maxEjectionTime: duration({ default: 300_000 }),
    maxEjectionPercent: percent({ default: 50 }),
  }),
  panicThreshold: percent({ default: 50 }),
  /** Unlimited unless set. */
  maxInFlight: int({ min: 1 }),
};

export const ROUTE_FIELDS = {
  name: text(),
  service: serviceName(),
  stripPrefix: bool({ default: false }),
  loadBalancer: oneOf(BALANCERS, { default: 'round-robin' }),
  hashKey: patterned(HASH_KEY_PATTERN, 'must be header:NAME, cookie:NAME or ip'),
  tags: textList({ default: [] }),
  registry: oneOf(REGISTRY_NAMES),
};

export const MATCH_FIELDS = {
  pathPrefix: startsWithSlash(),
  host: text(),
};

export const SPLIT_BACKEND_FIELDS = { service: serviceName(), tags: textList(), weight: int({ min: 0 }) };

/** Every table above, for whoever needs to walk all fields (the config diff names keys through it). */
export const FIELD_TABLES = [
  SERVER_FIELDS,
  ADMIN_FIELDS,
  SHUTDOWN_FIELDS,
  ACCESS_LOG_FIELDS,
  INSTANCE_FIELDS,
  HEALTH_CHECK_FIELDS,
  UPSTREAM_TLS_FIELDS,
  CONSUL_FIELDS,
  ETCD_FIELDS,
  ROUTE_DEFAULT_FIELDS,
  ROUTE_FIELDS,
  MATCH_FIELDS,
  SPLIT_BACKEND_FIELDS,
] as const;
