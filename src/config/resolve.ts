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
import { resolveRouteDefaults, resolveRoutes } from './resolve-routes.ts';
import { resolveServices } from './resolve-services.ts';
import type { AdminConfig, GatewayConfig, ServerConfig } from './types.ts';
import { asObj, compact, isObject } from './values.ts';

export function resolveConfig(data: unknown, ctx: ResolveContext): GatewayConfig {
  const root = asObj(data);
  const server: ServerConfig = resolveFields(SERVER_FIELDS, root['server']);
  const admin = resolveAdmin(root['admin'], ctx);
  const registryRaw = asObj(root['registry']);
  const services = resolveServices(asObj(asObj(registryRaw['static'])['services']), ctx);
  const consul = isObject(registryRaw['consul']) ? resolveConsul(registryRaw['consul'], server, ctx) : undefined;
  const defaults = resolveRouteDefaults(root['defaults'], DEFAULTS.routeDefaults, ['defaults'], ctx);
  const routes = resolveRoutes(root['routes'], defaults, services, consul !== undefined, ctx);
  return {
    server,
    admin,
    shutdown: resolveFields(SHUTDOWN_FIELDS, root['shutdown']),
    registry: compact({ static: { services }, consul }),
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
