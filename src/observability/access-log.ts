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

/** A pipe takes a write of up to this many bytes whole, never mixed with another process's (POSIX PIPE_BUF). */
const ATOMIC_PIPE_WRITE = 4096;
/** What is left of a path that would make a line too long for one atomic write. */
const SHORTENED_PATH = 512;

export interface AccessLogOptions {
  /**
   * Several processes share this stdout (workers): each line then goes out in a write of its own,
   * short enough to stay whole in a pipe, instead of 8 KiB batches that could interleave mid-line.
   */
  readonly sharedStdout?: boolean;
}

/**
 * JSON lines through pino's asynchronous destination (sonic-boom): writes are buffered and flushed
 * off the request path, so a slow disk never stalls a response. reopen() follows logrotate.
 */
export class AccessLog {
  private readonly destination: Destination;
  private readonly flusher: NodeJS.Timeout;
  private readonly lineByLine: boolean;

  constructor(config: AccessLogConfig, options: AccessLogOptions = {}) {
    this.lineByLine = config.path === 'stdout' && options.sharedStdout === true;
    // Lines collect up to 8 KiB before a write, so a busy gateway pays one syscall per ~40 requests, not one each.
    this.destination = this.lineByLine
      ? pinoDestination({ dest: 1, sync: true, minLength: 0 })
      : pinoDestination({ dest: config.path === 'stdout' ? 1 : config.path, sync: false, mkdir: true, minLength: 8 * 1024 });
    // A quiet gateway still writes within a second.
    this.flusher = setInterval(() => this.destination.flush(), 1_000);
    this.flusher.unref();
  }

  write(record: AccessRecord): void {
    let line = lineOf(record);
    // Over a shared pipe a line must fit one atomic write; the path is the one field a client can make long.
    if (this.lineByLine && Buffer.byteLength(line) > ATOMIC_PIPE_WRITE) line = lineOf({ ...record, path: `${record.path.slice(0, SHORTENED_PATH)}…` });
    this.destination.write(line);
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

function lineOf(record: AccessRecord): string {
  return `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`;
}
