/** Turns ajv errors on the raw document into problems with a human reason. */
import type { ErrorObject } from 'ajv';
import { unknownKeyReason } from './did-you-mean.ts';
import type { Segment } from './positions.ts';
import type { Report } from './problems.ts';
import { isObject } from './values.ts';

/** JSON pointer -> data path; list indexes become numbers so they print as `[0]`. */
function pointerToPath(pointer: string, data: unknown): Segment[] {
  if (pointer === '') return [];
  const out: Segment[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const index = Number(key);
      out.push(index);
      cur = cur[index];
    } else {
      out.push(key);
      cur = isObject(cur) ? cur[key] : undefined;
    }
  }
  return out;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  null: 'empty',
};

function rangeReason(keyword: string, min: unknown, max: unknown): string {
  if (min !== undefined && max !== undefined) return `must be between ${String(min)} and ${String(max)}`;
  return keyword === 'minimum' ? `must be at least ${String(min)}` : `must be at most ${String(max)}`;
}

function defaultReason(err: ErrorObject, parent: Record<string, unknown>, params: Record<string, unknown>): string {
  switch (err.keyword) {
    case 'type': {
      const types = Array.isArray(params['type']) ? (params['type'] as string[]) : String(params['type']).split(',');
      return `must be ${types.map((t) => TYPE_NAMES[t] ?? t).join(' or ')}`;
    }
    case 'enum':
      return `must be one of ${[...new Set((params['allowedValues'] as unknown[]).map(String))].join(', ')}`;
    case 'minimum':
    case 'maximum':
      return rangeReason(err.keyword, parent['minimum'], parent['maximum']);
    case 'minItems':
    case 'minLength':
      return 'must not be empty';
    default:
      // Custom keywords (duration, size, ...) carry their own human message.
      return err.message ?? `is invalid (${err.keyword})`;
  }
}

export function reportSchemaError(err: ErrorObject, data: unknown, report: Report): void {
  const path = pointerToPath(err.instancePath, data);
  const parent = (err.parentSchema ?? {}) as Record<string, unknown>;
  const override = (parent['x-reasons'] as Record<string, string> | undefined)?.[err.keyword];
  const params = err.params as Record<string, unknown>;

  if (err.keyword === 'additionalProperties') {
    const key = String(params['additionalProperty']);
    const known = Object.keys((parent['properties'] as Record<string, unknown> | undefined) ?? {});
    report([...path, key], unknownKeyReason(key, known), 'key');
  } else if (err.keyword === 'required') {
    // Point at the mapping that lacks the key; the path names the missing key.
    report([...path, String(params['missingProperty'])], override ?? 'is required', 'value', path);
  } else {
    report(path, override ?? defaultReason(err, parent, params));
  }
}
