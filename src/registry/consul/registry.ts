import type { ConsulConfig } from '../../config/types.ts';
import type { Logger } from '../../observability/logger.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { Instance, Registry, RegistryStatus, ServiceFreshness, ServiceSnapshot } from '../types.ts';
import { type ConsulAnswer, ConsulCallError, type ConsulClient, MAX_CONSUL_CONNECTIONS } from './client.ts';
import { BlockingLoop, NON_BLOCKING_TIMEOUT_MS, type Sleeper, sleep } from './loop.ts';
import { digestHealthState, parseCatalogServices, parseHealthService } from './parse.ts';
import { readSavedState, writeSavedState } from './snapshot-file.ts';
import { parseWatchKey } from '../watch-key.ts';

export { parseWatchKey, watchKey } from '../watch-key.ts';

/** Up to this many routed services, each gets its own blocking query (exact per-service index). */
export const PER_SERVICE_WATCH_LIMIT = 24;
/** Re-reads that may run at once in change-feed mode; with the two feeds this stays under MAX_CONSUL_CONNECTIONS. */
export const REREAD_CONCURRENCY = 16;
/** The change feed asks at most 5 times back to back, then once per 200 ms, however fast the cluster changes. */
export const FEED_RATE_LIMIT = { burst: 5, intervalMs: 200 };
/** Change-feed mode re-reads every service this often, catching instances that have no checks at all. */
export const FULL_RESYNC_MS = 5 * 60_000;
/** Change-feed mode re-reads every service at most this often when the catalog moves without a visible change. */
export const CATALOG_RESYNC_WINDOW_MS = 10_000;
/** Change-feed mode re-reads services of other datacenters this often (the local feed cannot see them). */
export const REMOTE_POLL_MS = 5_000;

interface ServiceState {
  synced: boolean;
  lastSyncAt: number | undefined;
  lastError: string | undefined;
  denied: boolean;
  /** The failure kind this service's reads are in, so each service logs its own state changes only. */
  outage: string | undefined;
  /** Reasons of the entries skipped in the last answer, to log only when they change. */
  rejected: string;
  /** From the last answer: X-Consul-LastContact (ms) and X-Consul-KnownLeader. */
  lastContactMs: number | undefined;
  knownLeader: boolean | undefined;
  /** Serving from the snapshot file until Consul answers for this service. */
  stale: boolean;
}

/** The snapshot file is rewritten at most this often. */
export const SNAPSHOT_WRITE_INTERVAL_MS = 1_000;

export type WatchMode = 'per-service' | 'change-feed';

export interface ConsulRegistryOptions {
  readonly watchCatalog?: boolean;
  readonly perServiceLimit?: number;
  /** Every pause between Consul calls (rate limit, back-off) goes through this; default a timer. */
  readonly sleep?: Sleeper;
}

/**
 * Instances from Consul's health API. Few services: one blocking query each. Many services: one
 * cluster-wide change feed (/v1/health/state/any) plus /v1/catalog/services, whose changes trigger
 * targeted re-reads of just the services that changed, with a concurrency cap.
 */
export class ConsulRegistry implements Registry {
  readonly name = 'consul';
  private readonly tracked = new Set<string>();
  private readonly snapshots = new Map<string, ServiceSnapshot>();
  private readonly states = new Map<string, ServiceState>();
  private readonly listeners: Array<(service: string) => void> = [];
  private readonly catalogListeners: Array<(services: Map<string, string[]>) => void> = [];
  private loops = new Map<string, BlockingLoop>();
  private mode: WatchMode | undefined;
  private started = false;
  private stopController = new AbortController();
  private outage: string | undefined;
  private lastSyncAt: number | undefined;
  private lastError: string | undefined;
  private catalogLoop: BlockingLoop | undefined;
  // change-feed mode
  private digests = new Map<string, string>();
  private nodeDigests = new Map<string, string>();
  private servicesOnNode = new Map<string, Set<string>>();
  private pending = new Set<string>();
  private rereadsRunning = 0;
  private resyncTimer: NodeJS.Timeout | undefined;
  private remoteTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: ConsulConfig,
    private readonly client: ConsulClient,
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
    private readonly options: ConsulRegistryOptions = {},
  ) {
    this.sleep = options.sleep ?? sleep;
  }

  private readonly sleep: Sleeper;

  get watchMode(): WatchMode | undefined {
    return this.mode;
  }

  /** Sets the services routes need; starts or stops watches to match. */
  track(services: Iterable<string>): void {
    const next = new Set(services);
    let changed = next.size !== this.tracked.size;
    for (const name of next) if (!this.tracked.has(name)) changed = true;
    if (!changed) return;
    for (const name of [...this.tracked]) {
      if (!next.has(name)) {
        this.tracked.delete(name);
        this.states.delete(name);
        this.snapshots.delete(name);
        this.digests.delete(name);
        this.pending.delete(name);
        void this.loops.get(name)?.stop();
        this.loops.delete(name);
      }
    }
    for (const name of next) {
      if (!this.tracked.has(name)) {
        this.tracked.add(name);
        this.states.set(name, { synced: false, lastSyncAt: undefined, lastError: undefined, denied: false, outage: undefined, rejected: '', lastContactMs: undefined, knownLeader: undefined, stale: false });
      }
    }
    if (this.started) this.reconcileWatches();
  }

  async start(): Promise<void> {
    this.restoreSnapshotFile();
    this.started = true;
    if (this.options.watchCatalog) this.startCatalogLoop();
    this.reconcileWatches();
  }

  async stop(): Promise<void> {
    this.started = false;
    this.stopController.abort();
    clearInterval(this.resyncTimer);
    clearInterval(this.remoteTimer);
    clearTimeout(this.catalogResync);
    if (this.snapshotTimer) {
      clearTimeout(this.snapshotTimer);
      this.snapshotTimer = undefined;
      this.saveSnapshotFile();
    }
    await Promise.all([...this.loops.values()].map((loop) => loop.stop()));
    await this.catalogLoop?.stop();
    this.loops.clear();
  }

  status(): RegistryStatus {
    let synced = true;
    for (const state of this.states.values()) if (!state.synced) synced = false;
    if (this.options.watchCatalog && this.catalogLoop && this.catalogSyncs === 0) synced = false;
    return { name: this.name, synced, lastSyncAt: this.lastSyncAt, lastError: this.lastError };
  }

  serviceStatus(service: string): ServiceFreshness | undefined {
    const state = this.states.get(service);
    return state && { lastSyncAt: state.lastSyncAt, lastError: state.lastError, lastContactMs: state.lastContactMs, knownLeader: state.knownLeader, stale: state.stale };
  }

  snapshot(service: string): ServiceSnapshot | undefined {
    return this.snapshots.get(service);
  }

  onChange(listener: (service: string) => void): void {
    this.listeners.push(listener);
  }

  /** Called with the whole catalog (`name -> tags`) whenever it changes; used by tag routes. */
  onCatalog(listener: (services: Map<string, string[]>) => void): void {
    this.catalogListeners.push(listener);
  }

  private catalogSyncs = 0;
  private catalogResync: NodeJS.Timeout | undefined;
  private lastCatalogResync = 0;

  /** Coalesced full re-read after an unexplained catalog change: bounded Consul load, changes seen within the window. */
  private scheduleCatalogResync(): void {
    if (this.catalogResync) return;
    const wait = Math.max(0, this.lastCatalogResync + CATALOG_RESYNC_WINDOW_MS - Date.now());
    this.catalogResync = setTimeout(() => {
      this.catalogResync = undefined;
      this.lastCatalogResync = Date.now();
      for (const service of this.tracked) this.enqueue(service);
    }, wait);
    this.catalogResync.unref();
  }
  /** Tags per tracked service as the catalog last listed them (change-feed mode). */
  private readonly catalogTags = new Map<string, string>();

  private reconcileWatches(): void {
    const wanted: WatchMode = this.tracked.size > (this.options.perServiceLimit ?? PER_SERVICE_WATCH_LIMIT) ? 'change-feed' : 'per-service';
    if (wanted !== this.mode) {
      for (const loop of this.loops.values()) void loop.stop();
      this.loops.clear();
      clearInterval(this.resyncTimer);
      clearInterval(this.remoteTimer);
      this.mode = wanted;
      this.logger.info({ mode: wanted, services: this.tracked.size }, `consul: watching ${this.tracked.size} services in ${wanted} mode`);
      if (wanted === 'change-feed') this.startChangeFeed();
    }
    if (this.mode === 'per-service') {
      for (const service of this.tracked) if (!this.loops.has(service)) this.startServiceLoop(service);
    } else {
      for (const service of this.tracked) if (!this.states.get(service)?.synced) this.enqueue(service);
    }
  }

  // ---- per-service mode -------------------------------------------------------------------------

  private startServiceLoop(service: string): void {
    const loop = new BlockingLoop({
      waitMs: this.config.waitMs,
      call: (query, timeoutMs, signal) => this.readService(service, query, timeoutMs, signal),
      sleep: this.sleep,
      hooks: {
        onData: (body, index) => {
          this.indexes.set(service, index);
          this.publish(service, body);
        },
        onSuccess: () => this.markSuccess(service),
        onError: (error) => this.markError(service, error),
      },
    });
    this.loops.set(service, loop);
    loop.start();
  }

  private async readService(service: string, query: { index?: string; wait?: string }, timeoutMs: number, signal?: AbortSignal) {
    const { name, datacenter } = parseWatchKey(service);
    // ?dc= is forwarded by the local agent to that datacenter's servers, blocking included (CONTRACT fact 27).
    const answer = await this.client.get(`/v1/health/service/${encodeURIComponent(name)}`, { passing: true, dc: datacenter, ...query }, timeoutMs, signal);
    this.noteLeaderContact(service, answer);
    return answer;
  }

  /** How fresh a (stale) read was: per service for /admin/routes, and the latest for the gauges. */
  private noteLeaderContact(service: string | undefined, answer: ConsulAnswer): void {
    const state = service === undefined ? undefined : this.states.get(service);
    if (state) {
      state.lastContactMs = answer.lastContactMs;
      state.knownLeader = answer.knownLeader;
    }
    if (answer.lastContactMs !== undefined) this.metrics.registryLastContact.set({ registry: this.name }, answer.lastContactMs / 1000);
    if (answer.knownLeader !== undefined) this.metrics.registryKnownLeader.set({ registry: this.name }, answer.knownLeader ? 1 : 0);
  }

  // ---- change-feed mode -------------------------------------------------------------------------

  private startChangeFeed(): void {
    const feed = new BlockingLoop({
      waitMs: this.config.waitMs,
      // The cluster-wide answer is large and changes often: coalesce bursts of changes (fact 21).
      rateLimit: FEED_RATE_LIMIT,
      call: async (query, timeoutMs, signal) => {
        const answer = await this.client.get('/v1/health/state/any', query, timeoutMs, signal);
        this.noteLeaderContact(undefined, answer);
        return answer;
      },
      sleep: this.sleep,
      hooks: {
        onData: (body) => this.onHealthState(body),
        onSuccess: () => this.markSuccess(undefined),
        onError: (error) => this.markError(undefined, error),
      },
    });
    this.loops.set('\0health-state', feed);
    feed.start();
    if (!this.catalogLoop) this.startCatalogLoop();
    this.resyncTimer = setInterval(() => {
      for (const service of this.tracked) this.enqueue(service);
    }, FULL_RESYNC_MS);
    // The local feed does not see other datacenters: their services are re-read on a short poll instead.
    this.remoteTimer = setInterval(() => {
      for (const key of this.tracked) if (parseWatchKey(key).datacenter !== undefined) this.enqueue(key);
    }, REMOTE_POLL_MS);
    this.remoteTimer.unref();
    this.resyncTimer.unref();
  }

  private onHealthState(body: unknown): void {
    const { perService, nodes } = digestHealthState(body, this.tracked);
    const changedNodes = new Set<string>();
    for (const [node, digest] of nodes) if (this.nodeDigests.get(node) !== digest) changedNodes.add(node);
    for (const node of this.nodeDigests.keys()) if (!nodes.has(node)) changedNodes.add(node);
    this.nodeDigests = nodes;
    for (const node of changedNodes) for (const service of this.servicesOnNode.get(node) ?? []) this.enqueue(service);
    for (const service of this.tracked) {
      const digest = perService.get(service) ?? '';
      if (this.digests.get(service) !== digest) {
        this.digests.set(service, digest);
        this.enqueue(service);
      }
    }
    const onNode = new Map<string, Set<string>>();
    for (const [service, digest] of perService) {
      for (const line of digest.split(';')) {
        const node = line.slice(0, line.indexOf('|'));
        (onNode.get(node) ?? onNode.set(node, new Set()).get(node)!).add(service);
      }
    }
    this.servicesOnNode = onNode;
  }

  private enqueue(service: string): void {
    if (!this.tracked.has(service)) return;
    this.pending.add(service);
    this.drainQueue();
  }

  /** Re-reads pending services, at most REREAD_CONCURRENCY at a time. */
  private drainQueue(): void {
    while (this.rereadsRunning < REREAD_CONCURRENCY && this.pending.size > 0 && this.started) {
      const service = this.pending.values().next().value as string;
      this.pending.delete(service);
      this.rereadsRunning += 1;
      void this.reread(service).finally(() => {
        this.rereadsRunning -= 1;
        this.drainQueue();
      });
    }
  }

  private async reread(service: string): Promise<void> {
    try {
      const answer = await this.readService(service, {}, NON_BLOCKING_TIMEOUT_MS, this.stopController.signal);
      this.publish(service, answer.body);
      this.markSuccess(service);
    } catch (error) {
      if (!this.started) return;
      const failure = error instanceof ConsulCallError ? error : new ConsulCallError('bad-answer', (error as Error).message);
      this.markError(service, failure);
      // Try again later; the last known instances keep serving meanwhile.
      if (await this.sleep(failure.kind === 'permission-denied' ? 10_000 : 1_000, this.stopController.signal, failure.kind)) this.enqueue(service);
    }
  }

  // ---- catalog (tag routes, new services) -------------------------------------------------------

  private startCatalogLoop(): void {
    this.catalogLoop = new BlockingLoop({
      waitMs: this.config.waitMs,
      call: (query, timeoutMs, signal) => this.client.get('/v1/catalog/services', query, timeoutMs, signal),
      sleep: this.sleep,
      hooks: {
        onData: (body) => {
          const services = parseCatalogServices(body);
          this.catalogSyncs += 1;
          if (this.mode === 'change-feed') {
            let explained = false;
            for (const service of this.tracked) {
              // New services, and tag changes, which the checks feed never shows (CONTRACT fact 28).
              const tags = (services.get(service) ?? []).join(',');
              if ((!this.snapshots.has(service) && services.has(service)) || (this.catalogTags.has(service) && this.catalogTags.get(service) !== tags)) {
                this.enqueue(service);
                explained = true;
              }
              this.catalogTags.set(service, tags);
            }
            // The catalog moved with no visible difference: some registration changed its address, port,
            // weight or meta (fact 28), which no feed names. Re-read everything, at most once per window.
            if (!explained && this.catalogSyncs > 1) this.scheduleCatalogResync();
          }
          for (const listener of this.catalogListeners) listener(services);
        },
        onSuccess: () => this.markSuccess(undefined),
        onError: (error) => this.markError(undefined, error),
      },
    });
    this.catalogLoop.start();
  }

  // ---- snapshot file (cold start while Consul is down) -------------------------------------------

  private snapshotTimer: NodeJS.Timeout | undefined;
  private lastSnapshotWrite = 0;
  private readonly indexes = new Map<string, bigint>();

  /** Serves the services the file knows until Consul answers for them; a bad file is a warning, not an error. */
  private restoreSnapshotFile(): void {
    const path = this.config.snapshotFile;
    if (!path) return;
    const saved = readSavedState(path, { address: this.client.address, datacenter: this.config.datacenter });
    if (typeof saved === 'string') {
      if (!saved.startsWith('cannot read') || !/ENOENT/.test(saved)) this.logger.warn({ file: path }, `consul: ignoring the snapshot file: ${saved}`);
      return;
    }
    let restored = 0;
    for (const service of this.tracked) {
      const entry = saved.services[service];
      const state = this.states.get(service);
      if (!entry || !state || this.snapshots.has(service)) continue;
      this.snapshots.set(service, { name: service, instances: entry.instances, unhealthy: [] });
      this.indexes.set(service, BigInt(entry.index));
      state.synced = true;
      state.stale = true;
      restored += 1;
      for (const listener of this.listeners) listener(service);
    }
    this.logger.info({ file: path, services: restored, savedAt: saved.savedAt }, `consul: serving ${restored} services from the snapshot file until Consul answers`);
  }

  /** Coalesces writes: at most one per SNAPSHOT_WRITE_INTERVAL_MS, always with the latest state. */
  private scheduleSnapshotWrite(): void {
    if (!this.config.snapshotFile || this.snapshotTimer) return;
    const wait = Math.max(0, this.lastSnapshotWrite + SNAPSHOT_WRITE_INTERVAL_MS - Date.now());
    this.snapshotTimer = setTimeout(() => {
      this.snapshotTimer = undefined;
      this.saveSnapshotFile();
    }, wait);
    this.snapshotTimer.unref();
  }

  private saveSnapshotFile(): void {
    const path = this.config.snapshotFile;
    if (!path) return;
    this.lastSnapshotWrite = Date.now();
    const services: Record<string, { index: string; instances: readonly Instance[] }> = {};
    // Services still stale keep the file's entry: a restart during the catch-up must not shrink the last good state.
    for (const [name, snapshot] of this.snapshots) {
      Object.defineProperty(services, name, { value: { index: String(this.indexes.get(name) ?? 0n), instances: snapshot.instances }, enumerable: true, writable: true, configurable: true });
    }
    try {
      writeSavedState(path, { address: this.client.address, datacenter: this.config.datacenter ?? null, savedAt: new Date().toISOString(), services });
    } catch (error) {
      this.logger.error({ file: path, err: (error as Error).message }, 'consul: cannot write the snapshot file');
    }
  }

  // ---- shared bookkeeping -----------------------------------------------------------------------

  private publish(service: string, body: unknown): void {
    if (!this.tracked.has(service)) return;
    const { instances, rejected } = parseHealthService(body, service);
    if (rejected.length > 0) this.metrics.registryRejectedEntries.inc({ registry: this.name }, rejected.length);
    const state = this.states.get(service);
    const reasons = rejected.join('\n');
    if (state && state.rejected !== reasons) {
      state.rejected = reasons;
      if (rejected.length > 0) this.logger.warn({ service, skipped: rejected }, `consul: skipped ${rejected.length} malformed entr${rejected.length === 1 ? 'y' : 'ies'} of service "${service}"; serving the others`);
    }
    if (state?.stale) {
      state.stale = false;
      this.logger.info({ service }, `consul: service "${service}" read from Consul; no longer stale`);
      this.scheduleSnapshotWrite();
    }
    const previous = this.snapshots.get(service);
    if (previous && sameInstances(previous.instances, instances)) return;
    this.snapshots.set(service, { name: service, instances, unhealthy: [] });
    this.scheduleSnapshotWrite();
    for (const listener of this.listeners) listener(service);
  }

  private markSuccess(service: string | undefined): void {
    const now = Date.now();
    this.lastSyncAt = now;
    this.lastError = undefined;
    this.metrics.registrySynced(this.name, now);
    if (service === undefined) {
      if (this.outage !== undefined) {
        this.logger.warn({ registry: this.name, after: this.outage }, 'consul: reachable again; catching up');
        this.outage = undefined;
      }
      return;
    }
    const state = this.states.get(service);
    if (!state) return;
    if (state.outage !== undefined) {
      this.logger.warn({ registry: this.name, service, after: state.outage }, `consul: service "${service}" readable again`);
      state.outage = undefined;
    }
    if (state.denied) this.logger.warn({ service }, `consul: access to service "${service}" allowed again`);
    state.synced = true;
    state.denied = false;
    state.lastSyncAt = now;
    state.lastError = undefined;
  }

  private markError(service: string | undefined, error: ConsulCallError): void {
    this.metrics.registryErrors.inc({ registry: this.name });
    this.lastError = error.message;
    const state = service === undefined ? undefined : this.states.get(service);
    if (state) state.lastError = error.message;
    if (error.kind === 'permission-denied') {
      if (state && !state.denied) {
        state.denied = true;
        this.logger.error({ service, err: error.message }, `consul: permission denied reading service "${service}"; check the ACL token (retrying slowly)`);
      } else if (!state && this.outage !== 'permission-denied') {
        this.outage = 'permission-denied';
        this.logger.error({ err: error.message }, 'consul: permission denied; check the ACL token (retrying slowly)');
      }
      return;
    }
    if (state) {
      if (state.outage !== error.kind) {
        state.outage = error.kind;
        this.logger.error({ registry: this.name, service, kind: error.kind, err: error.message }, `consul: cannot read service "${service}"; serving its last known instances`);
      }
      return;
    }
    if (this.outage !== error.kind) {
      this.outage = error.kind;
      this.logger.error({ registry: this.name, kind: error.kind, err: error.message }, 'consul: unavailable; serving the last known instances');
    }
  }

  /** For tests and benchmarks: connections this registry may hold at most right now. */
  get connectionBudget(): number {
    return this.mode === 'change-feed' ? 2 + REREAD_CONCURRENCY : this.tracked.size + (this.catalogLoop ? 1 : 0);
  }
}

function sameInstances(a: readonly Instance[], b: readonly Instance[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.id !== y.id || x.url !== y.url || x.weight !== y.weight || x.tags.join(',') !== y.tags.join(',')) return false;
    if (JSON.stringify(x.meta ?? {}) !== JSON.stringify(y.meta ?? {})) return false;
  }
  return true;
}

export { MAX_CONSUL_CONNECTIONS };
