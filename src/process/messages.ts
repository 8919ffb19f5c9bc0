import type { GatewayConfig } from '../config/types.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import type { RoutePlan } from '../routing/route-plan.ts';

/** One registry's instances for one watch key, as the primary last saw them. */
export interface ServiceUpdate {
  readonly registry: string;
  readonly watchKey: string;
  readonly snapshot: ServiceSnapshot;
}

/** Primary → worker. Sent with the 'advanced' (structured clone) serialization. */
export type ToWorker =
  /** Everything a worker needs before it opens the public port. */
  | {
      readonly waygate: 'init';
      /** The config the gateway started with: listener, certificates and TLS files are read from it, as in one process. */
      readonly bootConfig: GatewayConfig;
      /** The config served now (after reloads). */
      readonly config: GatewayConfig;
      readonly plans: readonly RoutePlan[];
      readonly services: readonly ServiceUpdate[];
    }
  | ({ readonly waygate: 'service' } & ServiceUpdate)
  | { readonly waygate: 'apply'; readonly config: GatewayConfig; readonly plans: readonly RoutePlan[]; readonly reopenLogs: boolean }
  | { readonly waygate: 'ask'; readonly id: number; readonly what: 'metrics' | 'describe' }
  /** Stop accepting, finish what is in flight (up to timeoutMs), exit 0. */
  | { readonly waygate: 'drain'; readonly timeoutMs: number };

/** Worker → primary. */
export type ToPrimary =
  /** Its message listener is attached: the primary may send init now. */
  | { readonly waygate: 'hello' }
  | { readonly waygate: 'listening'; readonly address: string }
  | { readonly waygate: 'answer'; readonly id: number; readonly body: unknown }
  /** The worker could not start (bad certificate file, port taken); the primary gives up. */
  | { readonly waygate: 'failed'; readonly error: string };

/** Ours, not some other library's IPC traffic: every waygate message carries its kind in `waygate`. */
function isWaygateMessage(message: unknown): boolean {
  return typeof message === 'object' && message !== null && typeof (message as { waygate?: unknown }).waygate === 'string';
}

export const isToWorker = isWaygateMessage as (message: unknown) => message is ToWorker;
export const isToPrimary = isWaygateMessage as (message: unknown) => message is ToPrimary;

/** One registry's watch key, as the primary and the workers key their service snapshots. */
export function serviceKey(registry: string, watchKey: string): string {
  return `${registry}\u0000${watchKey}`;
}

/** The service keys some plan's pools read. */
export function usedServiceKeys(plans: readonly RoutePlan[]): Set<string> {
  return new Set(plans.flatMap((plan) => plan.backends.map(({ spec }) => serviceKey(spec.registry, spec.watchKey))));
}
