/**
 * The vocabulary of the field table (fields.ts): a field is its JSON schema, a reader that turns a raw
 * YAML value into the resolved value, and its default. Because the schema and the reader come from the
 * same constructor call, a bound or a default is written once and validation and defaults agree.
 */
import type { SchemaObject } from 'ajv';
import { parseDuration } from './duration.ts';
import { parseSize } from './size.ts';
import { asBool, asInt, asObj, asString, asStringList, deepFreeze } from './values.ts';

export interface Field<T = unknown, S extends string = string> {
  /** Validates the raw YAML value (ajv, see schema.ts). */
  readonly schema: SchemaObject;
  /** The value in resolved units, or undefined when absent or invalid (the schema reports the latter). */
  readonly read: (raw: unknown) => T | undefined;
  readonly default?: T;
  /** Appended to the YAML key in the resolved config, so `timeout` (a duration) resolves to `timeoutMs`. */
  readonly suffix: S;
}

/** A field that always resolves to a value: the raw one when valid, else its default. */
export interface Defaulted<T = unknown, S extends string = string> extends Field<T, S> {
  readonly default: T;
}

/** A nested mapping whose keys are fields themselves; it resolves key by key. */
export interface Group<F extends Fields = Fields> extends Defaulted<Resolved<F>, ''> {
  readonly fields: F;
}

// `any` lets tables of differently typed fields share one record type; Resolved<> recovers each type.
export type Fields = { readonly [key: string]: Field<any, string> };

type ValueOf<F> = F extends Field<infer T, string> ? T : never;
type KeyOf<K, F> = F extends Field<unknown, infer S> ? `${K & string}${S}` : never;
type HasDefault<F> = F extends { readonly default: unknown } ? true : false;

/** The resolved shape of a table: keys with their suffix, defaulted fields required, the others optional. */
export type Resolved<F extends Fields> = {
  -readonly [K in keyof F as HasDefault<F[K]> extends true ? KeyOf<K, F[K]> : never]: ValueOf<F[K]>;
} & {
  -readonly [K in keyof F as HasDefault<F[K]> extends true ? never : KeyOf<K, F[K]>]?: ValueOf<F[K]>;
};

type Made<T, S extends string, D> = [D] extends [undefined] ? Field<T, S> : Defaulted<T, S>;

function make<T, S extends string, D extends T | undefined>(schema: SchemaObject, read: (raw: unknown) => T | undefined, suffix: S, fallback: D): Made<T, S, D> {
  // Frozen, since every resolved config starts from it (defaultsOf and resolveFields hand out copies).
  const field: Field<T, S> = fallback === undefined ? { schema, read, suffix } : { schema, read, suffix, default: deepFreeze(fallback) };
  return field as Made<T, S, D>;
}

interface WithDefault<D> {
  default?: D;
}

export function mapping(properties: Record<string, SchemaObject>, required: readonly string[] = []): SchemaObject {
  return { type: 'object', additionalProperties: false, properties, ...(required.length > 0 ? { required: [...required] } : {}) };
}

export function schemasOf(fields: Fields): Record<string, SchemaObject> {
  return Object.fromEntries(Object.entries(fields).map(([key, field]) => [key, field.schema]));
}

const TEXT_SCHEMA: SchemaObject = { type: 'string', minLength: 1 };

/** A non-empty string. */
export const text = <D extends string | undefined = undefined>(opts: WithDefault<D> = {}) => make(TEXT_SCHEMA, asString, '', opts.default as D);

/** Any string, the empty one included (tokens, where "" means "none"). */
export const anyString = () => make({ type: 'string' }, (v) => (typeof v === 'string' ? v : undefined), '', undefined);

/** A string matching `pattern`; `reason` says what the pattern means when it does not match. */
export const patterned = <D extends string | undefined = undefined>(pattern: string, reason: string, opts: WithDefault<D> = {}) => {
  const re = new RegExp(pattern);
  return make({ type: 'string', pattern, 'x-reasons': { pattern: reason } }, (v) => (typeof v === 'string' && re.test(v) ? v : undefined), '', opts.default as D);
};

export const int = <D extends number | undefined = undefined>(opts: { min: number; max?: number } & WithDefault<D>) => {
  const schema: SchemaObject = opts.max === undefined ? { type: 'integer', minimum: opts.min } : { type: 'integer', minimum: opts.min, maximum: opts.max };
  return make(schema, (v) => asInt(v, opts.min, opts.max), '', opts.default as D);
};

export const port = <D extends number | undefined = undefined>(opts: WithDefault<D> = {}) => int({ min: 0, max: 65535, ...opts });

export const percent = <D extends number | undefined = undefined>(opts: WithDefault<D> = {}) =>
  make({ type: 'number', minimum: 0, maximum: 100 }, (v) => (typeof v === 'number' && v >= 0 && v <= 100 ? v : undefined), '', opts.default as D);

export const bool = <D extends boolean | undefined = undefined>(opts: WithDefault<D> = {}) => make({ type: 'boolean' }, asBool, '', opts.default as D);

/** Durations resolve to whole milliseconds under `<key>Ms`; the `duration` keyword words the error. */
export const duration = <D extends number | undefined = undefined>(opts: { min?: number; max?: number } & WithDefault<D> = {}) => {
  const { default: fallback, ...bounds } = opts;
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  const read = (v: unknown): number | undefined => {
    const ms = parseDuration(v);
    return ms !== undefined && ms >= min && ms <= max ? ms : undefined;
  };
  return make({ duration: bounds }, read, 'Ms', fallback as D);
};

/** Sizes resolve to bytes; the `size` keyword words the error. */
export const size = <D extends number | undefined = undefined>(opts: WithDefault<D> = {}) => make({ size: true }, parseSize, '', opts.default as D);

export const oneOf = <V extends string, D extends V | undefined = undefined>(values: readonly V[], opts: WithDefault<D> = {}) =>
  make({ enum: [...values] }, (v) => values.find((value) => value === v), '', opts.default as D);

/** A list of non-empty strings. */
export const textList = <D extends readonly string[] | undefined = undefined>(opts: WithDefault<D> = {}) =>
  make<readonly string[], '', D>({ type: 'array', items: TEXT_SCHEMA }, asStringList, '', opts.default as D);

/** A field whose schema and reader do not fit the kinds above; both are still given here, side by side. */
export const custom = <T, D extends T | undefined = undefined>(schema: SchemaObject, read: (raw: unknown) => T | undefined, opts: WithDefault<D> = {}) =>
  make<T, '', D>(schema, read, '', opts.default as D);

export function group<F extends Fields>(fields: F, required: readonly (keyof F & string)[] = []): Group<F> {
  const fallback = defaultsOf(fields);
  return { schema: mapping(schemasOf(fields), required), read: (raw) => resolveFields(fields, raw, fallback), default: fallback, suffix: '', fields };
}

function isGroup(field: Field): field is Group {
  return 'fields' in field;
}

/** Defaults and inherited values are copied, so no resolved config shares a list with another (or with the frozen DEFAULTS). */
function fresh<T>(value: T): T {
  return value !== null && typeof value === 'object' ? structuredClone(value) : value;
}

/** The defaults of a table, under their resolved keys (fields without one are absent). */
export function defaultsOf<F extends Fields>(fields: F): Resolved<F> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(fields)) {
    if (field.default !== undefined) out[key + field.suffix] = fresh(field.default);
  }
  return out as Resolved<F>;
}

/**
 * Resolves a raw mapping against a table: each valid raw value, else the value inherited from `base`
 * (a route inherits from `defaults:`), which itself defaults to the table's defaults.
 */
export function resolveFields<F extends Fields>(fields: F, raw: unknown, base: Resolved<F> = defaultsOf(fields)): Resolved<F> {
  const source = asObj(raw);
  const inherited = base as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(fields)) {
    const resolvedKey = key + field.suffix;
    const value = isGroup(field)
      ? resolveFields(field.fields, source[key], inherited[resolvedKey] as Resolved<Fields>)
      : field.read(source[key]) ?? fresh(inherited[resolvedKey]);
    if (value !== undefined) out[resolvedKey] = value;
  }
  return out as Resolved<F>;
}

/** Resolved key -> YAML key for every suffixed field of the tables (`timeoutMs` -> `timeout`), nested groups included. */
export function yamlKeysOf(tables: readonly Fields[]): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (fields: Fields): void => {
    for (const [key, field] of Object.entries(fields)) {
      if (field.suffix !== '') out.set(key + field.suffix, key);
      if (isGroup(field)) visit(field.fields);
    }
  };
  tables.forEach(visit);
  return out;
}
