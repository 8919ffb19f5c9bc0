import type { FastifyInstance } from 'fastify';
import { buildAdminServer } from './admin/admin-server.ts';
import { applicableConfig, restartRequired } from './config/reload.ts';
import type { ReloadOutcome } from './config/watch.ts';
import type { GatewayConfig, RouteConfig } from './config/types.ts';
import { isWildcardHost } from './config/values.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { GatewayMetrics } from './observability/metrics.ts';
import { LocalTraffic } from './process/local-traffic.ts';
import type { PoolView, TrafficPlane } from './process/traffic-plane.ts';
import { ConsulClient } from './registry/consul/client.ts';
import { ConsulRegistry } from './registry/consul/registry.ts';
import { SelfRegistration } from './registry/consul/self-registration.ts';
import { TagRouteFeed } from './registry/consul/tag-route-feed.ts';
import { EtcdClient } from './registry/etcd/client.ts';
import { EtcdRegistry } from './registry/etcd/registry.ts';
import { EtcdSelfRegistration, registrationValue } from './registry/etcd/self-registration.ts';
import { RegistrySet } from './registry/registry-set.ts';
import { StaticRegistry } from './registry/static.ts';
import type { Registry } from './registry/types.ts';
import { planRoutes, type RoutePlan, watchesByRegistry } from './routing/route-plan.ts';
import type { RouteTable } from './routing/table.ts';

/** Builds the traffic side for a config: in this process by default, in workers for a primary. */
export type TrafficFactory = (config: GatewayConfig, parts: { metrics: GatewayMetrics; logger: Logger; registries: RegistrySet }) => TrafficPlane;

export interface GatewayOptions {
  readonly logger?: Logger;
  readonly metrics?: GatewayMetrics;
  /** Discovering registries (Consul, etcd) to use instead of the ones the config names. */
  readonly registries?: readonly Registry[];
  /** How the drain delay is waited out; tests end it on their own signal instead of a clock. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly traffic?: TrafficFactory;
}

/** The outcome of the last reload, as /admin/config shows it. */
export interface ReloadReport {
  readonly at: string;
  readonly result: 'success' | 'failure';
  readonly errors: readonly string[];
  readonly restartRequired: readonly string[];
}

type Phase = 'created' | 'starting' | 'serving' | 'draining' | 'stopped';

const localTraffic: TrafficFactory = (config, { metrics, logger, registries }) =>
  new LocalTraffic(config, { metrics, logger, snapshotOf: (registry, key) => registries.get(registry)?.snapshot(key) });

/**
 * The composition root: config, registries, the admin listener and the lifecycle. Requests are the
 * traffic plane's business; this side only tells it what to serve.
 */
export class Gateway {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly registries: RegistrySet;
  private readonly traffic: TrafficPlane;
  private adminServer: FastifyInstance | undefined;
  private phase: Phase = 'created';
  private readonly shutdownHooks: Array<() => Promise<void>> = [];
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly consulClient: ConsulClient | undefined;
  private readonly etcdClient: EtcdClient | undefined;
  private readonly tagRoutes: TagRouteFeed | undefined;

  /** The config being served; replaced whole by reload(). */
  config: GatewayConfig;
  /** Where the config came from, for /admin/config (the CLI sets it). */
  configFile: string | undefined;
  /** Re-reads the config file and applies it (set by the CLI, which knows the file). */
  reloadFromFile: (() => Promise<ReloadOutcome>) | undefined;
  private version = 1;
  private loadedAt = new Date();
  private lastReload: ReloadReport | undefined;
  /** What the traffic plane serves now. */
  private plans: readonly RoutePlan[] = [];

  constructor(config: GatewayConfig, options: GatewayOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger();
    this.metrics = options.metrics ?? new GatewayMetrics();
    this.sleep = options.sleep ?? sleep;
    let discovery = options.registries;
    if (!discovery) {
      const { consul, etcd } = config.registry;
      const configured: Registry[] = [];
      discovery = configured;
      if (consul) {
        this.consulClient = new ConsulClient(consul);
        configured.push(new ConsulRegistry(consul, this.consulClient, this.logger, this.metrics, { watchCatalog: consul.tagRoutes }));
      }
      if (etcd) {
        this.etcdClient = new EtcdClient(etcd);
        configured.push(new EtcdRegistry(etcd, this.etcdClient, this.logger, this.metrics));
      }
    }
    const staticRegistry = new StaticRegistry(config.registry.static.services, this.logger, this.metrics);
    this.registries = new RegistrySet([staticRegistry, ...discovery], (service) => Object.hasOwn(this.config.registry.static.services, service));
    const consulRegistry = this.registries.get('consul');
    if (config.registry.consul?.tagRoutes && consulRegistry instanceof ConsulRegistry) {
      this.tagRoutes = new TagRouteFeed(consulRegistry, { logger: this.logger, metrics: this.metrics, routes: () => this.config.routes, defaults: () => this.config.defaults, changed: (routes) => this.serve(routes) });
    }
    this.traffic = (options.traffic ?? localTraffic)(config, { metrics: this.metrics, logger: this.logger, registries: this.registries });
  }

  /** The table requests are matched against (single-process gateways only: workers hold their own). */
  get routeTable(): RouteTable {
    if (!(this.traffic instanceof LocalTraffic)) throw new Error('the routing table lives in the worker processes');
    return this.traffic.routeTable;
  }

  private plan(routes: readonly RouteConfig[]): RoutePlan[] {
    return planRoutes(routes, (route, service) => this.registries.nameFor(route, service), (route, service) => {
      this.logger.error({ route: route.name, service }, 'no registry serves this service');
    });
  }

  /** Points registries at the services these routes need, then hands the traffic plane the new table. */
  private serve(routes: readonly RouteConfig[], options: { reopenLogs?: boolean } = {}): void {
    const plans = this.plan(routes);
    const before = watchesByRegistry(this.plans);
    this.plans = plans;
    const watches = watchesByRegistry(plans);
    for (const registry of this.registries.all) {
      registry.track?.(watches.get(registry.name) ?? []);
      // Keys routes did not use until now: their instances go first, so the new table's pools start full.
      for (const key of watches.get(registry.name) ?? []) {
        if (before.get(registry.name)?.has(key)) continue;
        const snapshot = registry.snapshot(key);
        if (snapshot) this.traffic.serviceChanged(registry.name, key, snapshot);
      }
    }
    this.traffic.apply(this.config, plans, options);
  }

  /**
   * Applies a new config without a restart: routes, defaults and static services are swapped in (the
   * routing table atomically, so requests in flight finish on the table they started with); pools,
   * breakers and health state of unchanged services are kept; restart-only keys are reported, not applied.
   */
  async reload(next: GatewayConfig): Promise<ReloadReport> {
    const blocked = restartRequired(this.config, next);
    const applied = applicableConfig(this.config, next);
    this.config = applied;
    await (this.registries.get('static') as StaticRegistry).update(applied.registry.static.services);
    this.serve(this.tagRoutes?.merged(applied.routes) ?? applied.routes, { reopenLogs: true });
    this.version += 1;
    this.loadedAt = new Date();
    this.lastReload = { at: this.loadedAt.toISOString(), result: 'success', errors: [], restartRequired: blocked };
    this.metrics.configReloads.inc({ result: 'success' });
    this.metrics.configVersion.set(this.version);
    if (blocked.length > 0) this.logger.warn({ restartRequired: blocked }, 'config reloaded; these keys changed but need a restart to apply');
    else this.logger.info({ version: this.version }, 'config reloaded');
    return this.lastReload;
  }

  /** Records a reload that was refused (the file did not parse or validate); nothing was applied. */
  reloadFailed(errors: readonly string[]): ReloadReport {
    this.lastReload = { at: new Date().toISOString(), result: 'failure', errors: [...errors], restartRequired: [] };
    this.metrics.configReloads.inc({ result: 'failure' });
    return this.lastReload;
  }

  /** GET /admin/config. */
  describeConfig(): unknown {
    return { version: this.version, loadedAt: this.loadedAt.toISOString(), file: this.configFile ?? null, lastReload: this.lastReload ?? null };
  }

  get configVersion(): number {
    return this.version;
  }

  /** Adds work to run at the start of the drain (e.g. deregistering from Consul). */
  onShutdown(hook: () => Promise<void>): void {
    this.shutdownHooks.push(hook);
  }

  notReadyReason(): string | undefined {
    if (this.phase === 'draining' || this.phase === 'stopped') return 'shutting down';
    if (this.phase !== 'serving') return 'starting';
    for (const registry of this.registries.all) {
      if (!registry.status().synced) return `registry ${registry.name} has not synced yet`;
    }
    return this.traffic.notReadyReason();
  }

  /** GET /admin/routes: the routes served, and per pool its instances with their health and breakers. */
  async describeRoutes(): Promise<unknown> {
    const { routes, pools } = await this.traffic.describe();
    return { routes: routes.map(describeRoute), services: this.describeServices(pools) };
  }

  private describeServices(pools: readonly PoolView[]): Record<string, unknown> {
    const services: Record<string, unknown> = {};
    for (const pool of pools) {
      // The first pool of a service keeps the plain name; other subsets of it (split backends, tags, meta) add their label.
      const base = pool.datacenter ? `${pool.service}@${pool.datacenter}` : pool.service;
      const key = services[base] ? `${base}[${pool.subset}]` : base;
      if (services[key]) continue;
      const registry = this.registries.get(pool.registry);
      const status = registry?.serviceStatus?.(pool.watchKey) ?? registry?.status();
      services[key] = {
        service: pool.service,
        subset: pool.subset,
        ...(pool.datacenter ? { datacenter: pool.datacenter } : {}),
        registry: pool.registry,
        lastSyncAt: status?.lastSyncAt ? new Date(status.lastSyncAt).toISOString() : null,
        lastError: status?.lastError ?? null,
        ...(status && 'lastContactMs' in status ? { lastContactMs: status.lastContactMs ?? null, knownLeader: status.knownLeader ?? null, stale: status.stale ?? false } : {}),
        instances: pool.instances,
      };
    }
    return services;
  }

  /** Starts registries, then both listeners. Resolves once the gateway is serving. */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (error) {
      // A signal during the start: stop() is already draining and ends the process; nothing more to undo here.
      if (this.phase === 'draining' || this.phase === 'stopped') return;
      // Whatever did start (admin listener, registry watches, workers) must not outlive a failed start.
      await this.stopParts().catch(() => undefined);
      this.phase = 'stopped';
      throw error;
    }
  }

  private async startParts(): Promise<void> {
    this.phase = 'starting';
    for (const registry of this.registries.all) {
      registry.onChange((key) => {
        const snapshot = registry.snapshot(key);
        if (snapshot) this.traffic.serviceChanged(registry.name, key, snapshot);
      });
    }
    this.serve(this.tagRoutes?.merged(this.config.routes) ?? this.config.routes);
    this.adminServer = buildAdminServer({
      metricsText: () => this.traffic.metricsText(),
      contentType: this.metrics.registry.contentType,
      logger: this.logger,
      notReadyReason: () => this.notReadyReason(),
      describeRoutes: () => this.describeRoutes(),
      describeConfig: () => this.describeConfig(),
      workers: () => this.traffic.processCount,
      reload: () => this.reloadFromFile?.() ?? Promise.resolve({ ok: false as const, errors: ['this gateway was not started from a config file'] }),
      token: this.config.admin.token,
    });
    await this.adminServer.listen({ host: this.config.admin.host, port: this.config.admin.port });
    await Promise.all(this.registries.all.map((registry) => registry.start()));
    this.reseedPools();
    await this.traffic.listen();
    // stop() may have begun meanwhile (SIGTERM while workers were forking): ready stays 503 and nothing registers.
    if (this.phase !== 'starting') return;
    this.phase = 'serving';
    await this.registerWithConsul();
    await this.registerWithEtcd();
    this.logger.info({ server: this.publicAddress, admin: this.adminAddress, routes: this.config.routes.length, workers: this.traffic.processCount }, 'waygate serving');
  }

  /** After the first sync: every pool gets what its registry now knows. */
  private reseedPools(): void {
    for (const registry of this.registries.all) {
      for (const key of watchesByRegistry(this.plans).get(registry.name) ?? []) {
        const snapshot = registry.snapshot(key);
        if (snapshot) this.traffic.serviceChanged(registry.name, key, snapshot);
      }
    }
  }

  /** Self-registration: only once serving, so Consul's first check of /health/ready can pass. */
  private async registerWithConsul(): Promise<void> {
    const register = this.config.registry.consul?.register;
    if (!register || !this.consulClient) return;
    const adminPort = Number(new URL(this.adminAddress).port);
    const publicPort = register.port === 0 ? Number(new URL(this.publicAddress).port) : register.port;
    const self = new SelfRegistration(this.consulClient, { ...register, port: publicPort }, { ...this.config.admin, port: adminPort });
    try {
      await self.registerNow();
      this.logger.info({ id: register.id, name: register.name }, 'consul: registered the gateway');
    } catch (error) {
      this.logger.error({ err: (error as Error).message }, 'consul: self-registration failed; serving anyway');
    }
    this.onShutdown(async () => {
      try {
        await self.deregister();
        this.logger.info({ id: register.id }, 'consul: deregistered the gateway');
      } catch (error) {
        this.logger.error({ err: (error as Error).message }, 'consul: deregistration failed');
      }
    });
  }

  /** etcd self-registration: a leased key written once serving, revoked at drain start (so before the drain delay ends). */
  private async registerWithEtcd(): Promise<void> {
    const etcd = this.config.registry.etcd;
    if (!etcd?.register || !this.etcdClient) return;
    const { service, id, ttlMs } = etcd.register;
    const listening = new URL(this.publicAddress);
    const host = isWildcardHost(this.config.server.host) ? '127.0.0.1' : listening.hostname;
    const address = etcd.register.address ?? `${this.config.server.tls ? 'https://' : ''}${host}:${listening.port}`;
    const self = new EtcdSelfRegistration(this.etcdClient, `${etcd.prefix}${service}/${id}`, registrationValue(address), ttlMs, this.logger);
    if (!(await self.start())) this.logger.error({ key: self.key }, 'etcd: self-registration failed; serving anyway and retrying');
    this.onShutdown(async () => {
      try {
        await self.revoke();
        this.logger.info({ key: self.key }, 'etcd: revoked the gateway registration');
      } catch (error) {
        this.logger.error({ err: (error as Error).message }, 'etcd: revoking the registration failed (its lease expires by itself)');
      }
    });
  }

  /** Stops everything but the public listener (stop() drains that first). */
  private async stopParts(): Promise<void> {
    await this.traffic.close().catch(() => undefined);
    await Promise.allSettled(this.registries.all.map((registry) => registry.stop()));
    await this.adminServer?.close();
    await this.consulClient?.close().catch(() => undefined);
    await this.etcdClient?.close().catch(() => undefined);
  }

  get publicAddress(): string {
    return this.traffic.publicAddress;
  }

  get adminAddress(): string {
    const address = this.adminServer?.server.address();
    if (!address || typeof address === 'string') return '';
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  /**
   * Graceful stop: ready turns 503 at once, traffic is still served for drainDelay, then the listener
   * stops accepting and in-flight requests get up to shutdown.timeout to finish.
   */
  async stop(): Promise<void> {
    if (this.phase === 'draining' || this.phase === 'stopped') return;
    this.phase = 'draining';
    const { drainDelayMs, timeoutMs } = this.config.shutdown;
    this.logger.info({ drainDelayMs, timeoutMs }, 'shutdown: draining');
    await Promise.allSettled(this.shutdownHooks.map((hook) => hook()));
    await this.sleep(drainDelayMs);
    await this.traffic.drain(timeoutMs);
    await this.stopParts();
    this.phase = 'stopped';
    this.logger.info('shutdown: complete');
  }
}

function describeRoute(route: RouteConfig): Record<string, unknown> {
  return {
    name: route.name,
    source: route.source,
    match: route.match,
    service: route.service,
    tags: route.tags,
    meta: route.meta ?? {},
    ...(route.split ? { split: route.split.map((backend) => ({ service: backend.service, tags: backend.tags, meta: backend.meta ?? {}, weight: backend.weight })) } : {}),
    ...(route.datacenters ? { datacenters: route.datacenters } : {}),
    stripPrefix: route.stripPrefix,
    loadBalancer: route.loadBalancer,
    timeoutMs: route.timeoutMs,
    retries: route.retries,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
