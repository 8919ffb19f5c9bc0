import type { ServerResponse } from 'node:http';

/** What one `event: snapshot` carries. */
export interface DashboardSnapshot {
  readonly routes: unknown;
  readonly services: unknown;
  readonly config: unknown;
  readonly uptimeSeconds: number;
  readonly version: string;
  readonly workers: number;
}

export interface EventsHubOptions {
  /** Builds the current view (routes, services, config, ...). Called once per tick while clients are connected. */
  readonly snapshot: () => DashboardSnapshot | Promise<DashboardSnapshot>;
  /** How often the view is rebuilt and, when it changed, pushed (default 1 s). */
  readonly tickMs?: number;
  /** How often a `: ping` comment keeps idle proxies from closing the stream (default 15 s). */
  readonly heartbeatMs?: number;
}

/** What the change check compares: everything but the uptime, which changes every tick. */
function keyOf(snapshot: DashboardSnapshot): string {
  const { uptimeSeconds: _uptime, ...rest } = snapshot;
  return JSON.stringify(rest);
}

function frameOf(snapshot: DashboardSnapshot): string {
  return `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
}

/**
 * Server-sent events for the dashboard. One timer serves every connected client: it starts with
 * the first client, stops when the last one leaves, and close() ends every stream (admin shutdown).
 * uptimeSeconds is left out of the change check, or every tick would count as a change; the page
 * keeps its own clock from the value in the last snapshot.
 */
export class EventsHub {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private lastKey = '';
  private lastFrame = '';
  private sinceHeartbeatMs = 0;
  private closed = false;
  /** A tick still waiting for its snapshot (worker processes answer over IPC); the next one is skipped. */
  private ticking = false;
  private readonly tickMs: number;
  private readonly heartbeatMs: number;

  constructor(private readonly options: EventsHubOptions) {
    this.tickMs = options.tickMs ?? 1_000;
    this.heartbeatMs = options.heartbeatMs ?? 15_000;
  }

  /** Connected streams right now (tests and diagnostics). */
  get clientCount(): number {
    return this.clients.size;
  }

  /** True while the shared timer runs. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Takes over a raw response: writes the SSE head and the first snapshot, then keeps it until it closes. */
  attach(response: ServerResponse): void {
    if (this.closed) {
      response.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('shutting down');
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    response.socket?.setNoDelay(true);
    // Its own fresh frame. With other clients connected the shared change check (lastKey) is left
    // alone, so they still get any change at the next tick; the first client primes it.
    const first = !this.timer;
    void Promise.resolve(this.options.snapshot()).then((snapshot) => {
      if (first) this.lastKey = keyOf(snapshot);
      if (!response.writableEnded) response.write('retry: 2000\n\n' + frameOf(snapshot));
    }, () => {
      if (!response.writableEnded) response.write('retry: 2000\n\n');
    });
    this.clients.add(response);
    response.on('close', () => {
      this.clients.delete(response);
      if (this.clients.size === 0) this.stopTimer();
    });
    if (!this.timer) {
      this.sinceHeartbeatMs = 0;
      this.timer = setInterval(() => void this.tick(), this.tickMs);
      this.timer.unref();
    }
  }

  /** Ends every stream and the timer; later attach() calls answer 503. */
  close(): void {
    this.closed = true;
    this.stopTimer();
    for (const client of this.clients) client.end();
    this.clients.clear();
  }

  /** Rebuilds the view; returns true when it differs from the last one the tick sent. */
  private async refresh(): Promise<boolean> {
    const snapshot = await this.options.snapshot();
    const key = keyOf(snapshot);
    if (key === this.lastKey) return false;
    this.lastKey = key;
    this.lastFrame = frameOf(snapshot);
    return true;
  }

  private async tick(): Promise<void> {
    // The heartbeat keeps its own count, so a snapshot that is slow to build (workers answering over IPC) never delays it.
    this.sinceHeartbeatMs += this.tickMs;
    if (this.sinceHeartbeatMs >= this.heartbeatMs) {
      this.sinceHeartbeatMs = 0;
      for (const client of this.clients) client.write(': ping\n\n');
    }
    if (this.ticking) return;
    this.ticking = true;
    let changed = false;
    try {
      changed = await this.refresh();
    } catch {
      // A view that cannot be built this tick is skipped; the next tick tries again.
    } finally {
      this.ticking = false;
    }
    if (this.closed || !changed) return;
    for (const client of this.clients) client.write(this.lastFrame);
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
