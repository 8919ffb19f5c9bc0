import { destination as pinoDestination } from 'pino';
import type { AccessLogConfig } from '../config/types.ts';

/** One request as the access log records it. */
export interface AccessRecord {
  readonly requestId: string;
  readonly clientIp: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly durationMs: number;
  readonly route: string | null;
  readonly service: string | null;
  readonly instance: string | null;
  readonly attempts: number;
  readonly bytesSent: number;
}

type Destination = ReturnType<typeof pinoDestination>;

/**
 * JSON lines through pino's asynchronous destination (sonic-boom): writes are buffered and flushed
 * off the request path, so a slow disk never stalls a response. reopen() follows logrotate.
 */
export class AccessLog {
  private readonly destination: Destination;
  private readonly flusher: NodeJS.Timeout;

  constructor(config: AccessLogConfig) {
    // Lines collect up to 8 KiB before a write, so a busy gateway pays one syscall per ~40 requests, not one each.
    this.destination = pinoDestination({ dest: config.path === 'stdout' ? 1 : config.path, sync: false, mkdir: true, minLength: 8 * 1024 });
    // A quiet gateway still writes within a second.
    this.flusher = setInterval(() => this.destination.flush(), 1_000);
    this.flusher.unref();
  }

  write(record: AccessRecord): void {
    this.destination.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  }

  /** Reopens the file (after logrotate moved it); stdout needs nothing. */
  reopen(): void {
    this.destination.reopen();
  }

  /** Writes out what is buffered, then closes. */
  close(): Promise<void> {
    clearInterval(this.flusher);
    return new Promise((resolve) => {
      try {
        this.destination.flushSync();
      } catch {
        // not ready yet: end() still flushes what it can
      }
      this.destination.once('close', () => resolve());
      this.destination.end();
    });
  }
}
