/**
 * Where a value sits in the YAML text: data paths, their printed form, and the LINE:COL of the node
 * a path came from.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/** One step of a data path: a mapping key or a list index. */
export type Segment = string | number;

export interface Position {
  line: number;
  col: number;
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** `routes[0].match.pathPrefix`; keys that are not plain words are quoted: `services["a b"]`. */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(root)' : out;
}

type Pair = { key: unknown; value: unknown };

/** Maps a data path to the YAML node it came from, falling back to the closest ancestor. */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** `key` points at the mapping key (for unknown keys); `value` at the value. */
  locate(path: readonly Segment[], target: 'key' | 'value' = 'value'): Position {
    let node: unknown = this.doc.contents;
    let best = this.pos(node) ?? { line: 1, col: 1 };
    for (let i = 0; i < path.length; i++) {
      node = this.deref(node);
      const seg = path[i] as Segment;
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = this.findPair(node, String(seg), 0);
        if (pair === undefined) return best;
        const keyPos = this.pos(pair.key);
        if (last && target === 'key') return keyPos ?? best;
        const valuePos = this.pos(pair.value, true);
        // `key:` with no value has an empty scalar; the key is the useful place to point.
        best = valuePos ?? keyPos ?? best;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item: unknown = node.items[seg];
        if (item === undefined) return best;
        best = this.pos(item, true) ?? best;
        node = item;
      } else {
        return best;
      }
    }
    return best;
  }

  private deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  // Follows `<<` merge keys so values pulled in from an anchor still get a position.
  private findPair(map: { items: Pair[] }, key: string, depth: number): Pair | undefined {
    // Search from the end: with a duplicated key (already a YAML error) toJS keeps the last value.
    let direct: Pair | undefined;
    for (let i = map.items.length - 1; i >= 0 && direct === undefined; i--) {
      const p = map.items[i];
      if (p !== undefined && isScalar(p.key) && String(p.key.value) === key) direct = p;
    }
    if (direct !== undefined || depth > 10) return direct;
    for (const p of map.items) {
      if (!isScalar(p.key) || p.key.value !== '<<') continue;
      const sources = isSeq(p.value) ? p.value.items : [p.value];
      for (const src of sources) {
        const target = this.deref(src);
        if (isMap(target)) {
          const found = this.findPair(target, key, depth + 1);
          if (found !== undefined) return found;
        }
      }
    }
    return undefined;
  }

  private pos(node: unknown, skipEmpty = false): Position | undefined {
    const range = (node as Node | null | undefined)?.range;
    if (range === undefined || range === null) return undefined;
    if (skipEmpty && isScalar(node) && node.value === null && node.source === '') return undefined;
    return this.lines.linePos(range[0]);
  }
}
