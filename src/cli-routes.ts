/** `waygate routes`: the live routing table from the admin port, as aligned text. */

interface RoutesView {
  routes: Array<{ name: string; match: { pathPrefix: string; host?: string; methods?: string[] }; service: string; loadBalancer: string; split?: Array<{ service: string; weight: number }>; datacenters?: string[] }>;
  services: Record<string, { service?: string; registry: string; stale?: boolean; instances: Array<{ url: string; healthy: boolean; breaker: string; ejected: boolean; ejectedUntil: string | null; weight: number; inflight: number }> }>;
}

/** Pads columns to their widest cell; the last column is not padded. */
export function alignRows(rows: readonly (readonly string[])[], indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length); });
  return rows.map((row) => indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

function matchText(match: RoutesView['routes'][number]['match']): string {
  return [match.host ? `${match.host}` : '', match.pathPrefix, match.methods ? `[${match.methods.join(',')}]` : ''].filter(Boolean).join(' ');
}

/** Renders /admin/routes: each route, then the instances of every pool it uses. */
export function renderRoutes(view: RoutesView): string {
  const lines: string[] = [];
  for (const route of view.routes) {
    const target = route.split
      ? route.split.map((backend) => `${backend.service}×${backend.weight}`).join(' + ')
      : route.datacenters ? `${route.service} @ ${route.datacenters.join(' > ')}` : route.service;
    lines.push(alignRows([['ROUTE', 'MATCH', 'SERVICE', 'BALANCER'], [route.name, matchText(route.match), target, route.loadBalancer]]));
    const keys = Object.keys(view.services).filter((key) => {
      const service = view.services[key]!.service ?? key;
      if (route.split) return route.split.some((backend) => backend.service === service);
      return service === route.service;
    });
    for (const key of keys) {
      const service = view.services[key]!;
      const rows = [['INSTANCE', 'HEALTH', 'BREAKER', 'EJECTED', 'WEIGHT', 'IN FLIGHT']];
      for (const instance of service.instances) {
        rows.push([
          instance.url,
          instance.healthy ? 'healthy' : 'unhealthy',
          instance.breaker,
          instance.ejected ? `until ${instance.ejectedUntil}` : 'no',
          String(instance.weight),
          String(instance.inflight),
        ]);
      }
      lines.push(`  ${key} (${service.registry}${service.stale ? ', stale' : ''}): ${service.instances.length === 0 ? 'no instances' : ''}`.trimEnd());
      if (service.instances.length > 0) lines.push(alignRows(rows, '    '));
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** Fetches and prints; returns the exit code. */
export async function printRoutes(adminUrl: string, token: string | undefined, out: (text: string) => void, err: (text: string) => void): Promise<number> {
  let response: Response;
  try {
    response = await fetch(new URL('/admin/routes', adminUrl), { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    err(`waygate routes: cannot reach the admin endpoint at ${adminUrl} (${cause}); is the gateway running, and is --admin right?\n`);
    return 1;
  }
  if (response.status === 401) {
    err(`waygate routes: ${adminUrl} wants an admin token: set WAYGATE_ADMIN_TOKEN (or admin.token in --config FILE)\n`);
    return 1;
  }
  if (response.status !== 200) {
    err(`waygate routes: ${adminUrl}/admin/routes answered ${response.status}\n`);
    return 1;
  }
  out(renderRoutes((await response.json()) as RoutesView));
  return 0;
}
