/** `registry.consul`: YAML first, then the consul CLI's environment variables, then defaults. */
import { hostname } from 'node:os';
import { resolveFields } from './field-kinds.ts';
import { CONSUL_ENV } from './env.ts';
import { CONSUL_FIELDS, CONSUL_REGISTER_FIELDS, CONSUL_TLS_FIELDS } from './fields.ts';
import { DEFAULTS } from './defaults.ts';
import type { Segment } from './positions.ts';
import { errorMessage } from './problems.ts';
import type { ResolveContext } from './resolve-context.ts';
import { resolveUpstreamTls } from './resolve-services.ts';
import type { ConsulConfig, ConsulRegisterConfig, ConsulTlsConfig, ListenConfig } from './types.ts';
import { asObj, compact, isObject, isWildcardHost, normaliseOrigin, type Obj } from './values.ts';

const BASE: readonly Segment[] = ['registry', 'consul'];
const HAS_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

export function resolveConsul(raw: Obj, server: ListenConfig, ctx: ResolveContext): ConsulConfig {
  const address = resolveAddress(raw, ctx);
  const token = resolveToken(raw, ctx);
  const tls = resolveConsulTls(raw['tls'], ctx);
  const f = CONSUL_FIELDS;
  return compact({
    address,
    token,
    datacenter: f.datacenter.read(raw['datacenter']),
    waitMs: f.wait.read(raw['wait']) ?? f.wait.default,
    consistency: f.consistency.read(raw['consistency']) ?? f.consistency.default,
    snapshotFile: f.snapshotFile.read(raw['snapshotFile']),
    tls,
    instanceTls: resolveUpstreamTls(raw['instanceTls'], { ca: tls?.ca, insecureSkipVerify: tls?.insecureSkipVerify ?? false }),
    tagRoutes: f.tagRoutes.read(raw['tagRoutes']) ?? f.tagRoutes.default,
    register: isObject(raw['register']) ? resolveRegister(raw['register'], server) : undefined,
  });
}

/** YAML, then CONSUL_HTTP_ADDR, then the local agent. A bare host:port takes its scheme from CONSUL_HTTP_SSL, like the consul CLI. */
function resolveAddress(raw: Obj, ctx: ResolveContext): string {
  const ssl = ctx.env.bool(CONSUL_ENV.ssl, BASE) ?? false;
  const yamlAddress = CONSUL_FIELDS.address.read(raw['address']);
  const given = yamlAddress ?? ctx.env.string(CONSUL_ENV.address);
  if (given === undefined) return CONSUL_FIELDS.address.default;
  const origin = normaliseOrigin(HAS_SCHEME.test(given) ? given : `${ssl ? 'https' : 'http'}://${given}`);
  if (origin !== undefined) return origin;
  const hint = 'must be an http:// or https:// address like http://127.0.0.1:8500';
  ctx.report([...BASE, 'address'], yamlAddress !== undefined ? hint : `from env ${CONSUL_ENV.address}="${given}": ${hint}`);
  return CONSUL_FIELDS.address.default;
}

/** YAML (even empty, which means "no token"), then CONSUL_HTTP_TOKEN, then the file CONSUL_HTTP_TOKEN_FILE names. */
function resolveToken(raw: Obj, ctx: ResolveContext): string | undefined {
  const yamlToken = CONSUL_FIELDS.token.read(raw['token']);
  if (yamlToken !== undefined) return yamlToken === '' ? undefined : yamlToken;
  const token = ctx.env.string(CONSUL_ENV.token);
  const tokenFile = ctx.env.string(CONSUL_ENV.tokenFile);
  if (token !== undefined || tokenFile === undefined) return token;
  try {
    return ctx.readFile(tokenFile).trim() || undefined;
  } catch (err) {
    ctx.report([...BASE, 'token'], `cannot read env ${CONSUL_ENV.tokenFile}="${tokenFile}": ${errorMessage(err)}`);
    return undefined;
  }
}

function resolveConsulTls(rawValue: unknown, ctx: ResolveContext): ConsulTlsConfig | undefined {
  const raw = asObj(rawValue);
  const f = CONSUL_TLS_FIELDS;
  const verify = ctx.env.bool(CONSUL_ENV.sslVerify, BASE);
  const tls = compact({
    ca: f.ca.read(raw['ca']) ?? ctx.env.string(CONSUL_ENV.ca),
    cert: f.cert.read(raw['cert']) ?? ctx.env.string(CONSUL_ENV.cert),
    key: f.key.read(raw['key']) ?? ctx.env.string(CONSUL_ENV.key),
    serverName: f.serverName.read(raw['serverName']) ?? ctx.env.string(CONSUL_ENV.serverName),
    insecureSkipVerify: f.insecureSkipVerify.read(raw['insecureSkipVerify']) ?? (verify === false ? true : undefined),
  });
  if (!isObject(rawValue) && Object.keys(tls).length === 0) return undefined;
  // A client certificate is useless without its key and vice versa.
  if (tls.cert !== undefined && tls.key === undefined) ctx.report([...BASE, 'tls', 'key'], 'is required when tls.cert is set');
  if (tls.key !== undefined && tls.cert === undefined) ctx.report([...BASE, 'tls', 'cert'], 'is required when tls.key is set');
  return { ...tls, insecureSkipVerify: tls.insecureSkipVerify ?? f.insecureSkipVerify.default };
}

function resolveRegister(raw: Obj, server: ListenConfig): ConsulRegisterConfig {
  const { name, tags, checkIntervalMs } = resolveFields(CONSUL_REGISTER_FIELDS, raw);
  const f = CONSUL_REGISTER_FIELDS;
  return {
    name,
    id: f.id.read(raw['id']) ?? `${name}-${hostname()}`,
    // Registering 0.0.0.0 would make Consul health-check an unroutable address.
    address: f.address.read(raw['address']) ?? (isWildcardHost(server.host) ? DEFAULTS.consulRegister.wildcardAddress : server.host),
    port: f.port.read(raw['port']) ?? server.port,
    tags: [...tags],
    checkIntervalMs,
  };
}
