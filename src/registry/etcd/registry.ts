import type { EtcdConfig } from '../../config/types.ts';
import type { Logger } from '../../observability/logger.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import { Backoff } from '../consul/blocking.ts';
import { sleep } from '../consul/loop.ts';
import type { Instance, Registry, RegistryStatus, ServiceSnapshot } from '../types.ts';
import { EtcdCallError, type EtcdClient, type KeyValue, type WatchEvent } from './client.ts';
import { parseInstanceValue, splitKey } from './parse.ts';

/** While a watch is open, the endpoint is asked this often whether it still answers (a frozen or cut etcd sends nothing). */
export const PROBE_INTERVAL_MS = 5_000;
export const PROBE_TIMEOUT_MS = 3_000;

export interface EtcdRegistryOptions {
  /** Every back-off pause goes through this; default a timer. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<boolean>;
  readonly probeIntervalMs?: number;
  /** Back-off after a failed call: full jitter between half and all of a ceiling that doubles from base to max. */
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
}

/**
 * Instances from etcd keys `<prefix><service>/<instance id>`: the prefix is read once at one revision,
 * then watched from the revision after it. A cut watch resumes from the last revision seen; when that
 * revision has been compacted, the prefix is read again in full and replaces the table. While etcd is
 * unreachable the last table keeps serving.
 */
export class EtcdRegistry implements Registry {
  readonly name = 'etcd';
  /** service -> instance id -> instance: the watched prefix, and nothing else, held in memory. */
  private readonly table = new Map<string, Map<string, Instance>>();
  private readonly snapshots = new Map<string, ServiceSnapshot>();
  /** Keys whose value cannot serve, with the reason last logged for each. */
  private readonly rejected = new Map<string, string>();
  private readonly listeners: Array<(service: string) => void> = [];
  private readonly stopController = new AbortController();
  private readonly backoff: Backoff;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<boolean>;
  private running: Promise<void> | undefined;
  /** The last revision whose events are all applied; the watch resumes after it. */
  private revision = 0n;
  private synced = false;
  private lastSyncAt: number | undefined;
  private lastError: string | undefined;
  /** The failure kind etcd is in, so each state change is logged once (not each retry). */
  private outage: string | undefined;
  /** Full re-reads forced (compaction, reset) since a watch was last accepted. */
  private fullReadsInARow = 0;

  constructor(
    private readonly config: EtcdConfig,
    private readonly client: EtcdClient,
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
    private readonly options: EtcdRegistryOptions = {},
  ) {
    this.sleep = options.sleep ?? sleep;
    this.backoff = new Backoff(options.backoff?.baseMs ?? 200, options.backoff?.maxMs ?? 5_000);
  }

  async start(): Promise<void> {
    this.logger.info({ registry: this.name, endpoints: this.config.endpoints, prefix: this.config.prefix }, `etcd: reading and watching prefix ${this.config.prefix}`);
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.running;
  }

  status(): RegistryStatus {
    return { name: this.name, synced: this.synced, lastSyncAt: this.lastSyncAt, lastError: this.lastError };
  }

  snapshot(service: string): ServiceSnapshot | undefined {
    return this.snapshots.get(service);
  }

  onChange(listener: (service: string) => void): void {
    this.listeners.push(listener);
  }

  // ---- read, watch, resume ------------------------------------------------------------------------

  private async run(): Promise<void> {
    const signal = this.stopController.signal;
    let needRead = true;
    while (!signal.aborted) {
      try {
        if (needRead) {
          await this.readAll(signal);
          needRead = false;
        }
        await this.watchOnce(signal);
      } catch (error) {
        if (signal.aborted) return;
        const failure = error instanceof EtcdCallError ? error : new EtcdCallError('bad-answer', (error as Error).message, { cause: error });
        if (failure.kind === 'compacted' || failure.kind === 'reset') {
          // Events between our revision and the compaction point are gone: only a full read is exact.
          needRead = true;
          this.fullReadsInARow += 1;
          this.logger.warn({ registry: this.name, resumeFrom: String(this.revision + 1n), compactRevision: failure.compactRevision?.toString() }, `etcd: ${failure.message}; re-reading the prefix in full`);
          // At once the first time; should it repeat before a watch is accepted, with back-off.
          if (this.fullReadsInARow === 1) continue;
        } else {
          this.markError(failure);
          this.client.rotate();
        }
        if (!(await this.sleep(this.backoff.next(), signal))) return;
      }
    }
  }

  /** Reads the whole prefix at one revision and replaces the table with it. */
  private async readAll(signal: AbortSignal): Promise<void> {
    const { revision, kvs } = await this.client.readPrefix(this.config.prefix, signal);
    if (signal.aborted) return;
    const next = new Map<string, Map<string, Instance>>();
    const rejected = new Map<string, string>();
    for (const kv of kvs) {
      const parsed = this.parse(kv);
      if (typeof parsed === 'string') rejected.set(kv.key, parsed);
      else if (parsed) (next.get(parsed.service) ?? next.set(parsed.service, new Map()).get(parsed.service)!).set(parsed.instance.id, parsed.instance);
    }
    const changed = new Set([...this.table.keys(), ...next.keys()]);
    this.table.clear();
    for (const [service, instances] of next) this.table.set(service, instances);
    for (const key of this.rejected.keys()) if (!rejected.has(key)) this.rejected.delete(key);
    for (const [key, reason] of rejected) this.reject(key, reason);
    this.revision = revision;
    this.publish(changed);
    this.markSuccess();
    if (!this.synced) {
      this.synced = true;
      let instances = 0;
      for (const service of next.values()) instances += service.size;
      this.logger.info({ registry: this.name, services: next.size, instances, revision: String(revision) }, `etcd: read ${instances} instances of ${next.size} services at revision ${revision}; watching for changes`);
    } else {
      this.logger.info({ registry: this.name, services: next.size, revision: String(revision) }, `etcd: re-read the prefix at revision ${revision}; table replaced`);
    }
  }

  /** One watch from the revision after the last one applied; returns only by throwing. */
  private async watchOnce(stop: AbortSignal): Promise<never> {
    const attempt = new AbortController();
    const onStop = () => attempt.abort();
    stop.addEventListener('abort', onStop, { once: true });
    let probeFailure: EtcdCallError | undefined;
    let probing = false;
    const probe = setInterval(() => {
      if (probing) return;
      probing = true;
      this.client.probe(PROBE_TIMEOUT_MS, attempt.signal).then(
        () => { probing = false; },
        (error: unknown) => {
          probing = false;
          if (attempt.signal.aborted) return;
          probeFailure = error instanceof EtcdCallError ? error : new EtcdCallError('unreachable', String(error));
          attempt.abort();
        },
      );
    }, this.options.probeIntervalMs ?? PROBE_INTERVAL_MS);
    try {
      return await this.client.watch(this.config.prefix, this.revision + 1n, {
        onCreated: (current) => {
          // A store behind what we have applied was restored or replaced: the events we wait for would
          // never come (or be other keys' history). Only a full read is right.
          if (current > 0n && current < this.revision) throw new EtcdCallError('reset', `the store is at revision ${current}, behind the ${this.revision} already applied (restored or replaced)`);
          this.backoff.reset();
          this.fullReadsInARow = 0;
          this.markSuccess();
        },
        onEvents: (events) => this.apply(events),
      }, attempt.signal);
    } catch (error) {
      if (probeFailure && !stop.aborted) throw new EtcdCallError(probeFailure.kind, `etcd stopped answering while watching (${probeFailure.message})`, { cause: probeFailure });
      throw error;
    } finally {
      clearInterval(probe);
      stop.removeEventListener('abort', onStop);
      attempt.abort();
    }
  }

  /** Applies one batch of watch events; the services they touch are published once each. */
  private apply(events: readonly WatchEvent[]): void {
    const changed = new Set<string>();
    for (const event of events) {
      if (event.modRevision > this.revision) this.revision = event.modRevision;
      const parsed = event.type === 'DELETE' ? undefined : this.parse(event);
      const where = splitKey(this.config.prefix, event.key);
      if (typeof where !== 'string') {
        // The key stops serving whatever its new value is; a good value then serves again below.
        if (this.table.get(where.service)?.delete(where.id)) changed.add(where.service);
      }
      if (event.type === 'DELETE') {
        this.rejected.delete(event.key);
      } else if (typeof parsed === 'string') {
        this.reject(event.key, parsed);
      } else if (parsed) {
        this.rejected.delete(event.key);
        (this.table.get(parsed.service) ?? this.table.set(parsed.service, new Map()).get(parsed.service)!).set(parsed.instance.id, parsed.instance);
        changed.add(parsed.service);
      }
    }
    this.publish(changed);
    this.markSuccess();
  }

  /** The instance one key/value stands for, or why it cannot serve. */
  private parse(kv: KeyValue): { service: string; instance: Instance } | string | undefined {
    const where = splitKey(this.config.prefix, kv.key);
    if (typeof where === 'string') return where;
    const instance = parseInstanceValue(where.id, kv.value);
    return typeof instance === 'string' ? `${kv.key}: ${instance}` : { service: where.service, instance };
  }

  private reject(key: string, reason: string): void {
    this.metrics.registryRejectedEntries.inc({ registry: this.name });
    if (this.rejected.get(key) === reason) return;
    this.rejected.set(key, reason);
    this.logger.warn({ registry: this.name, key, reason }, `etcd: skipped malformed value (${reason}); the other instances keep serving`);
  }

  private publish(services: Iterable<string>): void {
    for (const service of services) {
      const instances = [...(this.table.get(service)?.values() ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const previous = this.snapshots.get(service);
      if (previous && digest(previous.instances) === digest(instances)) continue;
      if (instances.length === 0) this.table.delete(service);
      // An emptied service keeps an empty snapshot, so the pools that route to it empty too.
      this.snapshots.set(service, { name: service, instances, unhealthy: [] });
      for (const listener of this.listeners) listener(service);
    }
  }

  private markSuccess(): void {
    const now = Date.now();
    this.lastSyncAt = now;
    this.lastError = undefined;
    this.metrics.registrySynced(this.name, now);
    if (this.outage !== undefined) {
      this.logger.warn({ registry: this.name, after: this.outage, endpoint: this.client.endpoint, resumeFrom: String(this.revision + 1n) }, `etcd: reachable again; watching from revision ${this.revision + 1n}`);
      this.outage = undefined;
    }
  }

  private markError(error: EtcdCallError): void {
    this.metrics.registryErrors.inc({ registry: this.name });
    this.lastError = error.message;
    if (this.outage === error.kind) return;
    this.outage = error.kind;
    const what = this.synced ? 'serving the last known instances' : 'no instances yet';
    this.logger.error({ registry: this.name, kind: error.kind, err: error.message }, `etcd: unavailable (${error.kind}); ${what}; retrying with back-off`);
  }
}

function digest(instances: readonly Instance[]): string {
  return instances.map((instance) => `${instance.id} ${instance.url} ${instance.weight} ${instance.tags.join(',')}`).join('\n');
}
