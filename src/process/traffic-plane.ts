import type { GatewayConfig, RouteConfig } from '../config/types.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import type { RoutePlan } from '../routing/route-plan.ts';

/** One pool as /admin/routes shows it, without the registry's freshness (the control side adds that). */
export interface PoolView {
  readonly service: string;
  readonly watchKey: string;
  readonly datacenter: string | undefined;
  readonly registry: string;
  readonly subset: string;
  readonly instances: ReadonlyArray<Record<string, unknown>>;
}

export interface TrafficView {
  readonly routes: readonly RouteConfig[];
  readonly pools: readonly PoolView[];
}

/**
 * The part of the gateway that serves requests: pools, the routing table and the public listener.
 * The control side (config, registries, admin) drives it the same way whether it runs in this
 * process (LocalTraffic) or in worker processes (WorkerCluster).
 */
export interface TrafficPlane {
  /** Instances of one watch key changed in a registry. */
  serviceChanged(registry: string, watchKey: string, snapshot: ServiceSnapshot): void;
  /** A new config and its route plans; the table is swapped whole. */
  apply(config: GatewayConfig, plans: readonly RoutePlan[], options?: { readonly reopenLogs?: boolean }): void;
  /** Starts accepting on the public port; resolves once traffic can be served. */
  listen(): Promise<void>;
  /** Why traffic cannot be served right now, or undefined. */
  notReadyReason(): string | undefined;
  /** Stops accepting and lets requests in flight finish, for up to timeoutMs, then ends them. */
  drain(timeoutMs: number): Promise<void>;
  /** Frees everything (also after a failed start). */
  close(): Promise<void>;
  /** The routes served (in match order) and every pool they use, for /admin/routes. */
  describe(): Promise<TrafficView>;
  /** The metrics text for /metrics: this process's, or every process's summed. */
  metricsText(): Promise<string>;
  readonly publicAddress: string;
  /** How many processes serve traffic (1 without workers). */
  readonly processCount: number;
}
