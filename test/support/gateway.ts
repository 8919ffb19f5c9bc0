import { parseConfig } from '../../src/config/load.ts';
import type { GatewayConfig } from '../../src/config/types.ts';
import { Gateway, type GatewayOptions } from '../../src/gateway.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';

/** Parses YAML the way the CLI does; throws with every problem when it is invalid. */
export function configFromYaml(yaml: string): GatewayConfig {
  const result = parseConfig(yaml, { file: 'test.yaml', env: {} });
  if (!result.ok) throw new Error('invalid test config:\n' + result.problems.map((p) => `${p.line}:${p.col} ${p.path}: ${p.reason}`).join('\n'));
  return result.config;
}

export interface RunningGateway {
  readonly gateway: Gateway;
  /** http://127.0.0.1:PORT of the public listener. */
  readonly url: string;
  /** http://127.0.0.1:PORT of the admin listener. */
  readonly adminUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts an in-process gateway on random loopback ports. The YAML must leave out `server`, `admin`
 * and `shutdown` (they are filled in: ports 0, no drain delay); `server`/`admin` options add keys to those blocks.
 */
export async function startGateway(yaml: string, options: GatewayOptions & { server?: string; admin?: string } = {}): Promise<RunningGateway> {
  const server = options.server ? `, ${options.server}` : '';
  const admin = options.admin ? `, ${options.admin}` : '';
  const full = `server: { host: 127.0.0.1, port: 0${server} }\nadmin: { host: 127.0.0.1, port: 0${admin} }\nshutdown: { drainDelay: 0, timeout: 5s }\n${yaml}`;
  const config = configFromYaml(full);
  const gateway = new Gateway(config, {
    logger: options.logger ?? createLogger(process.env.WAYGATE_TEST_LOG_LEVEL ?? 'silent'),
    metrics: options.metrics ?? new GatewayMetrics({ processMetrics: false }),
    ...(options.registries ? { registries: options.registries } : {}),
  });
  await gateway.start();
  return { gateway, url: gateway.publicAddress, adminUrl: gateway.adminAddress, stop: () => gateway.stop() };
}

/** Reads one sample of a metric from the Prometheus text, matching every given label. */
export async function metricValue(adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

/** A response read in full by rawRequest. */
export interface RawResponse {
  readonly status: number;
  readonly headers: import('node:http').IncomingHttpHeaders;
  readonly body: string;
}

/**
 * Sends one request with node:http so the path goes on the wire exactly as written (fetch and curl
 * resolve dot-segments themselves). Uses a fresh connection unless an agent is given.
 */
export async function rawRequest(
  baseUrl: string,
  options: { method?: string; path: string; headers?: Record<string, string | string[]>; body?: string | Buffer; agent?: import('node:http').Agent | false },
): Promise<RawResponse> {
  const { request } = await import('node:http');
  const url = new URL(baseUrl);
  return new Promise<RawResponse>((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method: options.method ?? 'GET', path: options.path, headers: options.headers ?? {}, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Polls until check() returns something other than undefined/false; fails after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** One instance as /admin/routes lists it. */
export interface AdminInstance {
  id: string;
  url: string;
  healthy: boolean;
  breaker: string;
  weight: number;
  [key: string]: unknown;
}

/** GET /admin/routes, typed loosely. */
export async function adminRoutes(adminUrl: string): Promise<{ routes: Array<Record<string, unknown>>; services: Record<string, { instances: AdminInstance[] } & Record<string, unknown>> }> {
  const response = await fetch(`${adminUrl}/admin/routes`);
  if (response.status !== 200) throw new Error(`/admin/routes answered ${response.status}`);
  return (await response.json()) as never;
}

/**
 * Compiles src/ to dist/ (what bin/waygate.js runs) unless dist is already newer than every source
 * file. Type errors elsewhere do not block the emit, so only a missing dist/cli.js is fatal.
 */
export async function ensureBuilt(): Promise<void> {
  const { existsSync, readdirSync, statSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { execFileSync } = await import('node:child_process');
  const root = new URL('../../', import.meta.url).pathname;
  const newest = (dir: string, ext: string): number => {
    let max = 0;
    if (!existsSync(dir)) return 0;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) max = Math.max(max, newest(full, ext));
      else if (entry.name.endsWith(ext)) max = Math.max(max, statSync(full).mtimeMs);
    }
    return max;
  };
  const cli = join(root, 'dist', 'cli.js');
  if (existsSync(cli) && newest(join(root, 'dist'), '.js') >= newest(join(root, 'src'), '.ts')) return;
  try {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (error) {
    if (!existsSync(cli)) throw new Error(`build failed: ${String((error as { stdout?: Buffer }).stdout ?? error)}`);
  }
}

/**
 * The YAML of one static service `svc` with these instances and one route `r` on `prefix`; `route`
 * adds keys to the route (indented four spaces), `extra` adds top-level blocks after it.
 */
export function oneServiceYaml(urls: readonly string[], route = '', prefix = '/x', extra = ''): string {
  return `
registry:
  static:
    services:
      svc:
        instances: [${urls.map((url) => `"${url}"`).join(', ')}]
routes:
  - name: r
    match: { pathPrefix: ${prefix} }
    service: svc
${route}
${extra}`;
}
