import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { GatewayError, errorBody } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';

/** What the admin endpoints read; all of it comes from the gateway's current snapshot. */
export interface AdminView {
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** undefined when ready; otherwise why not (e.g. "shutting down", "registry consul not synced"). */
  readonly notReadyReason: () => string | undefined;
  readonly describeRoutes: () => unknown;
  readonly describeConfig?: () => unknown;
  /** POST /admin/reload: re-read the config file. */
  readonly reload?: () => Promise<{ ok: true; version: number } | { ok: false; errors: readonly string[] }>;
  /** admin.token: when set, every path but the two health checks needs `Authorization: Bearer <token>`. */
  readonly token?: string | undefined;
}

/** Paths an orchestrator probes without credentials. */
const OPEN_PATHS = new Set(['/health/live', '/health/ready']);

/** Compares digests, so neither the token's length nor its content leaks through timing. */
function tokenMatcher(token: string): (header: string | undefined) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (header) => {
    const given = header?.startsWith('Bearer ') ? header.slice(7) : '';
    return timingSafeEqual(createHash('sha256').update(given).digest(), expected) && given.length > 0;
  };
}

/** The operator-facing listener: health, metrics and the live routing table; never on the public port. */
export function buildAdminServer(view: AdminView): FastifyInstance {
  const app = Fastify({ loggerInstance: view.logger.child({ component: 'admin' }, { level: 'error' }) as FastifyBaseLogger, forceCloseConnections: true });

  if (view.token !== undefined) {
    const authorized = tokenMatcher(view.token);
    app.addHook('onRequest', (request, reply, done) => {
      const path = request.url.split('?', 1)[0]!;
      if (OPEN_PATHS.has(path) || authorized(request.headers.authorization)) return done();
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
    reply.header('content-type', view.metrics.registry.contentType);
    return view.metrics.registry.metrics();
  });

  app.get('/admin/routes', async () => view.describeRoutes());

  app.get('/admin/config', async () => view.describeConfig?.() ?? {});

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
