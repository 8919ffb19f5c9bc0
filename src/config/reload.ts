import type { GatewayConfig } from './types.ts';

/**
 * Keys a running gateway cannot change in place: its listeners, and the Consul client's identity.
 * Everything else (routes, defaults, static services, health checks, shutdown) is applied live.
 */
const RESTART_ONLY: ReadonlyArray<readonly [string, (config: GatewayConfig) => unknown]> = [
  ['server.host', (c) => c.server.host],
  ['server.port', (c) => c.server.port],
  ['server.tls', (c) => c.server.tls],
  ['server.trustedProxies', (c) => c.server.trustedProxies],
  ['server.maxBodySize', (c) => c.server.maxBodySize],
  ['server.headersTimeout', (c) => c.server.headersTimeoutMs],
  ['server.requestTimeout', (c) => c.server.requestTimeoutMs],
  ['server.keepAliveTimeout', (c) => c.server.keepAliveTimeoutMs],
  ['server.maxConnections', (c) => c.server.maxConnections],
  ['admin', (c) => c.admin],
  ['registry.consul', (c) => c.registry.consul],
  ['registry.etcd', (c) => c.registry.etcd],
  ['accessLog', (c) => c.accessLog],
];

/** Which restart-only keys differ between two configs (in the order above). */
export function restartRequired(running: GatewayConfig, next: GatewayConfig): string[] {
  return RESTART_ONLY.filter(([, read]) => JSON.stringify(read(running)) !== JSON.stringify(read(next))).map(([key]) => key);
}

/**
 * The config to run after a reload: the new file's live keys with the running restart-only ones, so
 * what is served always matches one consistent view and the difference is reported, not half-applied.
 */
export function applicableConfig(running: GatewayConfig, next: GatewayConfig): GatewayConfig {
  return { ...next, server: running.server, admin: running.admin, accessLog: running.accessLog, registry: { ...next.registry, consul: running.registry.consul, etcd: running.registry.etcd } };
}
