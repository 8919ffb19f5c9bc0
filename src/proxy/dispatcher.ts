import { Agent, type Dispatcher } from 'undici';
import { type UpstreamTls, VERIFY_WITH_SYSTEM_ROOTS } from './upstream-tls.ts';

/** Response headers larger than this are refused with UPSTREAM_INVALID_RESPONSE. */
export const MAX_RESPONSE_HEADER_BYTES = 64 * 1024;

/**
 * The undici dispatchers attempts go through: one Agent per distinct connect timeout and TLS
 * profile, so each route's connectTimeout and each service's CA are honoured while connections
 * stay pooled per origin.
 */
export class AttemptDispatcher {
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly defaultConnectTimeoutMs: number) {}

  /** The Agent for one connect timeout and TLS profile (the WebSocket path uses the defaults). */
  agentFor(connectTimeoutMs: number = this.defaultConnectTimeoutMs, tls: UpstreamTls = VERIFY_WITH_SYSTEM_ROOTS): Agent {
    const key = `${connectTimeoutMs}|${tls.key}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const connect = { timeout: connectTimeoutMs, rejectUnauthorized: tls.rejectUnauthorized, ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.servername ? { servername: tls.servername } : {}) };
      agent = new Agent({ connect, pipelining: 1, connections: 256, maxHeaderSize: MAX_RESPONSE_HEADER_BYTES });
      this.agents.set(key, agent);
    }
    return agent;
  }

  dispatch(connectTimeoutMs: number, tls: UpstreamTls, options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.agentFor(connectTimeoutMs, tls).dispatch(options, handler);
  }

  /** For @fastify/http-proxy's WebSocket path, which only needs a dispatcher object. */
  request(options: Dispatcher.RequestOptions, callback: (error: Error | null, data: Dispatcher.ResponseData) => void): void {
    this.agentFor().request(options, callback);
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((agent) => agent.close()));
    this.agents.clear();
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.agents.values()].map((agent) => agent.destroy()));
    this.agents.clear();
  }
}
