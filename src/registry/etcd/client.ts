import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher, request } from 'undici';
import type { EtcdConfig } from '../../config/types.ts';
import { prefixRangeEnd } from './parse.ts';

/** Why an etcd call failed, in the words an operator needs. */
export type EtcdFailureKind = 'unreachable' | 'timeout' | 'server-error' | 'auth' | 'bad-answer' | 'compacted' | 'reset' | 'stopped';

export class EtcdCallError extends Error {
  constructor(readonly kind: EtcdFailureKind, message: string, options?: { cause?: unknown; compactRevision?: bigint }) {
    super(message, options);
    this.name = 'EtcdCallError';
    this.compactRevision = options?.compactRevision;
  }

  readonly compactRevision: bigint | undefined;
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly modRevision: bigint;
}

export interface WatchEvent extends KeyValue {
  readonly type: 'PUT' | 'DELETE';
}

export interface WatchHandlers {
  /** The server accepted the watch (etcd is reachable and the start revision is not compacted), at its current revision. */
  readonly onCreated: (revision: bigint) => void;
  /** One batch of events, in revision order. */
  readonly onEvents: (events: readonly WatchEvent[]) => void;
}

/** A unary call that does not answer within this long counts as hanging. */
export const CALL_TIMEOUT_MS = 5_000;
/** Keys asked for per range page when reading the prefix. */
export const RANGE_PAGE = 2_000;

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64');
const unb64 = (text: unknown) => (typeof text === 'string' ? Buffer.from(text, 'base64').toString('utf8') : '');

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** etcd's JSON gateway writes int64 fields as decimal strings; absent means 0. */
function int64(value: unknown): bigint {
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  return 0n;
}

function keyValue(raw: unknown): KeyValue {
  const kv = isObject(raw) ? raw : {};
  return { key: unb64(kv.key), value: unb64(kv.value), modRevision: int64(kv.mod_revision) };
}

/** grpc status codes the gateway passes through (google.golang.org/grpc/codes). */
const GRPC_UNAUTHENTICATED = 16;
const GRPC_PERMISSION_DENIED = 7;

/**
 * A small client for etcd's v3 JSON gateway (grpc-gateway) over undici: range, a streaming watch,
 * put and leases; auth tokens, TLS, endpoint failover, timeouts, and errors classified for logs and backoff.
 */
export class EtcdClient {
  private readonly dispatcher: Agent;
  private readonly endpoints: URL[];
  private current = 0;
  private token: string | undefined;
  private authenticating: Promise<void> | undefined;

  constructor(private readonly config: EtcdConfig, readFile: (path: string) => Buffer = readFileSync) {
    this.endpoints = config.endpoints.map((endpoint) => new URL(endpoint));
    const tls = config.tls;
    this.dispatcher = new Agent({
      connections: 8,
      pipelining: 1,
      // A watch streams for as long as it lives; only our own timers may cut a call.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: {
        timeout: CALL_TIMEOUT_MS,
        keepAlive: true,
        keepAliveInitialDelay: 10_000,
        ...(tls?.ca ? { ca: readFile(tls.ca) } : {}),
        ...(tls?.cert ? { cert: readFile(tls.cert) } : {}),
        ...(tls?.key ? { key: readFile(tls.key) } : {}),
      },
    });
  }

  /** The endpoint calls go to now. */
  get endpoint(): string {
    return this.endpoints[this.current]!.origin;
  }

  /** Moves to the next endpoint (after it failed); a single endpoint stays. */
  rotate(): void {
    this.current = (this.current + 1) % this.endpoints.length;
  }

  /** Every key under `prefix`, read page by page at one revision; returns that revision. */
  async readPrefix(prefix: string, signal?: AbortSignal): Promise<{ revision: bigint; kvs: KeyValue[] }> {
    const rangeEnd = b64(prefixRangeEnd(Buffer.from(prefix)));
    const kvs: KeyValue[] = [];
    let revision = 0n;
    let from = Buffer.from(prefix);
    for (;;) {
      const body: Record<string, unknown> = { key: b64(from), range_end: rangeEnd, limit: RANGE_PAGE };
      if (revision > 0n) body.revision = revision.toString();
      const answer = await this.call('/v3/kv/range', body, CALL_TIMEOUT_MS, signal);
      if (revision === 0n) revision = int64(isObject(answer.header) ? answer.header.revision : undefined);
      const page = Array.isArray(answer.kvs) ? answer.kvs.map(keyValue) : [];
      kvs.push(...page);
      if (answer.more !== true || page.length === 0) break;
      // The next page starts just after the last key of this one.
      from = Buffer.concat([Buffer.from(page[page.length - 1]!.key), Buffer.from([0])]);
    }
    if (revision <= 0n) throw new EtcdCallError('bad-answer', 'etcd range answer has no header.revision');
    return { revision, kvs };
  }

  /**
   * Watches every key under `prefix` from `startRevision` until the stream ends; always rejects
   * (with kind 'compacted' when that revision is gone, 'stopped' when the signal aborted).
   */
  async watch(prefix: string, startRevision: bigint, handlers: WatchHandlers, signal: AbortSignal): Promise<never> {
    const body = {
      create_request: { key: b64(prefix), range_end: b64(prefixRangeEnd(Buffer.from(prefix))), start_revision: startRevision.toString() },
    };
    // etcd cancels the watch when its member loses the leader, instead of leaving it silently stale.
    const stream = await this.open('/v3/watch', body, { 'grpc-metadata-hasleader': 'true' }, signal);
    let created = false;
    const onLine = (line: string) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        throw new EtcdCallError('bad-answer', `etcd watch sent non-JSON: ${JSON.stringify(line.slice(0, 80))}`);
      }
      if (!isObject(message)) throw new EtcdCallError('bad-answer', 'etcd watch sent a non-object');
      if (message.error !== undefined) throw streamError(message.error);
      const result = isObject(message.result) ? message.result : {};
      if (result.canceled === true) {
        const compactRevision = int64(result.compact_revision);
        if (compactRevision > 0n) throw new EtcdCallError('compacted', `revision ${startRevision} was compacted (etcd keeps from ${compactRevision})`, { compactRevision });
        const reason = String(result.cancel_reason ?? 'no reason given');
        throw new EtcdCallError(/PermissionDenied|permission denied|Unauthenticated|auth token/.test(reason) ? 'auth' : 'server-error', `etcd cancelled the watch: ${reason}`);
      }
      if (result.created === true && !created) {
        created = true;
        handlers.onCreated(int64(isObject(result.header) ? result.header.revision : undefined));
      }
      if (Array.isArray(result.events) && result.events.length > 0) {
        handlers.onEvents(result.events.map((raw): WatchEvent => {
          const event = isObject(raw) ? raw : {};
          return { type: event.type === 'DELETE' ? 'DELETE' : 'PUT', ...keyValue(event.kv) };
        }));
      }
    };
    let buffered = '';
    // A character split across two chunks must not be decoded in halves.
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream.body) {
        buffered += decoder.decode(chunk as Buffer, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline !== -1) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line !== '') onLine(line);
          newline = buffered.indexOf('\n');
        }
      }
      if (buffered.trim() !== '') onLine(buffered.trim());
    } catch (error) {
      if (error instanceof EtcdCallError) {
        // A refused token (expired, or auth re-enabled) is fetched again on the next attempt.
        if (error.kind === 'auth') this.token = undefined;
        throw error;
      }
      if (signal.aborted) throw new EtcdCallError('stopped', 'stopped', { cause: error });
      throw new EtcdCallError('unreachable', `etcd watch stream from ${this.endpoint} broke: ${(error as Error).message}`, { cause: error });
    } finally {
      stream.body.destroy();
    }
    if (signal.aborted) throw new EtcdCallError('stopped', 'stopped');
    throw new EtcdCallError('unreachable', `etcd at ${this.endpoint} ended the watch stream`);
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call('/v3/kv/put', { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) }, CALL_TIMEOUT_MS);
  }

  /** Grants a lease; returns its id (decimal string) and the TTL etcd granted. */
  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const answer = await this.call('/v3/lease/grant', { TTL: ttlSeconds }, CALL_TIMEOUT_MS);
    const id = int64(answer.ID);
    if (id === 0n) throw new EtcdCallError('bad-answer', `etcd granted no lease: ${String(answer.error ?? '')}`);
    return { id: id.toString(), ttl: Number(int64(answer.TTL)) };
  }

  /** Renews a lease once; returns the TTL left, 0 when the lease no longer exists. */
  async leaseKeepAlive(id: string): Promise<number> {
    const answer = await this.call('/v3/lease/keepalive', { ID: id }, CALL_TIMEOUT_MS);
    const result = isObject(answer.result) ? answer.result : answer;
    if (answer.error !== undefined) throw streamError(answer.error);
    return Number(int64(result.TTL));
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id }, CALL_TIMEOUT_MS);
  }

  /** A cheap call that proves the current endpoint answers. */
  async probe(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.call('/v3/maintenance/status', {}, timeoutMs, signal);
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy();
  }

  // ---- transport --------------------------------------------------------------------------------

  /** One unary JSON call; re-authenticates once when the token was refused. */
  private async call(path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      await this.ensureToken(signal);
      try {
        const response = await this.send(path, body, {}, timeoutMs, signal);
        const text = await this.readBody(response, path, signal);
        return this.answer(response.statusCode, text, path);
      } catch (error) {
        if (error instanceof EtcdCallError && error.kind === 'auth' && /invalid auth token|token/i.test(error.message) && this.config.username !== undefined && attempt === 0) {
          this.token = undefined;
          continue;
        }
        throw error;
      }
    }
  }

  /** Opens a streaming call; the timer guards only the answer's headers. */
  private async open(path: string, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    await this.ensureToken(signal);
    const response = await this.send(path, body, headers, CALL_TIMEOUT_MS, signal);
    if (response.statusCode !== 200) {
      const text = await this.readBody(response, path, signal);
      this.answer(response.statusCode, text, path);
      throw new EtcdCallError('server-error', `etcd answered ${response.statusCode} for ${path}`);
    }
    return response;
  }

  private async ensureToken(signal?: AbortSignal): Promise<void> {
    const { username, password } = this.config;
    if (username === undefined || this.token !== undefined) return;
    this.authenticating ??= (async () => {
      try {
        const response = await this.send('/v3/auth/authenticate', { name: username, password: password ?? '' }, {}, CALL_TIMEOUT_MS, signal, false);
        const answer = this.answer(response.statusCode, await this.readBody(response, '/v3/auth/authenticate', signal), '/v3/auth/authenticate');
        if (typeof answer.token !== 'string' || answer.token === '') throw new EtcdCallError('auth', 'etcd authentication gave no token');
        this.token = answer.token;
      } finally {
        this.authenticating = undefined;
      }
    })();
    await this.authenticating;
  }

  private async send(path: string, body: unknown, extraHeaders: Record<string, string>, timeoutMs: number, stop?: AbortSignal, withToken = true): Promise<Dispatcher.ResponseData> {
    const url = new URL(path, this.endpoints[this.current]);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json', ...extraHeaders };
    if (withToken && this.token !== undefined) headers.authorization = this.token;
    // Our own timer rather than AbortSignal.timeout() inside AbortSignal.any(): Node 20 holds the
    // sources of any() weakly, so a timeout signal can be collected and never fire (nodejs/node#57736).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const onStop = () => controller.abort();
    if (stop?.aborted) controller.abort();
    else stop?.addEventListener('abort', onStop, { once: true });
    try {
      const response = await request(url, { method: 'POST', headers, body: JSON.stringify(body), dispatcher: this.dispatcher, signal: controller.signal });
      // From here the caller's signal alone ends the call (a watch must outlive the timer).
      clearTimeout(timer);
      return response;
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as Error).name;
      if (stop?.aborted) throw new EtcdCallError('stopped', 'stopped', { cause: error });
      if (controller.signal.aborted) throw new EtcdCallError('timeout', `no answer from etcd at ${url.origin} within ${timeoutMs} ms (${path})`, { cause: error });
      throw new EtcdCallError('unreachable', `cannot reach etcd at ${url.origin}: ${code ?? (error as Error).message}`, { cause: error });
    } finally {
      clearTimeout(timer);
      if (stop) {
        // A streaming call keeps listening to the caller's signal through `controller`.
        if (path !== '/v3/watch') stop.removeEventListener('abort', onStop);
      }
    }
  }

  private async readBody(response: Dispatcher.ResponseData, path: string, stop?: AbortSignal): Promise<string> {
    const timer = setTimeout(() => response.body.destroy(new Error('timeout')), CALL_TIMEOUT_MS);
    try {
      return await response.body.text();
    } catch (error) {
      if (stop?.aborted) throw new EtcdCallError('stopped', 'stopped', { cause: error });
      throw new EtcdCallError('unreachable', `etcd connection broke while answering ${path}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  private answer(status: number, text: string, path: string): Record<string, unknown> {
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new EtcdCallError(status >= 500 ? 'server-error' : 'bad-answer', `etcd answered ${status} with non-JSON for ${path}: ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (!isObject(parsed)) throw new EtcdCallError('bad-answer', `etcd answered a non-object for ${path}`);
    if (status === 200 && parsed.error === undefined) return parsed;
    throw unaryError(status, parsed, path);
  }
}

function unaryError(status: number, body: Record<string, unknown>, path: string): EtcdCallError {
  const code = typeof body.code === 'number' ? body.code : undefined;
  const message = String(body.message ?? body.error ?? '').slice(0, 200);
  // etcd answers a wrong password or a missing user with InvalidArgument (400): still an auth problem.
  const refused = code === GRPC_UNAUTHENTICATED || code === GRPC_PERMISSION_DENIED || status === 401 || status === 403 || /authentication failed|user name is empty|permission denied|auth token/.test(message);
  if (refused) return new EtcdCallError('auth', `etcd refused ${path}: ${message}`);
  if (/compacted/.test(message)) return new EtcdCallError('compacted', `etcd: ${message}`);
  if (status >= 500) return new EtcdCallError('server-error', `etcd answered ${status} for ${path}: ${message}`);
  return new EtcdCallError('bad-answer', `etcd answered ${status} for ${path}: ${message}`);
}

/** An error line of a streaming call: `{"error":{"grpc_code","http_code","message"}}`. */
function streamError(raw: unknown): EtcdCallError {
  const error = isObject(raw) ? raw : { message: String(raw) };
  const code = typeof error.grpc_code === 'number' ? error.grpc_code : typeof error.code === 'number' ? error.code : undefined;
  const message = String(error.message ?? '').slice(0, 200);
  if (code === GRPC_UNAUTHENTICATED || code === GRPC_PERMISSION_DENIED) return new EtcdCallError('auth', `etcd refused the watch: ${message}`);
  return new EtcdCallError('server-error', `etcd watch failed: ${message}`);
}
