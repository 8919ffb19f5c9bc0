import type { ConsulRegisterConfig, ListenConfig } from '../../config/types.ts';
import { formatWait } from './blocking.ts';
import type { ConsulClient } from './client.ts';

/** The agent registration body for the gateway itself, with an HTTP check on its admin /health/ready. */
export function registrationBody(register: ConsulRegisterConfig, admin: ListenConfig): Record<string, unknown> {
  const checkHost = admin.host === '0.0.0.0' || admin.host === '::' ? register.address : admin.host;
  const host = checkHost.includes(':') ? `[${checkHost}]` : checkHost;
  return {
    Name: register.name,
    ID: register.id,
    Address: register.address,
    Port: register.port,
    Tags: [...register.tags],
    Meta: { 'waygate-version': '0.1.0' },
    Check: {
      CheckID: `service:${register.id}`,
      Name: 'waygate readiness',
      HTTP: `http://${host}:${admin.port}/health/ready`,
      Interval: formatWait(register.checkIntervalMs),
      Timeout: formatWait(Math.min(register.checkIntervalMs, 5_000)),
      // A gateway that died without deregistering is removed by Consul after this long.
      DeregisterCriticalServiceAfter: '10m',
    },
  };
}

/** Registers the gateway with its local agent (after it is ready) and deregisters it at drain start. */
export class SelfRegistration {
  private registered = false;

  constructor(private readonly client: ConsulClient, private readonly register: ConsulRegisterConfig, private readonly admin: ListenConfig) {}

  async registerNow(): Promise<void> {
    await this.client.put('/v1/agent/service/register', registrationBody(this.register, this.admin));
    this.registered = true;
  }

  async deregister(): Promise<void> {
    if (!this.registered) return;
    this.registered = false;
    await this.client.put(`/v1/agent/service/deregister/${encodeURIComponent(this.register.id)}`, undefined);
  }
}
