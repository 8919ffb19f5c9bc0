import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every Prometheus series waygate exports; labels are route/service/registry names, never raw URLs. */
export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'waygate_requests_total',
    help: 'Requests answered, by route, method and status code',
    labelNames: ['route', 'method', 'code'] as const,
    registers: [this.registry],
  });

  readonly requestDuration = new Histogram({
    name: 'waygate_request_duration_seconds',
    help: 'Time from request arrival to response end, by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly upstreamAttempts = new Counter({
    name: 'waygate_upstream_attempts_total',
    help: 'Attempts to reach an upstream instance, by service and outcome (success|failure|timeout|rejected)',
    labelNames: ['service', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly retries = new Counter({
    name: 'waygate_retries_total',
    help: 'Requests moved to another instance after a failed attempt, by route',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });

  readonly instances = new Gauge({
    name: 'waygate_instances',
    help: 'Known instances per service and state (healthy|unhealthy)',
    labelNames: ['service', 'state'] as const,
    registers: [this.registry],
  });

  readonly circuitBreakerOpen = new Gauge({
    name: 'waygate_circuit_breaker_open',
    help: '1 while the circuit breaker of an instance is open, else 0',
    labelNames: ['service', 'instance'] as const,
    registers: [this.registry],
  });

  readonly outlierEjections = new Counter({
    name: 'waygate_outlier_ejections_total',
    help: 'Instances ejected by outlier detection, by service',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });

  readonly registrySyncs = new Counter({
    name: 'waygate_registry_syncs_total',
    help: 'Successful reads from a registry',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });

  readonly registryErrors = new Counter({
    name: 'waygate_registry_errors_total',
    help: 'Failed reads from a registry',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });

  readonly registryLastSync = new Gauge({
    name: 'waygate_registry_last_sync_timestamp_seconds',
    help: 'Unix time of the last successful read from a registry',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'waygate_' }); // waygate_process_*, waygate_nodejs_*
  }

  /** Marks one successful registry read. */
  registrySynced(registry: string, at = Date.now()): void {
    this.registrySyncs.inc({ registry });
    this.registryLastSync.set({ registry }, at / 1000);
  }
}

/** Label-bound children of the per-request series, cached so the hot path skips prom-client's label hashing. */
export class RequestMetrics {
  private readonly counters = new Map<string, { inc(): void }>();
  private readonly durations = new Map<string, { observe(value: number): void }>();

  constructor(private readonly metrics: GatewayMetrics) {}

  record(route: string, method: string, status: number, seconds: number): void {
    const key = `${route}\u0000${method}\u0000${status}`;
    let counter = this.counters.get(key);
    if (!counter) {
      counter = this.metrics.requests.labels(route, method, String(status));
      this.counters.set(key, counter);
    }
    counter.inc();
    let duration = this.durations.get(route);
    if (!duration) {
      duration = this.metrics.requestDuration.labels(route);
      this.durations.set(route, duration);
    }
    duration.observe(seconds);
  }
}
