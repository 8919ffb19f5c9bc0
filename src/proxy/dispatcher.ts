import { Agent, type Dispatcher } from 'undici';

/** Response headers larger than this are refused with UPSTREAM_INVALID_RESPONSE. */
export const MAX_RESPONSE_HEADER_BYTES = 64 * 1024;

/**
 * The undici dispatchers attempts go through: one Agent per distinct connect timeout, so each
 * route's connectTimeout is honoured while connections stay pooled per origin.
 */
export class AttemptDispatcher {
  private readonly agents = new Map<number, Agent>();

  constructor(private readonly defaultConnectTimeoutMs: number, private readonly tls: { rejectUnauthorized: boolean } = { rejectUnauthorized: true }) {}

  /** The Agent for one connect timeout (also used by the WebSocket path, with the default). */
  agentFor(connectTimeoutMs: number = this.defaultConnectTimeoutMs): Agent {
    let agent = this.agents.get(connectTimeoutMs);
    if (!agent) {
      agent = new Agent({ connect: { timeout: connectTimeoutMs, ...this.tls }, pipelining: 1, connections: 256, maxHeaderSize: MAX_RESPONSE_HEADER_BYTES });
      this.agents.set(connectTimeoutMs, agent);
    }
    return agent;
  }

  dispatch(connectTimeoutMs: number, options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.agentFor(connectTimeoutMs).dispatch(options, handler);
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
