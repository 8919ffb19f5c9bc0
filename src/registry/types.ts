/** One reachable copy of a service, as the registry reports it. */
export interface Instance {
  /** Stable identity within its service (static: the URL; Consul: Node/Service.ID). */
  readonly id: string;
  /** Origin to proxy to, e.g. http://10.0.0.7:8080 (no path). */
  readonly url: string;
  /** Relative load-balancing weight, >= 1. */
  readonly weight: number;
  readonly tags: readonly string[];
  /** Consul Service.Meta; absent for static instances. */
  readonly meta?: Readonly<Record<string, string>> | undefined;
}

/** What a registry knows of one service at one moment. */
export interface ServiceSnapshot {
  readonly name: string;
  /** Instances the registry considers healthy (passing checks). */
  readonly instances: readonly Instance[];
  /** Instances the registry knows but considers unhealthy (shown in /admin/routes and metrics). */
  readonly unhealthy: readonly Instance[];
}

/** Health and freshness of one registry backend, for /health/ready and /admin/routes. */
export interface RegistryStatus {
  readonly name: string;
  /** True once every watched service has been read successfully at least once. */
  readonly synced: boolean;
  readonly lastSyncAt: number | undefined;
  readonly lastError: string | undefined;
}

/** How fresh one service's data is; the leader fields come from Consul's stale-read headers. */
export interface ServiceFreshness {
  readonly lastSyncAt: number | undefined;
  readonly lastError: string | undefined;
  /** ms since the answering server last heard from the leader (X-Consul-LastContact). */
  readonly lastContactMs?: number | undefined;
  /** Whether the answering server knew a leader (X-Consul-KnownLeader). */
  readonly knownLeader?: boolean | undefined;
  /** Served from a snapshot file, not yet confirmed by the registry. */
  readonly stale?: boolean | undefined;
}

/** A source of instances. Implementations push snapshots; readers never wait on them. */
export interface Registry {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): RegistryStatus;
  /** Latest snapshot of a service, or undefined when this registry does not serve it. */
  snapshot(service: string): ServiceSnapshot | undefined;
  /** Called with the service name whenever its snapshot changes. */
  onChange(listener: (service: string) => void): void;
  /** Tells a discovering registry which services routes need (static registries ignore it). */
  track?(services: Iterable<string>): void;
  /** Freshness of one service, when the registry tracks it separately. */
  serviceStatus?(service: string): ServiceFreshness | undefined;
}
