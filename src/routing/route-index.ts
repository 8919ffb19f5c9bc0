import type { RouteConfig } from '../config/types.ts';
import { filtersMatch, findRoute, type RequestFacts, sortRoutes } from './match.ts';

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 16777619;
// 30 bits keep every hash a small integer, the cheapest kind of Map key.
const HASH_MASK = 0x3fffffff;

/**
 * Route lookup whose cost does not grow with the number of routes: answers exactly what
 * `findRoute(sortRoutes(routes), request)` answers, by probing only the prefixes that could match.
 *
 * For a path starting with '/', every prefix that matches it (prefixMatches) is one of its own
 * first-k-characters slices, and the slice of length k matches exactly when k is the whole path,
 * the slice ends with '/', or the path continues with '/'. Slices of different lengths are different
 * prefixes, so trying lengths from longest to shortest, each bucket in declaration order, gives the
 * linear scan's order. Buckets are found by a hash of the slice, so lookups never allocate.
 */
export class RouteIndex<R extends RouteConfig> {
  /** The routes in sortRoutes order; also the linear fallback for paths that do not start with '/'. */
  readonly sorted: readonly R[];
  /** byLength[k]: routes whose prefix is k characters long, by prefixHash, each list in sorted order. */
  private readonly byLength: (Map<number, R[]> | undefined)[] = [];
  /** Scratch: hashes of the current path's first k characters (find is synchronous, so one suffices). */
  private hashes = new Int32Array(64);

  constructor(routes: readonly R[]) {
    this.sorted = sortRoutes(routes);
    for (const route of this.sorted) {
      const prefix = route.match.pathPrefix;
      const byHash = (this.byLength[prefix.length] ??= new Map());
      const hash = prefixHash(prefix, prefix.length);
      const bucket = byHash.get(hash);
      if (bucket) bucket.push(route);
      else byHash.set(hash, [route]);
    }
  }

  find(request: RequestFacts): R | undefined {
    const path = request.path;
    // Normalized paths always start with '/'; for anything else ('/' and '' still match it) keep the exact old answer.
    if (path.charCodeAt(0) !== 47 /* / */) return findRoute(this.sorted, request);
    // No prefix is longer than the longest route's, so neither hashing nor probing needs to go further.
    const top = Math.min(path.length, this.byLength.length - 1);
    if (top < 0) return undefined;
    if (this.hashes.length <= top) this.hashes = new Int32Array(top + 1);
    const hashes = this.hashes;
    let state = FNV_OFFSET;
    hashes[0] = state & HASH_MASK;
    for (let k = 0; k < top; k++) {
      state = Math.imul(state ^ path.charCodeAt(k), FNV_PRIME);
      hashes[k + 1] = state & HASH_MASK;
    }
    for (let k = top; k >= 0; k--) {
      const byHash = this.byLength[k];
      if (byHash === undefined) continue;
      // Segment boundary, as in prefixMatches (k = 1 is '/', which matches every rooted path).
      if (k !== path.length && path.charCodeAt(k - 1) !== 47 && path.charCodeAt(k) !== 47) continue;
      const bucket = byHash.get(hashes[k]!);
      if (bucket === undefined) continue;
      for (const route of bucket) {
        // startsWith rules out another prefix of the same length and hash.
        if (path.startsWith(route.match.pathPrefix) && filtersMatch(route, request)) return route;
      }
    }
    return undefined;
  }
}

/** FNV-1a of text's first `end` UTF-16 units, 30 bits; must stay the same function find inlines. */
export function prefixHash(text: string, end: number): number {
  let state = FNV_OFFSET;
  for (let k = 0; k < end; k++) state = Math.imul(state ^ text.charCodeAt(k), FNV_PRIME);
  return state & HASH_MASK;
}
