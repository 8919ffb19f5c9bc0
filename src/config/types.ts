import type { BalancerName } from '../routing/balancers/types.ts';

/**
 * The resolved configuration: every default applied, every duration in milliseconds,
 * every size in bytes. Code past config/ only ever sees this shape.
 */
export interface GatewayConfig {
  readonly server: ServerConfig;
  readonly admin: AdminConfig;
  readonly shutdown: ShutdownConfig;
  readonly registry: RegistryConfig;
  readonly defaults: RouteDefaults;
  readonly routes: readonly RouteConfig[];
  readonly accessLog: AccessLogConfig;
}

/** One JSON line per request, written asynchronously. */
export interface AccessLogConfig {
  readonly enabled: boolean;
  /** "stdout" or a file path (reopened on reload, for logrotate). */
  readonly path: string;
}

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

/** The public listener and the limits that protect it from its clients. */
export interface ServerConfig extends ListenConfig {
  /** HTTPS (HTTP/2 and HTTP/1.1 by ALPN) on the public port; PEM file paths. */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined;
  /** IPs or CIDRs whose X-Forwarded-* / Forwarded headers are believed. */
  readonly trustedProxies: readonly string[];
  /** Largest request body accepted, in bytes (413 beyond). */
  readonly maxBodySize: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxConnections: number;
  /** Processes serving the public port (`auto` in YAML resolves to the cores available); changing it needs a restart. */
  readonly workers: number;
}

export interface AdminConfig extends ListenConfig {
  /** Bearer token every admin path but the health checks requires; undefined = open. */
  readonly token?: string | undefined;
}

export interface ShutdownConfig {
  /** Time between "ready turns 503" and "stop accepting", so load balancers notice. */
  readonly drainDelayMs: number;
  /** Upper bound for in-flight requests to finish once the listener stops accepting. */
  readonly timeoutMs: number;
}

export interface RegistryConfig {
  readonly static: { readonly services: Readonly<Record<string, StaticServiceConfig>> };
  /** Present only when the YAML has a `registry.consul` block. */
  readonly consul?: ConsulConfig | undefined;
  /** Present only when the YAML has a `registry.etcd` block. */
  readonly etcd?: EtcdConfig | undefined;
}

/** Instances under `<prefix><service>/<instance id>` in etcd, read then watched through etcd's v3 JSON gateway. */
export interface EtcdConfig {
  /** Client URLs (origins), tried in order when one fails. */
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?: { readonly ca?: string | undefined; readonly cert?: string | undefined; readonly key?: string | undefined } | undefined;
  /** How instances whose Addr is https:// are verified; without it, `tls.ca` (else Node's roots). */
  readonly instanceTls?: UpstreamTlsConfig | undefined;
  readonly register?: EtcdRegisterConfig | undefined;
}

/** The gateway's own key, `<prefix><service>/<id>`, held by a lease of `ttlMs`. */
export interface EtcdRegisterConfig {
  readonly service: string;
  readonly id: string;
  /** host:port or URL written as Addr; undefined = the public listener's host and actual port. */
  readonly address?: string | undefined;
  readonly ttlMs: number;
}

/** Which registry a route's services come from; needed only when several dynamic registries are configured. */
export type RegistryName = 'static' | 'consul' | 'etcd';

export interface StaticServiceConfig {
  readonly instances: readonly StaticInstanceConfig[];
  readonly healthCheck?: HealthCheckConfig | undefined;
  /** How https:// instances are verified. */
  readonly tls?: UpstreamTlsConfig | undefined;
}

/** TLS settings for dialling https:// instances; verification is on unless insecureSkipVerify. */
export interface UpstreamTlsConfig {
  /** PEM file with the CA(s) to trust instead of Node's bundled roots. */
  readonly ca?: string | undefined;
  /** Name to verify the certificate against (and send as SNI), instead of the instance's host. */
  readonly serverName?: string | undefined;
  readonly insecureSkipVerify: boolean;
}

export interface StaticInstanceConfig {
  readonly url: string;
  readonly weight: number;
}

export interface HealthCheckConfig {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

export interface ConsulConfig {
  /** Base URL with scheme, e.g. http://127.0.0.1:8500. */
  readonly address: string;
  readonly token?: string | undefined;
  readonly datacenter?: string | undefined;
  readonly waitMs: number;
  /** Read consistency sent on every read; stale (the default) keeps working while there is no leader. */
  readonly consistency: 'stale' | 'default' | 'consistent';
  /** Last good state, written after changes (at most once a second) and used for a cold start while Consul is down. */
  readonly snapshotFile?: string | undefined;
  readonly tls?: ConsulTlsConfig | undefined;
  /** How instances marked https are verified (defaults from `tls`: its ca and insecureSkipVerify). */
  readonly instanceTls?: UpstreamTlsConfig | undefined;
  readonly tagRoutes: boolean;
  readonly register?: ConsulRegisterConfig | undefined;
}

export interface ConsulTlsConfig {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly serverName?: string | undefined;
  readonly insecureSkipVerify: boolean;
}

export interface ConsulRegisterConfig {
  readonly name: string;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly checkIntervalMs: number;
}

export type RetryCondition = 'connect-failure' | 'reset' | '502' | '503' | '504';

export interface CircuitBreakerConfig {
  /** Upstream answers that count as failures for breakers and outlier detection: "5xx" or single codes. */
  readonly failureStatuses: readonly (number | '5xx')[];
  readonly errorThresholdPercentage: number;
  readonly volumeThreshold: number;
  readonly windowMs: number;
  readonly resetTimeoutMs: number;
}

export interface OutlierDetectionConfig {
  readonly consecutiveFailures: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
}

/** Keys every route inherits from `defaults` and may override one by one. */
export interface RouteDefaults {
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retries: number;
  readonly retryOn: readonly RetryCondition[];
  readonly retryBudget: { readonly percent: number; readonly minConcurrent: number };
  readonly maxRetryBodySize: number;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly outlierDetection: OutlierDetectionConfig;
  readonly panicThreshold: number;
  /** Requests of one route in flight at once; past it 503 OVERLOADED. undefined = unlimited. */
  readonly maxInFlight?: number | undefined;
}

/** One backend of a traffic split: a service subset and its share of the requests. */
export interface SplitBackend {
  readonly service: string;
  readonly tags: readonly string[];
  readonly meta?: Readonly<Record<string, string>> | undefined;
  readonly weight: number;
}

export interface RouteMatch {
  readonly pathPrefix: string;
  readonly host?: string | undefined;
  readonly methods?: readonly string[] | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

export type HashKeySource =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string }
  | { readonly kind: 'ip' };

export interface RouteConfig extends RouteDefaults {
  readonly name: string;
  readonly match: RouteMatch;
  readonly service: string;
  readonly stripPrefix: boolean;
  readonly loadBalancer: BalancerName;
  readonly hashKey?: HashKeySource | undefined;
  /** Consul tags every instance must carry. */
  readonly tags: readonly string[];
  /** Service.Meta pairs every instance must carry (a subset, as tags). */
  readonly meta?: Readonly<Record<string, string>> | undefined;
  /** Weighted backends instead of one service; `service`, `tags` and `meta` then describe the first. */
  readonly split?: readonly SplitBackend[] | undefined;
  /** Consul datacenters in failover order: instances come from the first with a healthy one. */
  readonly datacenters?: readonly string[] | undefined;
  /** Where the route was declared. */
  readonly source: 'yaml' | 'consul-tags';
  /** The registry named by the route (`registry:`); absent = static if listed there, else the only dynamic one. */
  readonly registry?: RegistryName | undefined;
}
