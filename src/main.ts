import type { GatewayConfig } from './config/types.ts';
import { Gateway } from './gateway.ts';

/**
 * Starts a gateway for this config and wires SIGTERM/SIGINT to a graceful stop.
 * Resolves when the gateway has started; the process exits 0 once the drain completes.
 */
export async function startFromConfig(config: GatewayConfig, _env: NodeJS.ProcessEnv = process.env): Promise<Gateway> {
  const gateway = new Gateway(config);
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
