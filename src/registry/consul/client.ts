import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher, request } from 'undici';
import type { ConsulConfig } from '../../config/types.ts';
import { type ConsulIndex, parseIndex } from './blocking.ts';

/** Why a Consul call failed, in the words an operator needs. */
export type ConsulFailureKind = 'unreachable' | 'timeout' | 'server-error' | 'permission-denied' | 'bad-answer' | 'client-error';

export class ConsulCallError extends Error {
  constructor(readonly kind: ConsulFailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConsulCallError';
  }
}

export interface ConsulAnswer {
  readonly status: number;
  /** X-Consul-Index, when sent, exactly (uint64). */
  readonly index: ConsulIndex | undefined;
  /** X-Consul-LastContact: ms since the answering server last heard from the leader (0 on the leader). */
  readonly lastContactMs: number | undefined;
  /** X-Consul-KnownLeader. */
  readonly knownLeader: boolean | undefined;
  readonly body: unknown;
}

/** Most connections the gateway ever holds to Consul (CONTRACT fact 20 caps a client IP at 200). */
export const MAX_CONSUL_CONNECTIONS = 32;

/** A small Consul HTTP API client: token header, TLS, timeouts, and errors classified for logs and backoff. */
export class ConsulClient {
  private readonly dispatcher: Agent;
  private readonly base: URL;

  constructor(private readonly config: ConsulConfig, readFile: (path: string) => Buffer = readFileSync) {
    this.base = new URL(config.address);
    const tls = config.tls;
    this.dispatcher = new Agent({
      connections: MAX_CONSUL_CONNECTIONS,
      pipelining: 1,
      // Blocking queries hold the socket for up to wait + wait/16; undici must not cut them first.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: {
        timeout: 5_000,
        ...(tls?.ca ? { ca: readFile(tls.ca) } : {}),
        ...(tls?.cert ? { cert: readFile(tls.cert) } : {}),
        ...(tls?.key ? { key: readFile(tls.key) } : {}),
        ...(tls?.serverName ? { servername: tls.serverName } : {}),
        rejectUnauthorized: !(tls?.insecureSkipVerify ?? false),
      },
    });
  }

  get address(): string {
    return this.base.origin;
  }

  /** GET a JSON endpoint. Resolves for 2xx answers; throws ConsulCallError otherwise. */
  async get(path: string, query: Record<string, string | number | boolean | undefined>, timeoutMs: number, signal?: AbortSignal): Promise<ConsulAnswer> {
    const url = new URL(path, this.base);
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined) continue;
      url.searchParams.set(key, value === true ? '' : String(value));
    }
    if (this.config.datacenter && !url.searchParams.has('dc')) url.searchParams.set('dc', this.config.datacenter);
    // Every read states its consistency (CONTRACT fact 26): stale keeps answering while there is no leader.
    if (this.config.consistency !== 'default') url.searchParams.set(this.config.consistency, '');
    return this.call('GET', url, undefined, timeoutMs, signal);
  }

  /** PUT to an agent endpoint with an optional JSON body. */
  async put(path: string, body: unknown, timeoutMs = 10_000): Promise<ConsulAnswer> {
    return this.call('PUT', new URL(path, this.base), body === undefined ? undefined : JSON.stringify(body), timeoutMs);
  }

  private async call(method: 'GET' | 'PUT', url: URL, body: string | undefined, timeoutMs: number, stop?: AbortSignal): Promise<ConsulAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.config.token) headers['x-consul-token'] = this.config.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    // `?passing` must go out bare; URLSearchParams writes "passing=", which Consul reads the same way.
    // Our own timer rather than AbortSignal.timeout() inside AbortSignal.any(): Node 20 holds the
    // sources of any() weakly, so a timeout signal can be collected and never fire, leaving a call hung.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const onStop = () => controller.abort();
    if (stop?.aborted) controller.abort();
    else stop?.addEventListener('abort', onStop, { once: true });
    let response: Dispatcher.ResponseData;
    let text: string;
    try {
      try {
        response = await request(url, { method, headers, body, dispatcher: this.dispatcher, signal: controller.signal });
      } catch (error) {
        const code = (error as { code?: string; name?: string }).code ?? (error as Error).name;
        if (stop?.aborted) throw new ConsulCallError('client-error', 'stopped', { cause: error });
        if (controller.signal.aborted || code === 'TimeoutError' || code === 'AbortError' || code === 'UND_ERR_ABORTED') {
          throw new ConsulCallError('timeout', `no answer from Consul within ${timeoutMs} ms (${url.pathname})`, { cause: error });
        }
        throw new ConsulCallError('unreachable', `cannot reach Consul at ${this.base.origin}: ${code ?? (error as Error).message}`, { cause: error });
      }
      try {
        text = await response.body.text();
      } catch (error) {
        if (stop?.aborted) throw new ConsulCallError('client-error', 'stopped', { cause: error });
        if (controller.signal.aborted) throw new ConsulCallError('timeout', `no answer from Consul within ${timeoutMs} ms (${url.pathname})`, { cause: error });
        throw new ConsulCallError('unreachable', `Consul connection broke while answering ${url.pathname}`, { cause: error });
      }
    } finally {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    }
    const status = response.statusCode;
    const rawIndex = response.headers['x-consul-index'];
    const index = parseIndex(typeof rawIndex === 'string' ? rawIndex : undefined);
    const rawContact = response.headers['x-consul-lastcontact'];
    const lastContactMs = typeof rawContact === 'string' && /^\d+$/.test(rawContact) ? Number(rawContact) : undefined;
    const rawLeader = response.headers['x-consul-knownleader'];
    const knownLeader = rawLeader === 'true' ? true : rawLeader === 'false' ? false : undefined;
    if (status === 403) throw new ConsulCallError('permission-denied', `permission denied by Consul ACL for ${url.pathname}: ${text.trim().slice(0, 200)}`);
    if (status >= 500) throw new ConsulCallError('server-error', `Consul answered ${status} for ${url.pathname}: ${text.trim().slice(0, 200)}`);
    if (status >= 400) throw new ConsulCallError('client-error', `Consul answered ${status} for ${url.pathname}: ${text.trim().slice(0, 200)}`);
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new ConsulCallError('bad-answer', `Consul answered non-JSON for ${url.pathname}: ${JSON.stringify(text.slice(0, 80))}`);
      }
    }
    return { status, index, lastContactMs, knownLeader, body: parsed };
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy();
  }
}
