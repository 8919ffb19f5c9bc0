import { Agent, type Dispatcher } from 'undici';

/**
 * The undici dispatcher reply-from sends through. One Agent per distinct connect timeout, so each
 * route's connectTimeout is honoured while connections stay pooled per origin.
 */
export class AttemptDispatcher {
  private readonly agents = new Map<number, Agent>();
  /** Connect timeout of the next request; set right before reply.from(), which calls request() in the same tick. */
  next: number | undefined;

  constructor(private readonly defaultConnectTimeoutMs: number, private readonly tls: { rejectUnauthorized: boolean } = { rejectUnauthorized: true }) {}

  private agentFor(connectTimeoutMs: number): Agent {
    let agent = this.agents.get(connectTimeoutMs);
    if (!agent) {
      agent = new Agent({ connect: { timeout: connectTimeoutMs, ...this.tls }, pipelining: 1, connections: 256 });
      this.agents.set(connectTimeoutMs, agent);
    }
    return agent;
  }

  request(options: Dispatcher.RequestOptions, callback: (error: Error | null, data: Dispatcher.ResponseData) => void): void {
    const connectTimeoutMs = this.next ?? this.defaultConnectTimeoutMs;
    this.next = undefined;
    this.agentFor(connectTimeoutMs).request(options, callback);
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
