import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildAdminServer } from './admin/admin-server.ts';
import { applicableConfig, restartRequired } from './config/reload.ts';
import type { ReloadOutcome } from './config/watch.ts';
import type { GatewayConfig, RouteConfig } from './config/types.ts';
import { AccessLog } from './observability/access-log.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { GatewayMetrics } from './observability/metrics.ts';
import { AttemptDispatcher } from './proxy/dispatcher.ts';
import { loadCertificate } from './proxy/tls-termination.ts';
import { type UpstreamTls, upstreamTls, VERIFY_WITH_SYSTEM_ROOTS } from './proxy/upstream-tls.ts';
import { buildPublicServer } from './proxy/public-server.ts';
import { ConsulClient } from './registry/consul/client.ts';
import { ConsulRegistry, parseWatchKey, watchKey } from './registry/consul/registry.ts';
import { SelfRegistration } from './registry/consul/self-registration.ts';
import { mergeRoutes, routesFromTags } from './registry/consul/tag-routes.ts';
import { EtcdClient } from './registry/etcd/client.ts';
import { EtcdRegistry } from './registry/etcd/registry.ts';
import { EtcdSelfRegistration, registrationValue } from './registry/etcd/self-registration.ts';
import { StaticRegistry } from './registry/static.ts';
import type { Registry } from './registry/types.ts';
import { BreakerClock } from './resilience/breakers.ts';
import { RetryBudget } from './resilience/retry-budget.ts';
import { createBalancer } from './routing/balancers/index.ts';
import { ServicePool } from './routing/service-pool.ts';
import type { SplitBackend } from './routing/split.ts';
import { type RouteEntry, RouteTable } from './routing/table.ts';

export interface GatewayOptions {
  readonly logger?: Logger;
  readonly metrics?: GatewayMetrics;
  /** Extra registries (Consul) serving services that are not static. */
  readonly registries?: readonly Registry[];
  /** How the drain delay is waited out; tests end it on their own signal instead of a clock. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** The outcome of the last reload, as /admin/config shows it. */
export interface ReloadReport {
  readonly at: string;
  readonly result: 'success' | 'failure';
  readonly errors: readonly string[];
  readonly restartRequired: readonly string[];
}

/** How long a retired pool keeps its breakers for requests that were already under way. */
const RETIRED_POOL_GRACE_MS = 60_000;

type Phase = 'created' | 'starting' | 'serving' | 'draining' | 'stopped';

/** Composes registries, the routing table, the public proxy and the admin listener; owns start/stop. */
export class Gateway {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  private readonly registries: Registry[];
  private readonly pools = new Map<string, ServicePool>();
  /** The same pools indexed by service name, so a registry update touches only its own pools. */
  private readonly poolsByService = new Map<string, ServicePool[]>();
  private readonly clock = new BreakerClock();
  private readonly dispatcher: AttemptDispatcher;
  private table = new RouteTable([]);
  private publicServer: FastifyInstance | undefined;
  private adminServer: FastifyInstance | undefined;
  private phase: Phase = 'created';
  private readonly shutdownHooks: Array<() => Promise<void>> = [];
  private readonly sleep: (ms: number) => Promise<void>;
  /** TLS profiles for https:// instances, read once at start. */
  private readonly staticTls = new Map<string, UpstreamTls>();
  private readonly consulTls: UpstreamTls;
  private readonly certificate: { cert: Buffer; key: Buffer } | undefined;
  private accessLog: AccessLog | undefined;

  /** The config being served; replaced whole by reload(). */
  config: GatewayConfig;
  /** Where the config came from, for /admin/config (the CLI sets it). */
  configFile: string | undefined;
  /** Re-reads the config file and applies it (set by the CLI, which knows the file). */
  reloadFromFile: (() => Promise<ReloadOutcome>) | undefined;
  private version = 1;
  private loadedAt = new Date();
  private lastReload: ReloadReport | undefined;

  constructor(config: GatewayConfig, options: GatewayOptions = {}) {
    this.config = config;
    this.logger = options.logger ?? createLogger();
    this.metrics = options.metrics ?? new GatewayMetrics();
    this.sleep = options.sleep ?? sleep;
    this.dispatcher = new AttemptDispatcher(config.defaults.connectTimeoutMs);
    // Read (and pair-checked) before anything listens, so bad files fail the start cleanly.
    this.certificate = config.server.tls ? loadCertificate(config.server.tls) : undefined;
    for (const [name, service] of Object.entries(config.registry.static.services)) {
      if (service.tls) this.staticTls.set(name, this.loadUpstreamTls(service.tls, `service ${name}`));
    }
    const consulInstances = config.registry.consul?.instanceTls;
    this.consulTls = consulInstances ? this.loadUpstreamTls(consulInstances, 'consul instances') : VERIFY_WITH_SYSTEM_ROOTS;
    const discovery = options.registries ?? [...(config.registry.consul ? [this.createConsul()] : []), ...(config.registry.etcd ? [this.createEtcd()] : [])];
    this.registries = [new StaticRegistry(config.registry.static.services, this.logger, this.metrics), ...discovery];
  }

  private consulClient: ConsulClient | undefined;
  private etcdClient: EtcdClient | undefined;

  private createEtcd(): EtcdRegistry {
    this.etcdClient = new EtcdClient(this.config.registry.etcd!);
    return new EtcdRegistry(this.config.registry.etcd!, this.etcdClient, this.logger, this.metrics);
  }

  private loadUpstreamTls(config: NonNullable<GatewayConfig['registry']['consul']>['instanceTls'], what: string): UpstreamTls {
    if (config?.insecureSkipVerify) this.logger.warn({ for: what }, 'tls: insecureSkipVerify is set: certificates of these instances are NOT verified');
    try {
      return upstreamTls(config);
    } catch (error) {
      throw new Error(`${what}: ${(error as Error).message}`);
    }
  }

  /** How a pool's https:// instances are verified. */
  tlsFor(pool: ServicePool): UpstreamTls {
    if (pool.registry === 'static') return this.staticTls.get(pool.name) ?? VERIFY_WITH_SYSTEM_ROOTS;
    if (pool.registry === 'etcd') return VERIFY_WITH_SYSTEM_ROOTS;
    return this.consulTls;
  }

  private createConsul(): ConsulRegistry {
    const consul = this.config.registry.consul!;
    this.consulClient = new ConsulClient(consul);
    const registry = new ConsulRegistry(consul, this.consulClient, this.logger, this.metrics, { watchCatalog: consul.tagRoutes });
    if (consul.tagRoutes) {
      registry.onCatalog((catalog) => {
        this.lastCatalog = catalog;
        const { routes: merged, refused } = mergeRoutes(this.config.routes, routesFromTags(catalog, this.config.defaults));
        const refusedKey = refused.map(({ route }) => route.name).join('\n');
        if (refusedKey !== this.refusedTagRoutes) {
          this.refusedTagRoutes = refusedKey;
          if (refused.length > 0) this.metrics.registryRejectedEntries.inc({ registry: 'consul' }, refused.length);
          for (const { route, ownedBy } of refused) {
            this.logger.warn({ service: route.service, path: route.match.pathPrefix, ownedBy }, `consul: tag route ${route.match.pathPrefix} of service "${route.service}" refused: the path belongs to YAML route "${ownedBy}"`);
          }
        }
        const key = merged.map((route) => `${route.name}|${route.match.pathPrefix}|${route.stripPrefix}`).join('\n');
        if (key === this.routesKey) return;
        this.logger.info({ routes: merged.length, fromTags: merged.length - this.config.routes.length }, 'consul: tag routes changed');
        this.setRoutes(merged);
      });
    }
    return registry;
  }

  private routesKey = '';
  /** The catalog tag routes were last built from, so a reload can merge them again. */
  private lastCatalog: ReadonlyMap<string, readonly string[]> | undefined;

  private withTagRoutes(routes: readonly RouteConfig[]): RouteConfig[] {
    if (!this.config.registry.consul?.tagRoutes || !this.lastCatalog) return [...routes];
    return mergeRoutes(routes, routesFromTags(this.lastCatalog, this.config.defaults)).routes;
  }
  /** Names of the tag routes refused last time, so each refusal is logged and counted once. */
  private refusedTagRoutes = '';

  /** Which registry serves a service: the one the route names, else static when listed there, else the first other registry. */
  registryFor(service: string, named?: RouteConfig['registry']): Registry | undefined {
    if (named !== undefined) return this.registries.find((registry) => registry.name === named);
    if (this.config.registry.static.services[service]) return this.registries[0];
    return this.registries[1];
  }

  /** Builds a routing table for these routes, reusing pools (and their breakers) that already exist. */
  buildTable(routes: readonly RouteConfig[]): RouteTable {
    const entries: RouteEntry[] = [];
    for (const route of routes) {
      const budget = new RetryBudget(route.retryBudget.percent, route.retryBudget.minConcurrent);
      if (route.split || route.datacenters) {
        const backends: SplitBackend[] = [];
        for (const backend of route.split ?? []) {
          const pool = this.poolFor({ ...route, service: backend.service, tags: backend.tags, meta: backend.meta });
          if (pool) backends.push({ pool, balancer: this.balancerFor(route, pool), weight: backend.weight });
        }
        for (const datacenter of route.datacenters ?? []) {
          const pool = this.poolFor(route, datacenter);
          if (pool) backends.push({ pool, balancer: this.balancerFor(route, pool), weight: 1 });
        }
        if (backends.length === 0) continue;
        entries.push({ route, pool: backends[0]!.pool, balancer: backends[0]!.balancer, budget, backends, choice: route.split ? 'weighted' : 'failover' });
        continue;
      }
      const pool = this.poolFor(route);
      if (!pool) continue;
      entries.push({ route, pool, balancer: this.balancerFor(route, pool), budget });
    }
    return new RouteTable(entries);
  }

  private balancerFor(route: RouteConfig, pool: ServicePool) {
    return createBalancer(route.loadBalancer, { inflight: (id) => pool.inflight(id), random: Math.random });
  }

  /** Every watch a route needs: its service (per datacenter when it fails over), or each split backend's. */
  private static watchesOf(route: RouteConfig): string[] {
    if (route.split) return route.split.map((backend) => backend.service);
    if (route.datacenters) return route.datacenters.map((dc) => watchKey(route.service, dc));
    return [route.service];
  }

  private poolFor(route: RouteConfig, datacenter?: string): ServicePool | undefined {
    const meta = Object.entries(route.meta ?? {}).map(([name, value]) => `${name}=${value}`).sort().join(',');
    const watch = watchKey(route.service, datacenter);
    // Breaker and outlier settings are part of a pool's identity: a reload that changes them gets a fresh pool, one that does not keeps its state.
    const key = `${route.registry ?? ''}|${watch}|${[...route.tags].sort().join(',')}|${meta}|${JSON.stringify(route.circuitBreaker)}|${JSON.stringify(route.outlierDetection)}`;
    let pool = this.pools.get(key);
    if (pool) return pool;
    const registry = this.registryFor(route.service, route.registry);
    if (!registry) {
      this.logger.error({ route: route.name, service: route.service }, 'no registry serves this service');
      return undefined;
    }
    pool = new ServicePool({
      name: route.service,
      watchKey: watch,
      datacenter,
      registry: registry.name,
      tags: route.tags,
      meta: route.meta,
      circuitBreaker: route.circuitBreaker,
      outlierDetection: route.outlierDetection,
      clock: this.clock,
      metrics: this.metrics,
      logger: this.logger,
    });
    const snapshot = registry.snapshot(watch);
    if (snapshot) pool.update(snapshot);
    this.pools.set(key, pool);
    const siblings = this.poolsByService.get(watch);
    if (siblings) siblings.push(pool);
    else this.poolsByService.set(watch, [pool]);
    return pool;
  }

  /** Swaps in a new routing table; requests already matched keep the entry they hold. */
  setRoutes(routes: readonly RouteConfig[]): void {
    this.routesKey = routes.map((route) => `${route.name}|${route.match.pathPrefix}|${route.stripPrefix}`).join('\n');
    for (const registry of this.registries) {
      registry.track?.(routes.flatMap((route) => Gateway.watchesOf(route).filter((watch) => this.registryFor(parseWatchKey(watch).name, route.registry) === registry)));
    }
    this.table = this.buildTable(routes);
    this.retireUnusedPools();
  }

  /** Pools no route uses any more (a tag route went away) are dropped; their breakers stop after in-flight requests had time to end. */
  private retireUnusedPools(): void {
    const used = new Set(this.table.entries.flatMap((entry) => entry.backends ? entry.backends.map((backend) => backend.pool) : [entry.pool]));
    for (const [key, pool] of this.pools) {
      if (used.has(pool)) continue;
      this.pools.delete(key);
      const siblings = (this.poolsByService.get(pool.watchKey) ?? []).filter((candidate) => candidate !== pool);
      if (siblings.length > 0) this.poolsByService.set(pool.watchKey, siblings);
      else this.poolsByService.delete(pool.watchKey);
      setTimeout(() => pool.close(), RETIRED_POOL_GRACE_MS).unref();
    }
  }

  get routeTable(): RouteTable {
    return this.table;
  }

  private onRegistryChange(registry: Registry, service: string): void {
    const snapshot = registry.snapshot(service);
    if (!snapshot) return;
    for (const pool of this.poolsByService.get(service) ?? []) {
      if (pool.registry === registry.name) pool.update(snapshot);
    }
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
    await (this.registries[0] as StaticRegistry).update(applied.registry.static.services);
    this.setRoutes(this.withTagRoutes(applied.routes));
    this.accessLog?.reopen(); // after logrotate moved the file
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
    for (const registry of this.registries) {
      if (!registry.status().synced) return `registry ${registry.name} has not synced yet`;
    }
    return undefined;
  }

  describeRoutes(): unknown {
    const now = Date.now();
    const services: Record<string, unknown> = {};
    for (const pool of new Set(this.table.entries.flatMap((entry) => entry.backends ? entry.backends.map((backend) => backend.pool) : [entry.pool]))) {
      // The first pool of a service keeps the plain name; other subsets of it (split backends, tags, meta) add their label.
      const base = pool.datacenter ? `${pool.name}@${pool.datacenter}` : pool.name;
      const key = services[base] ? `${base}[${pool.subsetLabel}]` : base;
      if (services[key]) continue;
      const registry = this.registries.find((candidate) => candidate.name === pool.registry);
      const status = registry?.serviceStatus?.(pool.watchKey) ?? registry?.status();
      services[key] = {
        service: pool.name,
        subset: pool.subsetLabel,
        ...(pool.datacenter ? { datacenter: pool.datacenter } : {}),
        registry: pool.registry,
        lastSyncAt: status?.lastSyncAt ? new Date(status.lastSyncAt).toISOString() : null,
        lastError: status?.lastError ?? null,
        ...(status && 'lastContactMs' in status ? { lastContactMs: status.lastContactMs ?? null, knownLeader: status.knownLeader ?? null, stale: status.stale ?? false } : {}),
        ...pool.describe(now),
      };
    }
    return {
      routes: this.table.entries.map(({ route }) => ({
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
      })),
      services,
    };
  }

  /** Starts registries, then both listeners. Resolves once the gateway is serving. */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (error) {
      // Whatever did start (admin listener, registry watches) must not outlive a failed start.
      await this.stopParts().catch(() => undefined);
      this.phase = 'stopped';
      throw error;
    }
  }

  private async startParts(): Promise<void> {
    this.phase = 'starting';
    for (const registry of this.registries) registry.onChange((service) => this.onRegistryChange(registry, service));
    this.setRoutes(this.config.routes);
    this.adminServer = buildAdminServer({
      metrics: this.metrics,
      logger: this.logger,
      notReadyReason: () => this.notReadyReason(),
      describeRoutes: () => this.describeRoutes(),
      describeConfig: () => this.describeConfig(),
      reload: () => this.reloadFromFile?.() ?? Promise.resolve({ ok: false as const, errors: ['this gateway was not started from a config file'] }),
      token: this.config.admin.token,
    });
    await this.adminServer.listen({ host: this.config.admin.host, port: this.config.admin.port });
    await Promise.all(this.registries.map((registry) => registry.start()));
    for (const registry of this.registries) {
      for (const pool of this.pools.values()) {
        if (pool.registry === registry.name) {
          const snapshot = registry.snapshot(pool.watchKey);
          if (snapshot) pool.update(snapshot);
        }
      }
    }
    if (this.config.accessLog.enabled) this.accessLog = new AccessLog(this.config.accessLog);
    this.publicServer = await buildPublicServer({ table: () => this.table, metrics: this.metrics, logger: this.logger, dispatcher: this.dispatcher, server: this.config.server, accessLog: this.accessLog, certificate: this.certificate, tlsFor: (pool) => this.tlsFor(pool) });
    await this.publicServer.listen({ host: this.config.server.host, port: this.config.server.port });
    this.phase = 'serving';
    await this.registerWithConsul();
    await this.registerWithEtcd();
    this.logger.info({ server: this.publicAddress, admin: this.adminAddress, routes: this.config.routes.length }, 'waygate serving');
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
    const host = WILDCARD.has(this.config.server.host) ? '127.0.0.1' : listening.hostname;
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
    await this.accessLog?.close().catch(() => undefined);
    await Promise.allSettled(this.registries.map((registry) => registry.stop()));
    for (const pool of this.pools.values()) pool.close();
    this.clock.stop();
    await this.dispatcher.close().catch(() => undefined);
    await this.adminServer?.close();
    await this.consulClient?.close().catch(() => undefined);
    await this.etcdClient?.close().catch(() => undefined);
  }

  get publicAddress(): string {
    return addressOf(this.publicServer, this.config.server.tls ? 'https' : 'http');
  }

  get adminAddress(): string {
    return addressOf(this.adminServer);
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
    if (this.publicServer) {
      const closing = this.publicServer.close();
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
      const result = await Promise.race([closing.then(() => 'closed' as const), forced]);
      clearTimeout(timer);
      if (result === 'timeout') {
        this.logger.warn({ timeoutMs }, 'shutdown: timeout reached; closing remaining connections');
        if (this.publicServer.waygateTls) this.publicServer.waygateTls.destroyAll();
        else this.publicServer.server.closeAllConnections();
        await closing;
      }
    }
    await this.stopParts();
    this.phase = 'stopped';
    this.logger.info('shutdown: complete');
  }
}

function addressOf(server: FastifyInstance | undefined, scheme: 'http' | 'https' = 'http'): string {
  const address = server?.server.address() as AddressInfo | null | undefined;
  if (!address) return '';
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

const WILDCARD = new Set(['0.0.0.0', '::', '[::]']);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
