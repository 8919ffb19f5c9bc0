/**
 * What changed between two resolved configs, named the way the YAML names it (`server.headersTimeout`,
 * `routes[2].timeout`), and which of those changes a running gateway cannot apply without a restart.
 */
import { isDeepStrictEqual } from 'node:util';
import { yamlKeysOf } from './field-kinds.ts';
import { FIELD_TABLES } from './fields.ts';
import { formatPath, type Segment } from './positions.ts';
import type { GatewayConfig } from './types.ts';
import { isObject } from './values.ts';

export interface ConfigDiff {
  /** Every key whose value differs, in config order. A list of scalars counts as one value; lists of mappings are compared item by item. */
  readonly changed: readonly string[];
  /** The changed keys that only take effect after a restart (see RESTART_ONLY). */
  readonly restartRequired: readonly string[];
  /** The changed keys a reload applies. */
  readonly live: readonly string[];
}

/**
 * Sections a running gateway cannot change in place: its listeners and process count (`server`, with
 * `server.workers`), the admin listener, the Consul and etcd clients' connections and identities, and
 * the access log destination. Routes, defaults, static services and shutdown timing are applied live.
 */
export const RESTART_ONLY: readonly (readonly string[])[] = [['server'], ['admin'], ['registry', 'consul'], ['registry', 'etcd'], ['accessLog']];

const YAML_KEYS = yamlKeysOf(FIELD_TABLES);
/** Mappings whose keys are names the user chose (services, header names, meta); never renamed. */
const USER_KEYED = new Set(['services', 'headers', 'meta']);

export function diffConfig(old: GatewayConfig, next: GatewayConfig): ConfigDiff {
  const paths: Segment[][] = [];
  collectChanges(old, next, [], false, paths);
  const restartRequired = paths.filter(isRestartOnly);
  return {
    changed: paths.map(formatPath),
    restartRequired: restartRequired.map(formatPath),
    live: paths.filter((p) => !isRestartOnly(p)).map(formatPath),
  };
}

/**
 * Keys inside live sections that are still read only once, at start: a static service's TLS files
 * (its CA is loaded when the listener's upstream profiles are made). Reported, never copied back.
 */
const READ_AT_START: readonly (readonly string[])[] = [['registry', 'static', 'services', '*', 'tls']];

export function isRestartOnly(path: readonly Segment[]): boolean {
  return [...RESTART_ONLY, ...READ_AT_START].some((section) => section.every((seg, i) => (seg === '*' ? path[i] !== undefined : path[i] === seg)));
}

function collectChanges(a: unknown, b: unknown, path: Segment[], userKeyed: boolean, out: Segment[][]): void {
  if (isDeepStrictEqual(a, b)) return;
  if (isObject(a) && isObject(b)) {
    for (const key of keysInOrder(a, b)) {
      const name = userKeyed ? key : YAML_KEYS.get(key) ?? key;
      collectChanges(a[key], b[key], [...path, name], !userKeyed && USER_KEYED.has(key), out);
    }
  } else if (Array.isArray(a) && Array.isArray(b) && (a.some(isObject) || b.some(isObject))) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) collectChanges(a[i], b[i], [...path, i], false, out);
  } else {
    out.push(path);
  }
}

/** The keys of both, each once: a's in its order, with keys only b has placed after b's preceding key. */
function keysInOrder(a: object, b: object): string[] {
  const keys = Object.keys(a);
  let at = 0;
  for (const key of Object.keys(b)) {
    const found = keys.indexOf(key);
    if (found >= 0) at = found + 1;
    else keys.splice(at++, 0, key);
  }
  return keys;
}
