/**
 * Quiet readers of raw YAML values. The schema has already reported values of the wrong shape, so
 * these return undefined (the caller then uses a default) instead of reporting again.
 */

export type Obj = Record<string, unknown>;

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const asObj = (v: unknown): Obj => (isObject(v) ? v : {});
export const asString = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
export const asBool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
export const asInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : undefined;
export const asStringList = (v: unknown): string[] | undefined =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : undefined;

/** A mapping of strings (route `meta`), or undefined when absent or empty. */
export function stringMap(value: unknown): Record<string, string> | undefined {
  if (!isObject(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) if (typeof item === 'string') setOwn(out, key, item);
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Assigns an own property, even for names like "__proto__" that a plain `obj[name] =` would turn into a prototype change. */
export function setOwn<V>(target: Record<string, V>, name: string, value: V): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}

/** `{ key: value }` when the value is set, else nothing, so resolved objects carry no undefined keys. */
export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** Drops undefined-valued keys so optional fields are absent rather than present-but-undefined. */
export function compact<T extends object>(value: T): T {
  for (const k of Object.keys(value) as (keyof T)[]) if (value[k] === undefined) delete value[k];
  return value;
}

/** http(s) origin with no path/query/credentials; returns the normalised origin or undefined. */
export function normaliseOrigin(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(raw)) return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  return url.origin;
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Addresses that mean "every interface": fine to listen on, not to connect to or to advertise. */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);

export function isWildcardHost(host: string): boolean {
  return WILDCARD_HOSTS.has(host);
}
