/**
 * Resolves dot-segments and duplicate slashes in a request path (RFC 3986 §5.2.4) so that route
 * matching sees the same path the upstream will. Returns undefined when the path cannot be made
 * safe: it climbs above the root, carries an encoded slash/backslash/dot trick, or is not a path.
 */
export function normalizePath(rawPath: string): string | undefined {
  if (rawPath.length === 0 || rawPath.charCodeAt(0) !== 47 /* / */) return undefined;
  // Fast path: nothing to resolve in the common case.
  if (!/%|\/\.|\/\/|\\|\.\./.test(rawPath)) return rawPath;
  if (rawPath.includes('\\')) return undefined;
  // Encoded dots or slashes could be decoded by the upstream into traversal; decode dots to resolve
  // them here, and refuse encoded slashes/backslashes outright.
  if (/%2f|%5c/i.test(rawPath)) return undefined;
  let path = rawPath;
  if (/%2e/i.test(path)) path = path.replace(/%2e/gi, '.');
  const segments = path.split('/');
  const out: string[] = [];
  // Resolve dot-segments first, with empty segments kept as segments (RFC 3986 §5.2.4: "/x//../a" is
  // "/x/a"), and collapse duplicate slashes only afterwards, so collapsing can never change what ".." removes.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === '.') {
      if (last) out.push('');
      continue;
    }
    if (segment === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (last) out.push('');
      continue;
    }
    // A segment like "..x" or "x.." is legal, but the proxy library refuses any "/.." or "../"; say so clearly.
    if (segment.startsWith('..') || segment.endsWith('..')) return undefined;
    out.push(segment);
  }
  const kept = out.filter((segment, i) => segment !== '' || i === out.length - 1);
  return '/' + kept.join('/');
}

/** True when `prefix` matches `path` at a segment boundary (`/a` matches `/a` and `/a/b`, never `/ab`). */
export function prefixMatches(path: string, prefix: string): boolean {
  if (prefix === '/' ) return true;
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length) return true;
  return prefix.endsWith('/') || path.charCodeAt(prefix.length) === 47;
}

/** Removes a matched prefix, keeping the result a rooted path (`/hello/x` - `/hello` = `/x`). */
export function stripPathPrefix(path: string, prefix: string): string {
  if (prefix === '/') return path;
  const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const rest = path.slice(base.length);
  return rest.length === 0 ? '/' : rest;
}
