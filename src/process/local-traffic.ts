import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { GatewayConfig } from '../config/types.ts';
import { AccessLog } from '../observability/access-log.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { AttemptDispatcher } from '../proxy/dispatcher.ts';
import { buildPublicServer } from '../proxy/public-server.ts';
import { loadCertificate } from '../proxy/tls-termination.ts';
import { UpstreamTlsProfiles } from '../proxy/upstream-tls-profiles.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import { BreakerClock } from '../resilience/breakers.ts';
import { buildTable, poolsOf } from '../routing/build-table.ts';
import { PoolRegistry } from '../routing/pool-registry.ts';
import type { RoutePlan } from '../routing/route-plan.ts';
import { RouteTable } from '../routing/table.ts';
import type { PoolView, TrafficPlane, TrafficView } from './traffic-plane.ts';

export interface LocalTrafficOptions {
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly snapshotOf: (registry: string, watchKey: string) => ServiceSnapshot | undefined;
  /** Set in worker processes, which share stdout with each other and the primary. */
  readonly sharedStdout?: boolean;
}

/** Serves requests in this process: the pools, the current table, the public listener and its drain. */
export class LocalTraffic implements TrafficPlane {
  readonly processCount = 1;
  private readonly clock = new BreakerClock();
  private readonly pools: PoolRegistry;
  private readonly dispatcher: AttemptDispatcher;
  private readonly tls: UpstreamTlsProfiles;
  /** server.tls, read (and pair-checked) before anything listens, so bad files fail the start cleanly. */
  private readonly certificate: { cert: Buffer; key: Buffer } | undefined;
  private table = new RouteTable([]);
  private server: FastifyInstance | undefined;
  private accessLog: AccessLog | undefined;
  private listening = false;

  constructor(private config: GatewayConfig, private readonly options: LocalTrafficOptions) {
    this.certificate = config.server.tls ? loadCertificate(config.server.tls) : undefined;
    this.tls = UpstreamTlsProfiles.load(config, options.logger);
    this.dispatcher = new AttemptDispatcher(config.defaults.connectTimeoutMs);
    this.pools = new PoolRegistry({ clock: this.clock, metrics: options.metrics, logger: options.logger, snapshotOf: options.snapshotOf });
  }

  get routeTable(): RouteTable {
    return this.table;
  }

  serviceChanged(registry: string, watchKey: string, snapshot: ServiceSnapshot): void {
    this.pools.update(registry, watchKey, snapshot);
  }

  apply(config: GatewayConfig, plans: readonly RoutePlan[], options: { readonly reopenLogs?: boolean } = {}): void {
    this.config = config;
    this.table = buildTable(plans, this.pools);
    this.pools.retainOnly(poolsOf(this.table));
    if (options.reopenLogs) this.accessLog?.reopen(); // after logrotate moved the file
  }

  async listen(): Promise<void> {
    if (this.config.accessLog.enabled) this.accessLog = new AccessLog(this.config.accessLog, { sharedStdout: this.options.sharedStdout });
    this.server = await buildPublicServer({ table: () => this.table, metrics: this.options.metrics, logger: this.options.logger, dispatcher: this.dispatcher, server: this.config.server, accessLog: this.accessLog, certificate: this.certificate, tlsFor: (pool) => this.tls.for(pool) });
    await this.server.listen({ host: this.config.server.host, port: this.config.server.port });
    this.listening = true;
  }

  notReadyReason(): string | undefined {
    return this.listening ? undefined : 'the public listener is not open yet';
  }

  async drain(timeoutMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.listening = false;
    const closing = server.close();
    let timer: NodeJS.Timeout | undefined;
    const forced = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    const result = await Promise.race([closing.then(() => 'closed' as const), forced]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.options.logger.warn({ timeoutMs }, 'shutdown: timeout reached; closing remaining connections');
      if (server.waygateTls) server.waygateTls.destroyAll();
      else server.server.closeAllConnections();
      await closing;
    }
  }

  async close(): Promise<void> {
    // After a failed start nothing drained the listener: it must not outlive the gateway.
    if (this.listening) await this.drain(0).catch(() => undefined);
    this.listening = false;
    await this.accessLog?.close().catch(() => undefined);
    this.pools.close();
    this.clock.stop();
    await this.dispatcher.close().catch(() => undefined);
  }

  async describe(): Promise<TrafficView> {
    const now = Date.now();
    const pools: PoolView[] = [...poolsOf(this.table)].map((pool) => ({ service: pool.name, watchKey: pool.watchKey, datacenter: pool.datacenter, registry: pool.registry, subset: pool.subsetLabel, instances: pool.describe(now).instances }));
    return { routes: this.table.entries.map((entry) => entry.route), pools };
  }

  metricsText(): Promise<string> {
    return this.options.metrics.registry.metrics();
  }

  get publicAddress(): string {
    const address = this.server?.server.address() as AddressInfo | null | undefined;
    if (!address) return '';
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `${this.config.server.tls ? 'https' : 'http'}://${host}:${address.port}`;
  }
}
