/** `registry.static.services` and the upstream TLS settings Consul instances share with them. */
import { resolveFields } from './field-kinds.ts';
import { HEALTH_CHECK_FIELDS, INSTANCE_FIELDS, isServiceName, SERVICE_NAME_REASON, UPSTREAM_TLS_FIELDS } from './fields.ts';
import type { Segment } from './positions.ts';
import type { ResolveContext } from './resolve-context.ts';
import type { HealthCheckConfig, StaticInstanceConfig, StaticServiceConfig, UpstreamTlsConfig } from './types.ts';
import { asObj, compact, isObject, normaliseOrigin, setOwn, type Obj } from './values.ts';

const ORIGIN_REASON = 'must be an http:// or https:// origin without path or query, like http://127.0.0.1:3001';

export function resolveServices(raw: Obj, ctx: ResolveContext): Record<string, StaticServiceConfig> {
  const out: Record<string, StaticServiceConfig> = {};
  for (const [name, svcRaw] of Object.entries(raw)) {
    const path: Segment[] = ['registry', 'static', 'services', name];
    if (!isServiceName(name)) ctx.report(path, SERVICE_NAME_REASON, 'key');
    const svc = asObj(svcRaw);
    setOwn(out, name, compact({
      instances: resolveInstances(svc['instances'], path, ctx),
      healthCheck: isObject(svc['healthCheck']) ? resolveHealthCheck(svc['healthCheck']) : undefined,
      tls: resolveUpstreamTls(svc['tls']),
    }));
  }
  return out;
}

/** Each instance once, as a normalised origin; an item is a URL string or `{ url, weight }`. */
function resolveInstances(rawValue: unknown, path: readonly Segment[], ctx: ResolveContext): StaticInstanceConfig[] {
  const instances: StaticInstanceConfig[] = [];
  const firstIndex = new Map<string, number>();
  (Array.isArray(rawValue) ? rawValue : []).forEach((item: unknown, i) => {
    const objectForm = isObject(item);
    const url = objectForm ? item['url'] : item;
    if (typeof url !== 'string') return; // schema reported it
    const urlPath = objectForm ? [...path, 'instances', i, 'url'] : [...path, 'instances', i];
    const origin = normaliseOrigin(url);
    if (origin === undefined) {
      ctx.report(urlPath, ORIGIN_REASON);
      return;
    }
    const seen = firstIndex.get(origin);
    if (seen !== undefined) {
      ctx.report(urlPath, `duplicates instances[${seen}] (${origin})`);
      return;
    }
    firstIndex.set(origin, i);
    const weight = (objectForm ? INSTANCE_FIELDS.weight.read(item['weight']) : undefined) ?? INSTANCE_FIELDS.weight.default;
    instances.push({ url: origin, weight });
  });
  return instances;
}

export function resolveHealthCheck(raw: Obj): HealthCheckConfig {
  return resolveFields(HEALTH_CHECK_FIELDS, raw);
}

/**
 * How https:// instances are verified. Absent unless set here or implied by `fallback` (Consul's
 * instanceTls inherits the agent connection's CA and insecureSkipVerify).
 */
export function resolveUpstreamTls(rawValue: unknown, fallback: { ca?: string | undefined; insecureSkipVerify?: boolean } = {}): UpstreamTlsConfig | undefined {
  if (!isObject(rawValue) && fallback.ca === undefined && !fallback.insecureSkipVerify) return undefined;
  const raw = asObj(rawValue);
  return compact({
    ca: UPSTREAM_TLS_FIELDS.ca.read(raw['ca']) ?? fallback.ca,
    serverName: UPSTREAM_TLS_FIELDS.serverName.read(raw['serverName']),
    insecureSkipVerify: UPSTREAM_TLS_FIELDS.insecureSkipVerify.read(raw['insecureSkipVerify']) ?? fallback.insecureSkipVerify ?? UPSTREAM_TLS_FIELDS.insecureSkipVerify.default,
  });
}
