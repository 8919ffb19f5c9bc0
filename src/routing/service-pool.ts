import type { CircuitBreakerConfig, OutlierDetectionConfig } from '../config/types.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { Instance, ServiceSnapshot } from '../registry/types.ts';
import type { AttemptOutcome } from '../proxy/attempt.ts';
import { type BreakerClock, type BreakerState, InstanceBreaker } from '../resilience/breakers.ts';
import { InstanceStats } from '../observability/instance-stats.ts';
import type { CounterSeries } from '../observability/request-metrics.ts';
import { OutlierDetector } from '../resilience/outlier.ts';

/** Live, per-instance state that outlives registry snapshots (in-flight count, breaker). */
export interface InstanceRuntime {
  instance: Instance;
  inflight: number;
  readonly breaker: InstanceBreaker;
}

/** What a request may use right now. */
export type Selection =
  | { readonly kind: 'candidates'; readonly candidates: Instance[]; readonly panic: boolean }
  | { readonly kind: 'no-instance' }
  | { readonly kind: 'circuit-open'; readonly retryAfterSeconds: number };

const NO_INSTANCE: Selection = { kind: 'no-instance' };
const acceptsTraffic = (runtime: InstanceRuntime): boolean => runtime.breaker.acceptsTraffic;

export interface ServicePoolOptions {
  readonly name: string;
  /** The registry key of the instances: the service name, or `name@dc` for another datacenter. */
  readonly watchKey?: string | undefined;
  /** The Consul datacenter the instances come from, when the route names datacenters. */
  readonly datacenter?: string | undefined;
  readonly registry: string;
  /** Tags every instance must carry (route `tags`); pools are per service, tag set and meta. */
  readonly tags: readonly string[];
  /** Service.Meta pairs every instance must carry (route `meta`). */
  readonly meta?: Readonly<Record<string, string>> | undefined;
  readonly circuitBreaker: CircuitBreakerConfig;
  readonly outlierDetection: OutlierDetectionConfig;
  readonly clock: BreakerClock;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
}

/**
 * Everything the request path needs to know about one service: registry-healthy instances, their
 * breakers, in-flight counts and outlier ejections. Registry updates swap arrays; readers never wait.
 */
export class ServicePool {
  readonly name: string;
  readonly registry: string;
  readonly watchKey: string;
  readonly datacenter: string | undefined;
  private runtimes = new Map<string, InstanceRuntime>();
  private healthyRuntimes: InstanceRuntime[] = [];
  /** The selection for "first attempt, nothing excluded", rebuilt only when the registry changes. */
  private everyone: Selection = NO_INSTANCE;
  private unhealthyInstances: readonly Instance[] = [];
  private readonly outlier: OutlierDetector;
  private readonly attemptCounters = new Map<string, CounterSeries>();
  /** Request rate, errors and latency per instance over the last minute, for the dashboard. */
  private readonly stats = new Map<string, InstanceStats>();
  /** The pool's identity in gauge labels: its required tags, sorted, comma-joined ("" for none). */
  private readonly tagsLabel: string;
  lastSyncAt: number | undefined;
  lastError: string | undefined;

  constructor(private readonly options: ServicePoolOptions) {
    this.name = options.name;
    this.registry = options.registry;
    this.watchKey = options.watchKey ?? options.name;
    this.datacenter = options.datacenter;
    this.outlier = new OutlierDetector(options.outlierDetection);
    // Meta pairs (and the datacenter) join the tags label as key=value, so pools that differ only in those keep separate series.
    this.tagsLabel = [...options.tags, ...Object.entries(options.meta ?? {}).map(([key, value]) => `${key}=${value}`), ...(options.datacenter ? [`dc=${options.datacenter}`] : [])].sort().join(',');
  }

  /** Replaces the instance set with a registry snapshot, keeping runtime state of instances that stay. */
  update(snapshot: ServiceSnapshot): void {
    const next = new Map<string, InstanceRuntime>();
    const healthy: InstanceRuntime[] = [];
    for (const instance of snapshot.instances) {
      if (!this.wants(instance)) continue;
      let runtime = this.runtimes.get(instance.id);
      if (runtime && runtime.instance.url === instance.url) {
        runtime.instance = instance; // same object keeps in-flight counts of requests already under way
      } else {
        runtime?.breaker.shutdown();
        runtime = { instance, inflight: 0, breaker: this.createBreaker(instance) };
      }
      next.set(instance.id, runtime);
      healthy.push(runtime);
    }
    for (const [id, runtime] of this.runtimes) {
      if (next.get(id) !== runtime) {
        runtime.breaker.shutdown();
        this.outlier.forget(id);
        this.stats.delete(id);
        this.options.metrics.circuitBreakerOpen.remove({ service: this.name, tags: this.tagsLabel, instance: id });
      }
    }
    this.runtimes = next;
    this.healthyRuntimes = healthy;
    this.everyone = { kind: 'candidates', candidates: healthy.map((runtime) => runtime.instance), panic: false };
    this.unhealthyInstances = this.options.tags.length > 0 || this.options.meta ? snapshot.unhealthy.filter((instance) => this.wants(instance)) : snapshot.unhealthy;
    this.options.metrics.instances.set({ service: this.name, tags: this.tagsLabel, state: 'healthy' }, healthy.length);
    this.options.metrics.instances.set({ service: this.name, tags: this.tagsLabel, state: 'unhealthy' }, this.unhealthyInstances.length);
  }

  /** Whether an instance belongs to this pool's subset: every required tag, every required meta pair. */
  private wants(instance: Instance): boolean {
    const { tags, meta } = this.options;
    if (tags.length > 0 && !tags.every((tag) => instance.tags.includes(tag))) return false;
    if (meta) for (const key in meta) if (instance.meta?.[key] !== meta[key]) return false;
    return true;
  }

  private createBreaker(instance: Instance): InstanceBreaker {
    const { metrics, logger } = this.options;
    return new InstanceBreaker(this.options.circuitBreaker, this.options.clock, (state: BreakerState) => {
      metrics.circuitBreakerOpen.set({ service: this.name, tags: this.tagsLabel, instance: instance.id }, state === 'open' ? 1 : 0);
      logger.warn({ service: this.name, instance: instance.id, url: instance.url, breaker: state }, `circuit breaker ${state}`);
    });
  }

  /** Sets this pool's gauge series again: a retired pool with the same labels removes them when it closes. */
  publishGauges(): void {
    const { metrics } = this.options;
    metrics.instances.set({ service: this.name, tags: this.tagsLabel, state: 'healthy' }, this.healthyRuntimes.length);
    metrics.instances.set({ service: this.name, tags: this.tagsLabel, state: 'unhealthy' }, this.unhealthyInstances.length);
    for (const [id, runtime] of this.runtimes) {
      if (runtime.breaker.state !== 'closed') metrics.circuitBreakerOpen.set({ service: this.name, tags: this.tagsLabel, instance: id }, runtime.breaker.state === 'open' ? 1 : 0);
    }
  }

  /** The subset this pool serves: its required tags and meta pairs, sorted ("" for the whole service). */
  get subsetLabel(): string {
    return this.tagsLabel;
  }

  runtime(id: string): InstanceRuntime | undefined {
    return this.runtimes.get(id);
  }

  inflight(id: string): number {
    return this.runtimes.get(id)?.inflight ?? 0;
  }

  get healthyCount(): number {
    return this.healthyRuntimes.length;
  }

  /**
   * Instances a request may try, skipping `tried`. Below panicThreshold % usable instances, breakers
   * and ejections are ignored so a partial outage never becomes a total one — but only while some
   * instance still has a closed breaker. When none does (all open, or open plus half-open trials),
   * the service is failing as a whole: only half-open trials go through, everything else gets
   * CIRCUIT_OPEN at once.
   */
  select(tried: ReadonlySet<string> | undefined, panicThreshold: number, now: number): Selection {
    const all = this.healthyRuntimes;
    if (all.length === 0) return NO_INSTANCE;
    // Fast path, no allocation: first attempt and every instance usable.
    if (tried === undefined && this.outlier.ejectedCount(now) === 0 && all.every(acceptsTraffic)) return this.everyone;
    const usable: Instance[] = [];
    let openCount = 0;
    let closedCount = 0;
    let usableTotal = 0;
    for (const runtime of all) {
      const state = runtime.breaker.state;
      if (state === 'open') openCount += 1;
      else if (state === 'closed') closedCount += 1;
      if (state === 'open' || this.outlier.isEjected(runtime.instance.id, now)) continue;
      usableTotal += 1;
      if (tried === undefined || !tried.has(runtime.instance.id)) usable.push(runtime.instance);
    }
    if (openCount === all.length) return this.circuitOpen(now);
    if (closedCount > 0 && (usableTotal / all.length) * 100 < panicThreshold) {
      const everyone: Instance[] = [];
      for (const runtime of all) if (tried === undefined || !tried.has(runtime.instance.id)) everyone.push(runtime.instance);
      return everyone.length > 0 ? { kind: 'candidates', candidates: everyone, panic: true } : NO_INSTANCE;
    }
    if (usable.length > 0) return { kind: 'candidates', candidates: usable, panic: false };
    return closedCount === 0 ? this.circuitOpen(now) : NO_INSTANCE;
  }

  private circuitOpen(now: number): Selection {
    let nextTrial = Infinity;
    for (const runtime of this.healthyRuntimes) {
      if (runtime.breaker.state === 'open') nextTrial = Math.min(nextTrial, runtime.breaker.nextTrialAt);
    }
    const seconds = Number.isFinite(nextTrial) ? Math.ceil((nextTrial - now) / 1000) : 1;
    return { kind: 'circuit-open', retryAfterSeconds: Math.max(1, seconds) };
  }

  /** Counts an upstream attempt; label-bound counters are cached so the hot path skips label hashing. */
  countAttempt(outcome: AttemptOutcome): void {
    let counter = this.attemptCounters.get(outcome);
    if (!counter) {
      counter = this.options.metrics.upstreamAttempts.series(this.name, outcome);
      this.attemptCounters.set(outcome, counter);
    }
    counter.inc();
  }

  /** Feeds an attempt's outcome to outlier detection (and the last-minute stats); logs and counts ejections. */
  recordOutcome(id: string, failed: boolean, now: number, durationMs?: number): void {
    if (durationMs !== undefined) {
      let stats = this.stats.get(id);
      if (!stats) {
        stats = new InstanceStats();
        this.stats.set(id, stats);
      }
      stats.record(now, durationMs, failed);
    }
    if (!failed) {
      this.outlier.recordSuccess(id);
      return;
    }
    const until = this.outlier.recordFailure(id, now, this.healthyRuntimes.length);
    if (until !== undefined) {
      this.options.metrics.outlierEjections.inc({ service: this.name });
      this.options.logger.warn({ service: this.name, instance: id, ejectedForMs: until - now }, 'instance ejected as an outlier');
    }
  }

  /** Snapshot for /admin/routes. */
  describe(now: number): { instances: Array<Record<string, unknown>> } {
    const instances: Array<Record<string, unknown>> = [];
    for (const runtime of this.healthyRuntimes) {
      const ejectedUntil = this.outlier.ejectedUntil(runtime.instance.id, now);
      instances.push({
        id: runtime.instance.id,
        url: runtime.instance.url,
        healthy: true,
        breaker: runtime.breaker.state,
        ejected: ejectedUntil !== undefined,
        ejectedUntil: ejectedUntil === undefined ? null : new Date(ejectedUntil).toISOString(),
        weight: runtime.instance.weight,
        inflight: runtime.inflight,
        tags: runtime.instance.tags,
        ...(this.stats.get(runtime.instance.id)?.summary(now) ?? { requestsPerSecond: 0, errorPercent: null, p99Ms: null }),
      });
    }
    for (const instance of this.unhealthyInstances) {
      instances.push({ id: instance.id, url: instance.url, healthy: false, breaker: 'closed', ejected: false, ejectedUntil: null, weight: instance.weight, inflight: 0, tags: instance.tags, ...(this.stats.get(instance.id)?.summary(now) ?? { requestsPerSecond: 0, errorPercent: null, p99Ms: null }) });
    }
    return { instances };
  }

  /** Retires the pool: its gauge series go with it, so a scrape never shows a pool that is gone. */
  close(): void {
    const { metrics } = this.options;
    for (const [id, runtime] of this.runtimes) {
      runtime.breaker.shutdown();
      metrics.circuitBreakerOpen.remove({ service: this.name, tags: this.tagsLabel, instance: id });
    }
    for (const state of ['healthy', 'unhealthy']) metrics.instances.remove({ service: this.name, tags: this.tagsLabel, state });
    this.runtimes.clear();
    this.healthyRuntimes = [];
    this.everyone = NO_INSTANCE;
  }
}
