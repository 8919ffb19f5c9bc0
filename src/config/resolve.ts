/**
 * Resolution: the raw document (already checked by the schema) -> GatewayConfig with every default
 * applied. Values of the wrong shape quietly fall back (the schema reported them); only rules the
 * schema cannot express are reported from here.
 */
import { resolveFields } from './field-kinds.ts';
import { ADMIN_TOKEN_ENV } from './env.ts';
import { ACCESS_LOG_FIELDS, ADMIN_FIELDS, SERVER_FIELDS, SHUTDOWN_FIELDS } from './fields.ts';
import { DEFAULTS } from './defaults.ts';
import type { ResolveContext } from './resolve-context.ts';
import { resolveConsul } from './resolve-consul.ts';
import { resolveEtcd } from './resolve-etcd.ts';
import { resolveRouteDefaults, resolveRoutes } from './resolve-routes.ts';
import { resolveServices } from './resolve-services.ts';
import type { AdminConfig, GatewayConfig, RegistryName, ServerConfig } from './types.ts';
import { asObj, compact, isObject } from './values.ts';

export function resolveConfig(data: unknown, ctx: ResolveContext): GatewayConfig {
  const root = asObj(data);
  const server: ServerConfig = resolveFields(SERVER_FIELDS, root['server']);
  const admin = resolveAdmin(root['admin'], ctx);
  const registryRaw = asObj(root['registry']);
  const services = resolveServices(asObj(asObj(registryRaw['static'])['services']), ctx);
  const consul = isObject(registryRaw['consul']) ? resolveConsul(registryRaw['consul'], server, ctx) : undefined;
  const etcd = isObject(registryRaw['etcd']) ? resolveEtcd(registryRaw['etcd'], ctx) : undefined;
  const dynamic: RegistryName[] = [...(consul ? ['consul' as const] : []), ...(etcd ? ['etcd' as const] : [])];
  const defaults = resolveRouteDefaults(root['defaults'], DEFAULTS.routeDefaults, ['defaults'], ctx);
  const routes = resolveRoutes(root['routes'], defaults, services, dynamic, ctx);
  return {
    server,
    admin,
    shutdown: resolveFields(SHUTDOWN_FIELDS, root['shutdown']),
    registry: compact({ static: { services }, consul, etcd }),
    defaults,
    routes,
    accessLog: resolveFields(ACCESS_LOG_FIELDS, root['accessLog']),
  };
}

/** The admin token comes from YAML, else env WAYGATE_ADMIN_TOKEN; an empty YAML token means open. */
function resolveAdmin(rawValue: unknown, ctx: ResolveContext): AdminConfig {
  const { host, port, token: yamlToken } = resolveFields(ADMIN_FIELDS, rawValue);
  const token = yamlToken ?? ctx.env.string(ADMIN_TOKEN_ENV);
  return compact({ host, port, token: token === '' ? undefined : token });
}
