import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Instance } from '../types.ts';

/** Bumped whenever the file's shape changes; a file of another version is ignored. */
const FORMAT_VERSION = 1;

/** The last good state of the watched services, as written to `snapshotFile`. */
export interface SavedState {
  readonly address: string;
  readonly datacenter: string | null;
  readonly savedAt: string;
  readonly services: Readonly<Record<string, { readonly index: string; readonly instances: readonly Instance[] }>>;
}

function isInstance(value: unknown): value is Instance {
  const v = value as Partial<Instance> | null;
  return typeof v === 'object' && v !== null && typeof v.id === 'string' && typeof v.url === 'string' && /^https?:\/\/[^/]+$/.test(v.url)
    && typeof v.weight === 'number' && v.weight >= 1 && Array.isArray(v.tags) && v.tags.every((tag) => typeof tag === 'string')
    && (v.meta === undefined || (typeof v.meta === 'object' && v.meta !== null && Object.values(v.meta).every((item) => typeof item === 'string')));
}

/**
 * Reads a snapshot file. Returns the state, or why it cannot be used (missing, corrupt, another
 * format version, or written for another Consul) so the caller can warn and start without it.
 */
export function readSavedState(path: string, expect: { address: string; datacenter: string | undefined }, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): SavedState | string {
  let text: string;
  try {
    text = readFile(path);
  } catch (error) {
    return `cannot read ${path}: ${(error as Error).message}`;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return `${path} is not valid JSON`;
  }
  const file = data as { version?: unknown; address?: unknown; datacenter?: unknown; savedAt?: unknown; services?: unknown };
  if (typeof file !== 'object' || file === null) return `${path} is not a snapshot`;
  if (file.version !== FORMAT_VERSION) return `${path} has format version ${JSON.stringify(file.version)}, expected ${FORMAT_VERSION}`;
  if (file.address !== expect.address || (file.datacenter ?? null) !== (expect.datacenter ?? null)) {
    return `${path} was written for ${String(file.address)} (datacenter ${String(file.datacenter)}), not ${expect.address}`;
  }
  if (typeof file.services !== 'object' || file.services === null || typeof file.savedAt !== 'string') return `${path} is not a snapshot`;
  const services: Record<string, { index: string; instances: Instance[] }> = {};
  for (const [name, entry] of Object.entries(file.services as Record<string, unknown>)) {
    const e = entry as { index?: unknown; instances?: unknown } | null;
    if (typeof e !== 'object' || e === null || typeof e.index !== 'string' || !/^\d+$/.test(e.index) || !Array.isArray(e.instances) || !e.instances.every(isInstance)) {
      return `${path}: service "${name}" is malformed`;
    }
    Object.defineProperty(services, name, { value: { index: e.index, instances: e.instances }, enumerable: true, writable: true, configurable: true });
  }
  return { address: file.address as string, datacenter: (file.datacenter as string | null) ?? null, savedAt: file.savedAt, services };
}

/** Writes the state atomically: a temporary file in the same directory, then a rename over the old one. */
export function writeSavedState(path: string, state: SavedState): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify({ version: FORMAT_VERSION, ...state }));
  renameSync(temporary, path);
}
