/**
 * JSON schema for the RAW YAML document (before defaults, units still as written).
 * It checks structure, types, ranges, enums and value formats; cross-field rules
 * (unique names, service references, URL origins, ...) live in load.ts.
 *
 * Two custom keywords keep error messages human:
 *  - `duration` / `size`: validate the string-or-integer forms and emit one clear message
 *    instead of a pile of anyOf/type/pattern errors.
 *  - `x-reasons`: per-keyword override of the reason text (e.g. what a pattern means).
 */
import { Ajv, type ErrorObject, type SchemaObject, type SchemaValidateFunction } from 'ajv';
import type { BalancerName } from '../routing/balancers/types.ts';
import { DURATION_HINT, formatDuration, parseDuration } from './duration.ts';
import { SIZE_HINT, parseSize } from './size.ts';
import { parseIpOrCidr } from '../proxy/trusted-proxies.ts';

export const BALANCERS = ['round-robin', 'random', 'least-request', 'consistent-hash'] as const satisfies readonly BalancerName[];
export const RETRY_CONDITIONS = ['connect-failure', 'reset', '502', '503', '504'] as const;
/** Consul-compatible service name. */
export const SERVICE_NAME_PATTERN = '^[A-Za-z0-9_.-]+$';
/** RFC 9110 token: valid header, cookie and method names. */
export const TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const TOKEN_CHARS = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
export const HASH_KEY_PATTERN = `^(ip|header:${TOKEN_CHARS}|cookie:${TOKEN_CHARS})$`;
/** Upper bound for Consul blocking-query waits (Consul itself caps at 10m). */
export const MAX_CONSUL_WAIT_MS = 600_000;

export const SERVICE_NAME_REASON = 'must be a service name made of letters, digits, "_", "." and "-"';

interface DurationOptions {
  min?: number;
  max?: number;
}

const duration = (opts: DurationOptions = {}): SchemaObject => ({ duration: opts });
const size: SchemaObject = { size: true };
const int = (minimum: number, maximum?: number): SchemaObject =>
  maximum === undefined ? { type: 'integer', minimum } : { type: 'integer', minimum, maximum };
const percent: SchemaObject = { type: 'number', minimum: 0, maximum: 100 };
const text: SchemaObject = { type: 'string', minLength: 1 };
const bool: SchemaObject = { type: 'boolean' };
const port = int(0, 65535);
const textList: SchemaObject = { type: 'array', items: text };
const serviceName: SchemaObject = {
  type: 'string',
  pattern: SERVICE_NAME_PATTERN,
  'x-reasons': { pattern: SERVICE_NAME_REASON },
};

function mapping(properties: Record<string, SchemaObject>, required: string[] = []): SchemaObject {
  return { type: 'object', additionalProperties: false, properties, ...(required.length > 0 ? { required } : {}) };
}

/** Keys allowed both under `defaults:` and on each route. */
const routeDefaultProperties: Record<string, SchemaObject> = {
  timeout: duration({ min: 1 }),
  connectTimeout: duration({ min: 1 }),
  retries: int(0),
  retryOn: {
    type: 'array',
    items: {
      enum: [...RETRY_CONDITIONS, 502, 503, 504],
      'x-reasons': { enum: `must be one of ${RETRY_CONDITIONS.join(', ')}` },
    },
  },
  retryBudget: mapping({ percent, minConcurrent: int(0) }),
  maxRetryBodySize: size,
  circuitBreaker: mapping({
    failureStatuses: {
      type: 'array',
      items: { failureStatus: true },
    },
    errorThresholdPercentage: percent,
    volumeThreshold: int(0),
    window: duration({ min: 1 }),
    resetTimeout: duration({ min: 1 }),
  }),
  outlierDetection: mapping({
    consecutiveFailures: int(1),
    baseEjectionTime: duration(),
    maxEjectionTime: duration(),
    maxEjectionPercent: percent,
  }),
  panicThreshold: percent,
  maxInFlight: int(1),
};

const metaMap: SchemaObject = { type: 'object', additionalProperties: { type: 'string' }, 'x-reasons': { type: 'must map Service.Meta keys to string values' } };

const upstreamTls = mapping({ ca: text, serverName: text, insecureSkipVerify: bool });

const instance: SchemaObject = {
  type: ['string', 'object'],
  additionalProperties: false,
  properties: { url: { type: 'string' }, weight: int(1) },
  required: ['url'],
  'x-reasons': { type: 'must be a URL or a mapping with url and weight' },
};

const service = mapping(
  {
    instances: {
      type: 'array',
      minItems: 1,
      items: instance,
      'x-reasons': { minItems: 'must list at least one instance' },
    },
    healthCheck: mapping({
      path: { type: 'string', pattern: '^/', 'x-reasons': { pattern: 'must start with "/"' } },
      interval: duration({ min: 1 }),
      timeout: duration({ min: 1 }),
      unhealthyThreshold: int(1),
      healthyThreshold: int(1),
    }),
    tls: upstreamTls,
  },
  ['instances'],
);

const consul = mapping({
  address: text,
  token: { type: 'string' },
  datacenter: text,
  wait: duration({ min: 1, max: MAX_CONSUL_WAIT_MS }),
  consistency: { enum: ['stale', 'default', 'consistent'] },
  snapshotFile: text,
  tls: mapping({ ca: text, cert: text, key: text, serverName: text, insecureSkipVerify: bool }),
  instanceTls: upstreamTls,
  tagRoutes: bool,
  register: mapping({
    name: serviceName,
    id: text,
    address: text,
    port,
    tags: textList,
    checkInterval: duration({ min: 1 }),
  }),
});

const etcd = mapping({
  endpoints: { type: 'array', minItems: 1, items: text, 'x-reasons': { minItems: 'must list at least one endpoint' } },
  prefix: text,
  username: text,
  password: { type: 'string' },
  tls: mapping({ ca: text, cert: text, key: text }),
  register: mapping({ service: serviceName, id: text, address: text, ttl: duration({ min: 1_000 }) }),
});

const route = mapping(
  {
    name: text,
    match: mapping(
      {
        pathPrefix: { type: 'string', pattern: '^/', 'x-reasons': { pattern: 'must start with "/"' } },
        host: text,
        methods: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', pattern: '^[A-Za-z]+$', 'x-reasons': { pattern: 'must be an HTTP method like GET' } },
        },
        // Header names are checked in load.ts so the error can point at the key.
        headers: {
          type: 'object',
          additionalProperties: {
            type: ['string', 'number', 'boolean'],
            'x-reasons': { type: 'must be a string' },
          },
        },
      },
      ['pathPrefix'],
    ),
    service: serviceName,
    registry: { enum: ['static', 'consul', 'etcd'] },
    stripPrefix: bool,
    loadBalancer: { enum: [...BALANCERS] },
    hashKey: { type: 'string', pattern: HASH_KEY_PATTERN, 'x-reasons': { pattern: 'must be header:NAME, cookie:NAME or ip' } },
    tags: textList,
    meta: metaMap,
    datacenters: { type: 'array', minItems: 1, items: { type: 'string', pattern: SERVICE_NAME_PATTERN, 'x-reasons': { pattern: 'must be a datacenter name' } } },
    split: {
      type: 'array',
      minItems: 1,
      items: mapping({ service: serviceName, tags: textList, meta: metaMap, weight: int(0) }, ['service', 'weight']),
      'x-reasons': { minItems: 'must list at least one backend' },
    },
    ...routeDefaultProperties,
  },
  ['name', 'match'],
);

export const configSchema: SchemaObject = mapping(
  {
    server: mapping({
      host: text,
      port,
      tls: mapping({ cert: text, key: text }, ['cert', 'key']),
      trustedProxies: { type: 'array', items: { type: 'string', ipOrCidr: true } },
      maxBodySize: size,
      headersTimeout: duration({ min: 1 }),
      requestTimeout: duration({ min: 1 }),
      keepAliveTimeout: duration({ min: 1 }),
      maxConnections: int(1),
    }),
    admin: mapping({ host: text, port, token: { type: 'string' } }),
    shutdown: mapping({ drainDelay: duration(), timeout: duration() }),
    accessLog: mapping({ enabled: bool, path: text }),
    registry: mapping({
      static: mapping({ services: { type: 'object', additionalProperties: service } }),
      consul,
      etcd,
    }),
    defaults: mapping(routeDefaultProperties),
    routes: {
      type: 'array',
      minItems: 1,
      items: route,
      'x-reasons': { minItems: 'must list at least one route' },
    },
  },
  ['routes'],
);

function fail(fn: SchemaValidateFunction, message: string): false {
  fn.errors = [{ message, params: {} }];
  return false;
}

const validateDuration: SchemaValidateFunction = function validateDuration(opts: DurationOptions, data: unknown) {
  const ms = parseDuration(data);
  if (ms === undefined) return fail(validateDuration, DURATION_HINT);
  if (opts.min !== undefined && ms < opts.min) {
    return fail(validateDuration, opts.min === 1 ? 'must be greater than 0' : `must be at least ${formatDuration(opts.min)}`);
  }
  if (opts.max !== undefined && ms > opts.max) return fail(validateDuration, `must be at most ${formatDuration(opts.max)}`);
  return true;
};

const validateSize: SchemaValidateFunction = function validateSize(_schema: unknown, data: unknown) {
  return parseSize(data) === undefined ? fail(validateSize, SIZE_HINT) : true;
};

const IP_OR_CIDR_HINT = 'must be an IP address or a CIDR block like 10.0.0.0/8';
const validateIpOrCidr: SchemaValidateFunction = function validateIpOrCidr(_schema: unknown, data: unknown) {
  return typeof data === 'string' && parseIpOrCidr(data) !== undefined ? true : fail(validateIpOrCidr, IP_OR_CIDR_HINT);
};

const FAILURE_STATUS_HINT = 'must be "5xx" or a status code from 400 to 599';
const validateFailureStatus: SchemaValidateFunction = function validateFailureStatus(_schema: unknown, data: unknown) {
  const valid = data === '5xx' || (typeof data === 'number' && Number.isInteger(data) && data >= 400 && data <= 599);
  return valid ? true : fail(validateFailureStatus, FAILURE_STATUS_HINT);
};

let compiled: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null } | undefined;

/** Validates the raw document; returns ajv errors (verbose, so parentSchema is available). */
export function validateRawConfig(data: unknown): ErrorObject[] {
  if (compiled === undefined) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    ajv.addKeyword({ keyword: 'duration', schemaType: 'object', errors: true, validate: validateDuration });
    ajv.addKeyword({ keyword: 'size', schemaType: 'boolean', errors: true, validate: validateSize });
    ajv.addKeyword({ keyword: 'ipOrCidr', schemaType: 'boolean', errors: true, validate: validateIpOrCidr });
    ajv.addKeyword({ keyword: 'failureStatus', schemaType: 'boolean', errors: true, validate: validateFailureStatus });
    ajv.addKeyword({ keyword: 'x-reasons', schemaType: 'object' });
    compiled = ajv.compile(configSchema);
  }
  return compiled(data) ? [] : [...(compiled.errors ?? [])];
}
