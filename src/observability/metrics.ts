import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LabeledCounter, RequestCounter, RequestDurationHistogram } from './request-metrics.ts';

/**
 * Every Prometheus series waygate exports; labels are route/service/registry names, never raw URLs.
 * With workers the primary sums each series over the processes; gauges that every worker holds the
 * same copy of (instances, config version) or that only one process sets take the max instead.
 */
export class GatewayMetrics {
  readonly registry = new Registry();

  /** Recorded on the hot path without prom-client's label handling; rendered at scrape time. */
  readonly requests = new RequestCounter();
  readonly requestDuration = new RequestDurationHistogram();

  readonly upstreamAttempts = new LabeledCounter(
    'waygate_upstream_attempts_total',
    'Attempts to reach an upstream instance, by service and outcome (success|failure|timeout|rejected|aborted)',
    ['service', 'outcome'],
  );

  readonly retries = new LabeledCounter('waygate_retries_total', 'Requests moved to another instance after a failed attempt, by route', ['route']);

  /** Per pool: a service and the tag set its routes ask for ("" for none), so two pools never share a series. */
  readonly instances = new Gauge({
    name: 'waygate_instances',
    help: 'Known instances per pool (service and required tags) and state (healthy|unhealthy)',
    labelNames: ['service', 'tags', 'state'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });

  readonly circuitBreakerOpen = new Gauge({
    name: 'waygate_circuit_breaker_open',
    help: '1 while the circuit breaker of an instance (in a pool: service and required tags) is open, else 0',
    labelNames: ['service', 'tags', 'instance'] as const,
    aggregator: 'max',
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

  readonly registryRejectedEntries = new Counter({
    name: 'waygate_registry_rejected_entries_total',
    help: 'Registry entries skipped because they were malformed (bad port, missing Node or Service, wrong types)',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });

  readonly registryLastContact = new Gauge({
    name: 'waygate_registry_last_contact_seconds',
    help: 'From the last registry answer: how long ago the answering Consul server heard from its leader (X-Consul-LastContact)',
    labelNames: ['registry'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });

  readonly registryKnownLeader = new Gauge({
    name: 'waygate_registry_known_leader',
    help: 'From the last registry answer: 1 when the answering Consul server knew a leader (X-Consul-KnownLeader), else 0',
    labelNames: ['registry'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });

  readonly configReloads = new Counter({
    name: 'waygate_config_reloads_total',
    help: 'Config reloads by result (success|failure); a failure applies nothing',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly configVersion = new Gauge({
    name: 'waygate_config_version',
    help: 'Version of the config being served: 1 at start, +1 per applied reload',
    aggregator: 'max',
    registers: [this.registry],
  });

  readonly registryLastSync = new Gauge({
    name: 'waygate_registry_last_sync_timestamp_seconds',
    help: 'Unix time of the last successful read from a registry',
    labelNames: ['registry'] as const,
    aggregator: 'max',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    this.registry.registerMetric(this.requests as never);
    this.registry.registerMetric(this.requestDuration as never);
    this.registry.registerMetric(this.upstreamAttempts as never);
    this.registry.registerMetric(this.retries as never);
    this.configVersion.set(1);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'waygate_' }); // waygate_process_*, waygate_nodejs_*
  }

  /** Marks one successful registry read. */
  registrySynced(registry: string, at = Date.now()): void {
    this.registrySyncs.inc({ registry });
    this.registryLastSync.set({ registry }, at / 1000);
  }
}

