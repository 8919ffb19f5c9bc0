import { diffConfig, RESTART_ONLY } from './diff.ts';
import type { GatewayConfig } from './types.ts';
import { isObject } from './values.ts';

/** Which restart-only keys differ between two configs, in config order (see RESTART_ONLY in diff.ts). */
export function restartRequired(running: GatewayConfig, next: GatewayConfig): string[] {
  return [...diffConfig(running, next).restartRequired];
}

/**
 * The config to run after a reload: the new file's live keys with the running restart-only ones, so
 * what is served always matches one consistent view and the difference is reported, not half-applied.
 */
export function applicableConfig(running: GatewayConfig, next: GatewayConfig): GatewayConfig {
  return RESTART_ONLY.reduce<GatewayConfig>((config, section) => withValueAt(config, section, valueAt(running, section)), next);
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), root);
}

/** A copy of `root` with `value` at `path` (absent when undefined); only the objects along the path are copied. */
function withValueAt<T>(root: T, path: readonly string[], value: unknown): T {
  const [key, ...rest] = path;
  if (key === undefined) return value as T;
  const copy: Record<string, unknown> = { ...(root as Record<string, unknown>) };
  const inner = rest.length === 0 ? value : withValueAt(copy[key], rest, value);
  if (inner === undefined) delete copy[key];
  else copy[key] = inner;
  return copy as T;
}
