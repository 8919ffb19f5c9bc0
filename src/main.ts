import type { GatewayConfig } from './config/types.ts';
import { ConfigReloader } from './config/watch.ts';
import { Gateway } from './gateway.ts';
import { WorkerCluster } from './process/worker-cluster.ts';

/**
 * Starts a gateway for this config and wires SIGTERM/SIGINT to a graceful stop.
 * Resolves when the gateway has started; the process exits 0 once the drain completes.
 */
export async function startFromConfig(config: GatewayConfig, env: NodeJS.ProcessEnv = process.env, file?: string): Promise<Gateway> {
  // With workers this process is the primary: it keeps config, registries and admin, and the workers serve the public port.
  const workers = config.server.workers;
  const gateway = new Gateway(config, workers > 1 ? { traffic: (initial, { metrics, logger }) => new WorkerCluster(initial, { count: workers, metrics, logger }) } : {});
  if (file !== undefined) {
    const reloader = new ConfigReloader(file, env, gateway, gateway.logger);
    gateway.configFile = file;
    gateway.reloadFromFile = () => reloader.reloadNow();
    process.on('SIGHUP', () => {
      gateway.logger.info({ file }, 'SIGHUP: reloading the config');
      void reloader.reloadNow();
    });
    gateway.onShutdown(async () => reloader.stop());
    reloader.watch();
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      gateway.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    gateway.logger.info({ signal }, 'signal received');
    gateway.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        gateway.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await gateway.start();
  return gateway;
}
