import type { StaticServiceConfig } from '../config/types.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { HealthChecker } from './health-checker.ts';
import type { Instance, Registry, RegistryStatus, ServiceSnapshot } from './types.ts';

/** Instances listed in the YAML file, optionally filtered by active HTTP health checks. */
export class StaticRegistry implements Registry {
  readonly name = 'static';
  private readonly snapshots = new Map<string, ServiceSnapshot>();
  private readonly checkers = new Map<string, HealthChecker>();
  private started = false;
  private readonly listeners: Array<(service: string) => void> = [];
  private lastSyncAt: number | undefined;

  constructor(
    private services: Readonly<Record<string, StaticServiceConfig>>,
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
  ) {
    for (const [name, service] of Object.entries(services)) {
      this.snapshots.set(name, { name, instances: toInstances(service), unhealthy: [] });
    }
  }

  async start(): Promise<void> {
    this.started = true;
    await Promise.all(Object.entries(this.services).map(([name, service]) => this.check(name, service)));
    this.lastSyncAt = Date.now();
    this.metrics.registrySynced(this.name, this.lastSyncAt);
  }

  private async check(name: string, service: StaticServiceConfig): Promise<void> {
    if (!service.healthCheck) return;
    const instances = toInstances(service);
    const checker = new HealthChecker(service.healthCheck, () => this.publish(name, instances, checker), this.logger);
    this.checkers.set(name, checker);
    await checker.start(instances.map((instance) => instance.url));
    if (this.checkers.get(name) === checker) this.publish(name, instances, checker);
  }

  /**
   * Applies a reloaded `registry.static.services`: services whose instances or health check changed
   * get a fresh snapshot (and checker); unchanged ones keep theirs, so their health state survives.
   */
  async update(services: Readonly<Record<string, StaticServiceConfig>>): Promise<void> {
    const previous = this.services;
    this.services = services;
    const changed: string[] = [];
    for (const name of Object.keys(previous)) {
      if (Object.hasOwn(services, name)) continue;
      this.checkers.get(name)?.stop();
      this.checkers.delete(name);
      this.snapshots.delete(name);
    }
    for (const [name, service] of Object.entries(services)) {
      if (Object.hasOwn(previous, name) && JSON.stringify(previous[name]) === JSON.stringify(service)) continue;
      this.checkers.get(name)?.stop();
      this.checkers.delete(name);
      this.snapshots.set(name, { name, instances: toInstances(service), unhealthy: [] });
      changed.push(name);
    }
    for (const name of changed) for (const listener of this.listeners) listener(name);
    if (this.started) await Promise.all(changed.map((name) => this.check(name, services[name]!)));
  }

  private publish(name: string, instances: readonly Instance[], checker: HealthChecker): void {
    const healthy = instances.filter((instance) => checker.isHealthy(instance.url));
    const unhealthy = instances.filter((instance) => !checker.isHealthy(instance.url));
    this.snapshots.set(name, { name, instances: healthy, unhealthy });
    for (const listener of this.listeners) listener(name);
  }

  async stop(): Promise<void> {
    this.started = false;
    for (const checker of this.checkers.values()) checker.stop();
  }

  status(): RegistryStatus {
    return { name: this.name, synced: this.lastSyncAt !== undefined, lastSyncAt: this.lastSyncAt, lastError: undefined };
  }

  snapshot(service: string): ServiceSnapshot | undefined {
    return this.snapshots.get(service);
  }

  onChange(listener: (service: string) => void): void {
    this.listeners.push(listener);
  }
}

function toInstances(service: StaticServiceConfig): Instance[] {
  return service.instances.map((instance) => ({ id: instance.url, url: instance.url, weight: instance.weight, tags: [] }));
}
