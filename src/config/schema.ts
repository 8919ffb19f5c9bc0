/**
 * JSON schema for the RAW YAML document (before defaults, units still as written). Its leaves come
 * from the field table (fields.ts); this file adds the structure: sections, maps of services, the
 * route list and required keys. Cross-field rules (unique names, service references, URL origins,
 * ...) live in the resolvers.
 *
 * Custom keywords keep error messages human:
 *  - `duration`, `size`, `ipOrCidr`, `failureStatus`, `workers`: validate one value form and emit one
 *    clear message instead of a pile of anyOf/type/pattern errors.
 *  - `x-reasons`: per-keyword override of the reason text (e.g. what a pattern means).
 */
import { Ajv, type ErrorObject, type SchemaObject, type SchemaValidateFunction } from 'ajv';
import { parseIpOrCidr } from '../proxy/trusted-proxies.ts';
import { DURATION_HINT, formatDuration, parseDuration } from './duration.ts';
import { mapping, schemasOf } from './field-kinds.ts';
import {
  ACCESS_LOG_FIELDS,
  ADMIN_FIELDS,
  CONSUL_FIELDS,
  ETCD_FIELDS,
  HEALTH_CHECK_FIELDS,
  INSTANCE_FIELDS,
  isFailureStatus,
  MATCH_FIELDS,
  ROUTE_DEFAULT_FIELDS,
  ROUTE_FIELDS,
  SERVER_FIELDS,
  SERVICE_NAME_PATTERN,
  SHUTDOWN_FIELDS,
  SPLIT_BACKEND_FIELDS,
  UPSTREAM_TLS_FIELDS,
} from './fields.ts';
import { SIZE_HINT, parseSize } from './size.ts';
import { parseWorkers, WORKERS_HINT } from './workers.ts';

// The constants moved to the field table; they stay importable from here.
export {
  BALANCERS,
  HASH_KEY_PATTERN,
  MAX_CONSUL_WAIT_MS,
  RETRY_CONDITIONS,
  SERVICE_NAME_PATTERN,
  SERVICE_NAME_REASON,
  TOKEN_PATTERN,
} from './fields.ts';

const metaMap: SchemaObject = { type: 'object', additionalProperties: { type: 'string' }, 'x-reasons': { type: 'must map Service.Meta keys to string values' } };

const instance: SchemaObject = {
  type: ['string', 'object'],
  additionalProperties: false,
  properties: schemasOf(INSTANCE_FIELDS),
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
    healthCheck: mapping(schemasOf(HEALTH_CHECK_FIELDS)),
    tls: mapping(schemasOf(UPSTREAM_TLS_FIELDS)),
  },
  ['instances'],
);

const match = mapping(
  {
    ...schemasOf(MATCH_FIELDS),
    methods: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', pattern: '^[A-Za-z]+$', 'x-reasons': { pattern: 'must be an HTTP method like GET' } },
    },
    // Header names are checked by the resolver so the error can point at the key.
    headers: {
      type: 'object',
      additionalProperties: {
        type: ['string', 'number', 'boolean'],
        'x-reasons': { type: 'must be a string' },
      },
    },
  },
  ['pathPrefix'],
);

const route = mapping(
  {
    // Spelled out to keep the key order, which decides "did you mean" when two keys are close.
    name: ROUTE_FIELDS.name.schema,
    match,
    service: ROUTE_FIELDS.service.schema,
    stripPrefix: ROUTE_FIELDS.stripPrefix.schema,
    loadBalancer: ROUTE_FIELDS.loadBalancer.schema,
    hashKey: ROUTE_FIELDS.hashKey.schema,
    tags: ROUTE_FIELDS.tags.schema,
    registry: ROUTE_FIELDS.registry.schema,
    meta: metaMap,
    datacenters: { type: 'array', minItems: 1, items: { type: 'string', pattern: SERVICE_NAME_PATTERN, 'x-reasons': { pattern: 'must be a datacenter name' } } },
    split: {
      type: 'array',
      minItems: 1,
      items: mapping({ service: SPLIT_BACKEND_FIELDS.service.schema, tags: SPLIT_BACKEND_FIELDS.tags.schema, meta: metaMap, weight: SPLIT_BACKEND_FIELDS.weight.schema }, ['service', 'weight']),
      'x-reasons': { minItems: 'must list at least one backend' },
    },
    ...schemasOf(ROUTE_DEFAULT_FIELDS),
  },
  ['name', 'match'],
);

export const configSchema: SchemaObject = mapping(
  {
    server: mapping(schemasOf(SERVER_FIELDS)),
    admin: mapping(schemasOf(ADMIN_FIELDS)),
    shutdown: mapping(schemasOf(SHUTDOWN_FIELDS)),
    accessLog: mapping(schemasOf(ACCESS_LOG_FIELDS)),
    registry: mapping({
      static: mapping({ services: { type: 'object', additionalProperties: service } }),
      consul: mapping(schemasOf(CONSUL_FIELDS)),
      etcd: mapping(schemasOf(ETCD_FIELDS)),
    }),
    defaults: mapping(schemasOf(ROUTE_DEFAULT_FIELDS)),
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

interface DurationBounds {
  min?: number;
  max?: number;
}

const validateDuration: SchemaValidateFunction = function validateDuration(bounds: DurationBounds, data: unknown) {
  const ms = parseDuration(data);
  if (ms === undefined) return fail(validateDuration, DURATION_HINT);
  if (bounds.min !== undefined && ms < bounds.min) {
    return fail(validateDuration, bounds.min === 1 ? 'must be greater than 0' : `must be at least ${formatDuration(bounds.min)}`);
  }
  if (bounds.max !== undefined && ms > bounds.max) return fail(validateDuration, `must be at most ${formatDuration(bounds.max)}`);
  return true;
};

/** A keyword whose value is valid when `accepts` says so, with one message otherwise. */
function oneMessageKeyword(accepts: (data: unknown) => boolean, message: string): SchemaValidateFunction {
  const validate: SchemaValidateFunction = (_schema: unknown, data: unknown) => (accepts(data) ? true : fail(validate, message));
  return validate;
}

const IP_OR_CIDR_HINT = 'must be an IP address or a CIDR block like 10.0.0.0/8';
const FAILURE_STATUS_HINT = 'must be "5xx" or a status code from 400 to 599';

let compiled: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null } | undefined;

/** Validates the raw document; returns ajv errors (verbose, so parentSchema is available). */
export function validateRawConfig(data: unknown): ErrorObject[] {
  if (compiled === undefined) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    ajv.addKeyword({ keyword: 'duration', schemaType: 'object', errors: true, validate: validateDuration });
    ajv.addKeyword({ keyword: 'size', schemaType: 'boolean', errors: true, validate: oneMessageKeyword((d) => parseSize(d) !== undefined, SIZE_HINT) });
    ajv.addKeyword({ keyword: 'ipOrCidr', schemaType: 'boolean', errors: true, validate: oneMessageKeyword((d) => typeof d === 'string' && parseIpOrCidr(d) !== undefined, IP_OR_CIDR_HINT) });
    ajv.addKeyword({ keyword: 'failureStatus', schemaType: 'boolean', errors: true, validate: oneMessageKeyword(isFailureStatus, FAILURE_STATUS_HINT) });
    // `auto` is accepted without asking the OS how many cores there are.
    ajv.addKeyword({ keyword: 'workers', schemaType: 'boolean', errors: true, validate: oneMessageKeyword((d) => parseWorkers(d, () => 1) !== undefined, WORKERS_HINT) });
    ajv.addKeyword({ keyword: 'x-reasons', schemaType: 'object' });
    compiled = ajv.compile(configSchema);
  }
  return compiled(data) ? [] : [...(compiled.errors ?? [])];
}
