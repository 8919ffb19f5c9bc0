import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';

/** What the admin endpoints read; all of it comes from the gateway's current snapshot. */
export interface AdminView {
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** undefined when ready; otherwise why not (e.g. "shutting down", "registry consul not synced"). */
  readonly notReadyReason: () => string | undefined;
  readonly describeRoutes: () => unknown;
}

/** The operator-facing listener: health, metrics and the live routing table; never on the public port. */
export function buildAdminServer(view: AdminView): FastifyInstance {
  const app = Fastify({ loggerInstance: view.logger.child({ component: 'admin' }, { level: 'error' }) as FastifyBaseLogger, forceCloseConnections: true });

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

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: { code: 'ROUTE_NOT_FOUND', message: `No admin endpoint at ${request.method} ${request.url}`, requestId: String(request.id) } });
  });

  return app;
}
