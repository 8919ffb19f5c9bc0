import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { GatewayError, errorBody } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { EventsHub } from './events.ts';

/** What the admin endpoints read; all of it comes from the gateway's current snapshot. */
export interface AdminView {
  /** The /metrics body (with workers: every process's series, summed). */
  readonly metricsText: () => Promise<string>;
  readonly contentType: string;
  readonly logger: Logger;
  /** undefined when ready; otherwise why not (e.g. "shutting down", "registry consul not synced"). */
  readonly notReadyReason: () => string | undefined;
  readonly describeRoutes: () => Promise<unknown>;
  /** How many processes serve the public port. */
  readonly workers?: () => number;
  readonly describeConfig?: () => unknown;
  /** POST /admin/reload: re-read the config file. */
  readonly reload?: () => Promise<{ ok: true; version: number } | { ok: false; errors: readonly string[] }>;
  /** admin.token: when set, every path but the two health checks needs `Authorization: Bearer <token>`. */
  readonly token?: string | undefined;
}

/**
 * Paths an orchestrator probes without credentials, and the dashboard page itself: it embeds no
 * data (everything comes from /admin/events and /admin/routes with the token), so it can ask for one.
 */
const OPEN_PATHS = new Set(['/health/live', '/health/ready', '/']);

/**
 * EventSource cannot send an Authorization header, so this one path also takes the token as
 * `?token=`. Only here: every other path keeps to the header, so a token in a URL is never needed elsewhere.
 */
const QUERY_TOKEN_PATHS = new Set(['/admin/events']);

/** Compares digests, so neither the token's length nor its content leaks through timing. */
function tokenMatcher(token: string): (given: string) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (given) => timingSafeEqual(createHash('sha256').update(given).digest(), expected) && given.length > 0;
}

function bearerOf(header: string | undefined): string {
  return header?.startsWith('Bearer ') ? header.slice(7) : '';
}

function queryTokenOf(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return '';
  return new URLSearchParams(url.slice(at + 1)).get('token') ?? '';
}

/** The dashboard page and its Content-Security-Policy (hashes of its one inline script and style). */
interface DashboardPage {
  readonly html: string;
  readonly csp: string;
}

/** Next to this module in src/; dist/ has no copy of the HTML (tsc emits only .js), so it falls back to src/. */
function loadDashboard(): DashboardPage | undefined {
  const candidates = [new URL('./dashboard.html', import.meta.url), new URL('../../src/admin/dashboard.html', import.meta.url)];
  const file = candidates.find((candidate) => existsSync(candidate));
  if (!file) return undefined;
  const html = readFileSync(file, 'utf8');
  const hashes = (tag: string): string => [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))]
    .map((match) => `'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`).join(' ');
  const csp = [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

let dashboardPage: DashboardPage | undefined | null = null;

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The operator-facing listener: health, metrics and the live routing table; never on the public port. */
export function buildAdminServer(view: AdminView): FastifyInstance {
  const app = Fastify({ loggerInstance: view.logger.child({ component: 'admin' }, { level: 'error' }) as FastifyBaseLogger, forceCloseConnections: true });

  if (view.token !== undefined) {
    const authorized = tokenMatcher(view.token);
    app.addHook('onRequest', (request, reply, done) => {
      const path = request.url.split('?', 1)[0]!;
      if (OPEN_PATHS.has(path) || authorized(bearerOf(request.headers.authorization))) return done();
      if (QUERY_TOKEN_PATHS.has(path) && authorized(queryTokenOf(request.url))) return done();
      reply.code(401).header('www-authenticate', 'Bearer').header('content-type', 'application/json; charset=utf-8')
        .send(errorBody(new GatewayError('UNAUTHORIZED'), String(request.id)));
    });
  }

  app.get('/health/live', async () => ({ status: 'UP' }));

  app.get('/health/ready', async (_request, reply) => {
    const reason = view.notReadyReason();
    if (reason === undefined) return { status: 'UP' };
    reply.code(503);
    return { status: 'DOWN', reason };
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', view.contentType);
    return view.metricsText();
  });

  app.get('/admin/routes', async () => view.describeRoutes());

  app.get('/admin/config', async () => view.describeConfig?.() ?? {});

  const version = packageVersion();
  const hub = new EventsHub({
    snapshot: async () => {
      const { routes, services } = (await view.describeRoutes()) as { routes: unknown; services: unknown };
      return { routes, services, config: view.describeConfig?.() ?? null, uptimeSeconds: Math.floor(process.uptime()), version, workers: view.workers?.() ?? 1 };
    },
  });
  // preClose: before the listener stops, so open streams do not hold the close up.
  app.addHook('preClose', (done) => {
    hub.close();
    done();
  });

  app.get('/admin/events', (_request, reply) => {
    reply.hijack();
    hub.attach(reply.raw);
  });

  app.get('/', async (_request, reply) => {
    if (dashboardPage === null) dashboardPage = loadDashboard();
    if (!dashboardPage) {
      reply.code(404);
      return { error: { code: 'ROUTE_NOT_FOUND', message: 'dashboard.html is not installed next to the admin server', requestId: String(_request.id) } };
    }
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', dashboardPage.csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-store');
    return dashboardPage.html;
  });

  app.post('/admin/reload', async (_request, reply) => {
    const outcome = await (view.reload?.() ?? Promise.resolve({ ok: false as const, errors: ['reload is not available'] }));
    if (outcome.ok) return { version: outcome.version };
    reply.code(400);
    return { errors: outcome.errors };
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: { code: 'ROUTE_NOT_FOUND', message: `No admin endpoint at ${request.method} ${request.url}`, requestId: String(request.id) } });
  });

  return app;
}
