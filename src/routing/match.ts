import type { RouteConfig } from '../config/types.ts';
import { prefixMatches } from './path.ts';

/** The parts of a request that route conditions look at. */
export interface RequestFacts {
  /** Normalized path, without query. */
  readonly path: string;
  /** Host header, lower-cased, without port. */
  readonly host: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** Orders routes so the first match is the right one: longest prefix first, then declaration order. */
export function sortRoutes<R extends RouteConfig>(routes: readonly R[]): R[] {
  return routes
    .map((route, index) => ({ route, index }))
    .sort((a, b) => b.route.match.pathPrefix.length - a.route.match.pathPrefix.length || a.index - b.index)
    .map(({ route }) => route);
}

/** True when every condition of the route holds for the request. */
export function routeMatches(route: RouteConfig, request: RequestFacts): boolean {
  return prefixMatches(request.path, route.match.pathPrefix) && filtersMatch(route, request);
}

/** The host, method and header conditions of a route; the path prefix is checked by the caller. */
export function filtersMatch(route: RouteConfig, request: RequestFacts): boolean {
  const { match } = route;
  if (match.host !== undefined && match.host !== request.host) return false;
  if (match.methods !== undefined && !match.methods.includes(request.method)) return false;
  if (match.headers !== undefined) {
    for (const name in match.headers) {
      const actual = request.headers[name];
      const wanted = match.headers[name];
      if (Array.isArray(actual) ? !actual.includes(wanted!) : actual !== wanted) return false;
    }
  }
  return true;
}

/** First matching route of a list already ordered by sortRoutes. */
export function findRoute<R extends RouteConfig>(sorted: readonly R[], request: RequestFacts): R | undefined {
  for (const route of sorted) {
    if (routeMatches(route, request)) return route;
  }
  return undefined;
}

/** Host header without port, lower-cased; handles IPv6 literals like [::1]:8080. */
export function hostWithoutPort(hostHeader: string | undefined): string {
  if (!hostHeader) return '';
  const host = hostHeader.toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
