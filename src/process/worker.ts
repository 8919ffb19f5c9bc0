import cluster from 'node:cluster';
import { createLogger } from '../observability/logger.ts';
import { GatewayMetrics } from '../observability/metrics.ts';
import type { ServiceSnapshot } from '../registry/types.ts';
import { LocalTraffic } from './local-traffic.ts';
import { isToWorker, serviceKey, type ToPrimary, type ToWorker, usedServiceKeys } from './messages.ts';

/** How long a worker whose primary vanished gives its requests in flight before it exits. */
const ORPHAN_DRAIN_MS = 5_000;

/**
 * A worker process: serves the public port from the snapshots its primary sends, and nothing else.
 * Signals are the primary's to handle; a worker drains when the primary tells it to, or when the
 * primary is gone.
 */
export function runWorker(): void {
  const id = cluster.worker?.id ?? 0;
  const logger = createLogger().child({ worker: id });
  const metrics = new GatewayMetrics();
  const services = new Map<string, ServiceSnapshot>();
  const keyOf = serviceKey;
  let traffic: LocalTraffic | undefined;
  let draining = false;

  const send = (message: ToPrimary) => {
    if (process.connected) process.send!(message);
  };

  const drain = async (timeoutMs: number) => {
    if (draining) return;
    draining = true;
    logger.info({ timeoutMs }, 'worker draining');
    await traffic?.drain(timeoutMs);
    await traffic?.close();
    logger.info('worker drained');
    process.exit(0);
  };

  const handle = async (message: ToWorker) => {
    switch (message.waygate) {
      case 'init': {
        for (const update of message.services) services.set(keyOf(update.registry, update.watchKey), update.snapshot);
        try {
          traffic = new LocalTraffic(message.bootConfig, { metrics, logger, sharedStdout: true, snapshotOf: (registry, watchKey) => services.get(keyOf(registry, watchKey)) });
          traffic.apply(message.config, message.plans);
          await traffic.listen();
        } catch (error) {
          logger.error({ err: (error as Error).message }, 'worker could not start');
          send({ waygate: 'failed', error: (error as Error).message });
          process.exit(1);
        }
        logger.info({ server: traffic.publicAddress }, 'worker serving');
        send({ waygate: 'listening', address: traffic.publicAddress });
        return;
      }
      case 'service':
        services.set(keyOf(message.registry, message.watchKey), message.snapshot);
        traffic?.serviceChanged(message.registry, message.watchKey, message.snapshot);
        return;
      case 'apply': {
        const used = usedServiceKeys(message.plans);
        for (const key of services.keys()) if (!used.has(key)) services.delete(key);
        traffic?.apply(message.config, message.plans, { reopenLogs: message.reopenLogs });
        return;
      }
      case 'ask': {
        // Pools only: the primary knows the routes, and 1,000 of them per worker per dashboard tick would be IPC for nothing.
        const body = message.what === 'metrics' ? await metrics.registry.metrics() : { routes: [], pools: (await traffic?.describe())?.pools ?? [] };
        send({ waygate: 'answer', id: message.id, body });
        return;
      }
      case 'drain':
        await drain(message.timeoutMs);
    }
  };

  process.on('message', (message) => {
    // One bad message must not take the worker down: it is logged and the worker keeps its current table.
    if (isToWorker(message)) handle(message).catch((error: unknown) => logger.error({ err: (error as Error).message, message: message.waygate }, 'worker could not handle a message from the primary'));
  });
  // The primary turns signals into an orderly drain of every worker; a worker on its own would cut it short.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => undefined);
  process.on('disconnect', () => {
    logger.warn('the primary process is gone; draining');
    void drain(ORPHAN_DRAIN_MS);
  });
  send({ waygate: 'hello' });
}
