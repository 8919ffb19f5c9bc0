/** Every default the loader applies, in resolved units (ms, bytes), derived from the field table. */
import type { HashKeySource, RouteDefaults } from './types.ts';
import { defaultsOf } from './field-kinds.ts';
import {
  ACCESS_LOG_FIELDS,
  ADMIN_FIELDS,
  CONSUL_FIELDS,
  CONSUL_REGISTER_FIELDS,
  CONSUL_TLS_FIELDS,
  HEALTH_CHECK_FIELDS,
  INSTANCE_FIELDS,
  MAX_CONSUL_WAIT_MS,
  ROUTE_DEFAULT_FIELDS,
  ROUTE_FIELDS,
  SERVER_LISTEN_FIELDS,
  SERVER_SETTING_FIELDS,
  SHUTDOWN_FIELDS,
} from './fields.ts';
import { deepFreeze } from './values.ts';

const consul = defaultsOf(CONSUL_FIELDS);
const route = defaultsOf(ROUTE_FIELDS);

export const DEFAULTS = deepFreeze({
  server: defaultsOf(SERVER_LISTEN_FIELDS),
  /** The other `server:` keys (limits and workers); `server` itself doubles as a ListenConfig. */
  serverLimits: defaultsOf(SERVER_SETTING_FIELDS),
  admin: defaultsOf(ADMIN_FIELDS),
  shutdown: defaultsOf(SHUTDOWN_FIELDS),
  accessLog: defaultsOf(ACCESS_LOG_FIELDS),
  instanceWeight: INSTANCE_FIELDS.weight.default,
  healthCheck: defaultsOf(HEALTH_CHECK_FIELDS),
  consul: {
    address: consul.address,
    waitMs: consul.waitMs,
    maxWaitMs: MAX_CONSUL_WAIT_MS,
    tagRoutes: consul.tagRoutes,
    insecureSkipVerify: CONSUL_TLS_FIELDS.insecureSkipVerify.default,
    consistency: consul.consistency,
  },
  consulRegister: {
    ...defaultsOf(CONSUL_REGISTER_FIELDS),
    // Registering 0.0.0.0 would make Consul health-check an unroutable address; this is registered instead.
    wildcardAddress: '127.0.0.1',
  },
  routeDefaults: defaultsOf(ROUTE_DEFAULT_FIELDS) satisfies RouteDefaults,
  route: {
    stripPrefix: route.stripPrefix,
    loadBalancer: route.loadBalancer,
    tags: route.tags,
    /** hashKey used when loadBalancer is consistent-hash and none is given. */
    consistentHashKey: { kind: 'ip' } as HashKeySource,
  },
});
