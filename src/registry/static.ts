import type { StaticServiceConfig } from '../config/types.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { HealthChecker } from './health-checker.ts';
import type { Instance, Registry, RegistryStatus, ServiceSnapshot } from './types.ts';

/** Instances listed in the YAML file, optionally filtered by active HTTP health checks. */
export class StaticRegistry implements Registry {
  readonly name = 'static';
  private readonly snapshots = new Map<string, ServiceSnapshot>();
  private readonly checkers: HealthChecker[] = [];
  private readonly listeners: Array<(service: string) => void> = [];
  private lastSyncAt: number | undefined;

  constructor(
    private readonly services: Readonly<Record<string, StaticServiceConfig>>,
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
  ) {
    for (const [name, service] of Object.entries(services)) {
      this.snapshots.set(name, { name, instances: toInstances(service), unhealthy: [] });
    }
  }

  async start(): Promise<void> {
    await Promise.all(Object.entries(this.services).map(async ([name, service]) => {
      if (!service.healthCheck) return;
      const instances = toInstances(service);
      const checker = new HealthChecker(service.healthCheck, () => this.publish(name, instances, checker), this.logger);
      this.checkers.push(checker);
      await checker.start(instances.map((instance) => instance.url));
      this.publish(name, instances, checker);
    }));
    this.lastSyncAt = Date.now();
    this.metrics.registrySynced(this.name, this.lastSyncAt);
  }

  private publish(name: string, instances: readonly Instance[], checker: HealthChecker): void {
    const healthy = instances.filter((instance) => checker.isHealthy(instance.url));
    const unhealthy = instances.filter((instance) => !checker.isHealthy(instance.url));
    this.snapshots.set(name, { name, instances: healthy, unhealthy });
    for (const listener of this.listeners) listener(name);
  }

  async stop(): Promise<void> {
    for (const checker of this.checkers) checker.stop();
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
