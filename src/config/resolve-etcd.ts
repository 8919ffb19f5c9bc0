/** `registry.etcd`: endpoints as origins, credentials from YAML or ETCD_USERNAME / ETCD_PASSWORD, the optional self-registration. */
import { hostname } from 'node:os';
import { resolveFields } from './field-kinds.ts';
import { ETCD_ENV } from './env.ts';
import { ETCD_FIELDS, ETCD_REGISTER_FIELDS, ETCD_TLS_FIELDS } from './fields.ts';
import type { Segment } from './positions.ts';
import type { ResolveContext } from './resolve-context.ts';
import { resolveUpstreamTls } from './resolve-services.ts';
import type { EtcdConfig, EtcdRegisterConfig } from './types.ts';
import { asObj, compact, isObject, normaliseOrigin, type Obj } from './values.ts';

const BASE: readonly Segment[] = ['registry', 'etcd'];

export function resolveEtcd(raw: Obj, ctx: ResolveContext): EtcdConfig {
  const f = ETCD_FIELDS;
  const endpoints: string[] = [];
  (Array.isArray(raw['endpoints']) ? raw['endpoints'] : f.endpoints.default).forEach((endpoint: unknown, i) => {
    if (typeof endpoint !== 'string' || endpoint === '') return; // the schema reported it
    const origin = normaliseOrigin(endpoint);
    if (origin === undefined) ctx.report([...BASE, 'endpoints', i], 'must be an http:// or https:// origin like http://127.0.0.1:2379');
    else if (!endpoints.includes(origin)) endpoints.push(origin);
  });
  const username = f.username.read(raw['username']) ?? ctx.env.string(ETCD_ENV.username);
  const password = f.password.read(raw['password']) ?? ctx.env.string(ETCD_ENV.password);
  if (password !== undefined && username === undefined) ctx.report([...BASE, 'username'], `is required when a password is set (YAML or env ${ETCD_ENV.password})`, 'value', BASE);
  const tls = isObject(raw['tls']) ? compact(resolveFields(ETCD_TLS_FIELDS, raw['tls'])) : undefined;
  if (tls?.cert !== undefined && tls.key === undefined) ctx.report([...BASE, 'tls', 'key'], 'is required when tls.cert is set');
  if (tls?.key !== undefined && tls.cert === undefined) ctx.report([...BASE, 'tls', 'cert'], 'is required when tls.key is set');
  return compact({
    endpoints,
    prefix: f.prefix.read(raw['prefix']) ?? f.prefix.default,
    username,
    password,
    tls,
    // As for Consul: the CA that verifies etcd itself is the likely one for the services it lists.
    instanceTls: resolveUpstreamTls(raw['instanceTls'], { ca: tls?.ca }),
    register: isObject(raw['register']) ? resolveRegister(asObj(raw['register']), ctx) : undefined,
  });
}

function resolveRegister(raw: Obj, ctx: ResolveContext): EtcdRegisterConfig {
  const { service, id, address, ttlMs } = resolveFields(ETCD_REGISTER_FIELDS, raw);
  const register = compact({ service, id: id ?? `${service}-${hostname()}`, address, ttlMs });
  if (register.id.includes('/')) ctx.report([...BASE, 'register', 'id'], 'must not contain "/" (keys are <prefix><service>/<id>)');
  return register;
}
