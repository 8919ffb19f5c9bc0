import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../config/types.ts';
import { loadCertificate } from '../proxy/tls-termination.ts';
import { UpstreamTlsProfiles } from '../proxy/upstream-tls-profiles.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import { sortRoutes } from '../routing/match.ts';
import type { RoutePlan } from '../routing/route-plan.ts';
import { type Aggregation, mergeExpositions, monotonicFamilies } from './merge-metrics.ts';
import { mergeTrafficViews } from './merge-views.ts';
import { isToPrimary, type ServiceUpdate, serviceKey, type ToPrimary, type ToWorker, usedServiceKeys } from './messages.ts';
import type { TrafficPlane, TrafficView } from './traffic-plane.ts';

/** A worker that does not answer a metrics or routes question in this time is left out of the answer. */
const ASK_TIMEOUT_MS = 5_000;
/** Past the drain timeout, a worker that still has not exited is killed. */
const DRAIN_GRACE_MS = 2_000;
/** Replacements of workers that die at once are spaced this far apart, so a crash loop does not spin. */
const RESPAWN_BACKOFF_MS = 1_000;

type WorkerPhase = 'booting' | 'initialised' | 'listening';

interface WorkerSlot {
  readonly worker: Worker;
  phase: WorkerPhase;
  readonly exited: Promise<void>;
}

export interface WorkerClusterOptions {
  readonly count: number;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
}

/**
 * The traffic plane of a primary process: N workers serve the public port, each with its own pools
 * built from the plans and registry snapshots this side sends. A worker gets the whole current state
 * before it opens the port, and a dead worker is replaced at once.
 */
export class WorkerCluster implements TrafficPlane {
  readonly processCount: number;
  private config: GatewayConfig;
  private plans: readonly RoutePlan[] = [];
  private readonly services = new Map<string, ServiceUpdate>();
  private readonly slots = new Map<number, WorkerSlot>();
  private address = '';
  private stopping = false;
  private started = false;
  private lastDeathAt = 0;
  private nextAskId = 1;
  /** Questions waiting for a worker's answer; a worker that exits answers its own with undefined. */
  private readonly answers = new Map<number, { readonly workerId: number; readonly resolve: (body: unknown) => void }>();
  private startup: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** Each worker's last /metrics answer: stands in when it is late, and is kept when it dies. */
  private readonly lastMetrics = new Map<number, string>();
  /** The counters and histograms of workers that are gone, so the gateway's sums never go backwards. */
  private retiredMetrics = '';

  /** What a replacement worker is built from, so every worker reads the same files a single process would have. */
  private readonly bootConfig: GatewayConfig;

  constructor(config: GatewayConfig, private readonly options: WorkerClusterOptions) {
    this.config = config;
    this.bootConfig = config;
    this.processCount = options.count;
    // The workers read these files; reading them here first makes a bad one stop the start before anything listens, as in one process.
    if (config.server.tls) loadCertificate(config.server.tls);
    UpstreamTlsProfiles.load(config, options.logger.child({}, { level: 'error' })); // its warnings come from the workers that use it
  }

  serviceChanged(registry: string, watchKey: string, snapshot: ServiceSnapshot): void {
    const update = { registry, watchKey, snapshot };
    this.services.set(serviceKey(registry, watchKey), update);
    this.broadcast({ waygate: 'service', ...update });
  }

  apply(config: GatewayConfig, plans: readonly RoutePlan[], options: { readonly reopenLogs?: boolean } = {}): void {
    this.config = config;
    this.plans = plans;
    // Only what the routes use is kept (and sent to new workers); the gateway re-sends a key that comes back.
    const used = usedServiceKeys(plans);
    for (const key of this.services.keys()) if (!used.has(key)) this.services.delete(key);
    this.broadcast({ waygate: 'apply', config, plans, reopenLogs: options.reopenLogs ?? false });
  }

  /** Forks every worker; resolves once all of them listen, rejects if one cannot start. */
  async listen(): Promise<void> {
    const extension = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    cluster.setupPrimary({ exec: fileURLToPath(new URL(`./worker-main.${extension}`, import.meta.url)), args: [], serialization: 'advanced' });
    const ready = new Promise<void>((resolve, reject) => { this.startup = { resolve, reject }; });
    for (let i = 0; i < this.processCount; i++) this.fork();
    await ready;
    this.started = true;
  }

  notReadyReason(): string | undefined {
    for (const slot of this.slots.values()) if (slot.phase === 'listening') return undefined;
    return 'no worker process is serving';
  }

  /** Tells every worker to drain and waits for all of them to exit; stragglers are killed. */
  async drain(timeoutMs: number): Promise<void> {
    this.stopping = true;
    if (!this.started) this.startup?.reject(new Error('the gateway was stopped while its workers were starting'));
    const exits = [...this.slots.values()].map((slot) => slot.exited);
    this.broadcast({ waygate: 'drain', timeoutMs }, true);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), timeoutMs + DRAIN_GRACE_MS); });
    const result = await Promise.race([Promise.all(exits).then(() => 'done' as const), late]);
    clearTimeout(timer);
    if (result === 'late') {
      this.options.logger.warn('shutdown: workers still running after the drain timeout; killing them');
      await this.close();
    }
  }

  async close(): Promise<void> {
    this.stopping = true;
    if (!this.started) this.startup?.reject(new Error('the gateway was stopped while its workers were starting'));
    const exits = [...this.slots.values()].map((slot) => slot.exited);
    for (const slot of this.slots.values()) slot.worker.process.kill('SIGKILL');
    await Promise.all(exits);
  }

  /** Workers send their pools; the routes, in match order, are known here (the plans they were sent). */
  async describe(): Promise<TrafficView> {
    const views = (await this.askAll('describe')).map(([, view]) => view).filter((view): view is TrafficView => typeof view === 'object' && view !== null);
    return { routes: sortRoutes(this.plans.map((plan) => plan.route)), pools: mergeTrafficViews(views).pools };
  }

  /** This process's series (registries, reloads) and every worker's, summed by each metric's aggregator. */
  async metricsText(): Promise<string> {
    const { registry } = this.options.metrics;
    const own = await registry.metrics();
    const answers = await this.askAll('metrics');
    const workers: string[] = [];
    for (const [workerId, answer] of answers) {
      if (typeof answer === 'string') this.lastMetrics.set(workerId, answer);
      const text = typeof answer === 'string' ? answer : this.lastMetrics.get(workerId);
      if (text !== undefined) workers.push(text);
    }
    return mergeExpositions([own, this.retiredMetrics, ...workers], this.aggregationOf);
  }

  /** Every process registers the same metrics, so this one's say how each family combines. */
  private readonly aggregationOf = (family: string): Aggregation =>
    (this.options.metrics.registry.getSingleMetric(family) as { aggregator?: Aggregation } | undefined)?.aggregator ?? 'sum';

  /** A dead worker's counts up to its last scrape stay in the sums. */
  private retireMetricsOf(workerId: number): void {
    const last = this.lastMetrics.get(workerId);
    this.lastMetrics.delete(workerId);
    if (last !== undefined) this.retiredMetrics = mergeExpositions([this.retiredMetrics, monotonicFamilies(last)], () => 'sum');
  }

  get publicAddress(): string {
    return this.address;
  }

  private fork(): void {
    const worker = cluster.fork();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const slot: WorkerSlot = { worker, phase: 'booting', exited };
    this.slots.set(worker.id, slot);
    worker.on('message', (message: unknown) => {
      if (isToPrimary(message)) this.onMessage(slot, message);
    });
    worker.on('error', (error) => this.options.logger.warn({ worker: worker.id, err: error.message }, 'worker channel error'));
    worker.once('exit', (code, signal) => this.onExit(slot, code, signal));
  }

  private onMessage(slot: WorkerSlot, message: ToPrimary): void {
    switch (message.waygate) {
      case 'hello':
        // A worker that boots while the gateway stops is told to stop instead (the drain broadcast may have missed it).
        if (this.stopping) return this.sendTo(slot, { waygate: 'drain', timeoutMs: 0 });
        // The whole current state first: the worker opens the port only after it has a table.
        slot.phase = 'initialised';
        this.sendTo(slot, { waygate: 'init', bootConfig: this.bootConfig, config: this.config, plans: this.plans, services: [...this.services.values()] });
        return;
      case 'listening':
        slot.phase = 'listening';
        this.address ||= message.address;
        if (!this.started && [...this.slots.values()].every((candidate) => candidate.phase === 'listening')) this.startup?.resolve();
        return;
      case 'answer':
        this.answers.get(message.id)?.resolve(message.body);
        return;
      case 'failed':
        this.options.logger.error({ worker: slot.worker.id, err: message.error }, 'worker could not start');
        if (!this.started) this.startup?.reject(new Error(`worker could not start: ${message.error}`));
    }
  }

  private onExit(slot: WorkerSlot, code: number | null, signal: string | null): void {
    this.slots.delete(slot.worker.id);
    for (const pending of this.answers.values()) if (pending.workerId === slot.worker.id) pending.resolve(undefined);
    this.retireMetricsOf(slot.worker.id);
    if (this.stopping) return;
    if (!this.started) {
      this.startup?.reject(new Error(`worker ${slot.worker.id} exited during start (code ${code}, signal ${signal})`));
      return;
    }
    const now = Date.now();
    const delay = now - this.lastDeathAt < RESPAWN_BACKOFF_MS ? RESPAWN_BACKOFF_MS : 0;
    this.lastDeathAt = now;
    this.options.logger.warn({ worker: slot.worker.id, code, signal, restartInMs: delay }, 'worker died; starting a replacement');
    setTimeout(() => {
      if (!this.stopping) this.fork();
    }, delay).unref();
  }

  /** State goes only to workers that have had their init (a booting one gets everything in its init). */
  private broadcast(message: ToWorker, everyone = false): void {
    for (const slot of this.slots.values()) {
      if (everyone || slot.phase !== 'booting') this.sendTo(slot, message);
    }
  }

  private sendTo(slot: WorkerSlot, message: ToWorker): void {
    if (!slot.worker.isConnected()) return;
    slot.worker.send(message, (error) => {
      if (error) this.options.logger.debug({ worker: slot.worker.id, err: error.message }, 'message to worker not delivered');
    });
  }

  /** Asks every serving worker; each answer comes with the worker's id (undefined when it did not answer in time). */
  private async askAll(what: 'metrics' | 'describe'): Promise<Array<[number, unknown]>> {
    const listening = [...this.slots.values()].filter((slot) => slot.phase === 'listening');
    return Promise.all(listening.map((slot) => new Promise<[number, unknown]>((resolve) => {
      const id = this.nextAskId++;
      const timer = setTimeout(() => answer(undefined), ASK_TIMEOUT_MS);
      const answer = (body: unknown) => {
        clearTimeout(timer);
        this.answers.delete(id);
        resolve([slot.worker.id, body]);
      };
      this.answers.set(id, { workerId: slot.worker.id, resolve: answer });
      this.sendTo(slot, { waygate: 'ask', id, what });
    })));
  }
}
