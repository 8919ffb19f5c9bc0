import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Http2SecureServer, Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../observability/logger.ts';

export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

/** Reads a certificate and its key and checks they belong together; errors name the file and the problem. */
export function loadCertificate(files: CertificateFiles, readFile: (path: string) => Buffer = (path) => readFileSync(path)): { cert: Buffer; key: Buffer } {
  const read = (what: string, path: string): Buffer => {
    try {
      return readFile(path);
    } catch (error) {
      throw new Error(`server.tls.${what}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  const cert = read('cert', files.cert);
  const key = read('key', files.key);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new Error(`server.tls: ${files.cert} and ${files.key} are not a usable certificate and key: ${(error as Error).message}`);
  }
  return { cert, key };
}

/**
 * What HTTPS on the public port needs beyond Fastify: certificate reloads without dropping
 * connections, a graceful GOAWAY for HTTP/2 sessions at shutdown, and a way to cut everything when
 * the shutdown timeout runs out (an HTTP/2 server has no closeAllConnections).
 */
export class TlsListener {
  private readonly sessions = new Set<Http2Session>();
  private readonly sockets = new Set<Socket>();
  private watching = false;

  constructor(private readonly server: Http2SecureServer, private readonly files: CertificateFiles, private readonly logger: Logger) {
    server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
    });
    server.on('secureConnection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Re-reads the files; new handshakes use them, open connections keep theirs. A bad pair keeps the old one. */
  reload(): boolean {
    try {
      this.server.setSecureContext(loadCertificate(this.files));
      this.logger.info({ cert: this.files.cert }, 'tls: certificate reloaded');
      return true;
    } catch (error) {
      this.logger.error({ err: (error as Error).message }, 'tls: certificate reload failed; keeping the previous certificate');
      return false;
    }
  }

  /** Polls the files' stat (survives the symlink swaps Kubernetes does for mounted secrets). */
  watch(intervalMs = 1_000): void {
    if (this.watching) return;
    this.watching = true;
    const onChange = (now: { mtimeMs: number }, before: { mtimeMs: number }) => {
      if (now.mtimeMs !== before.mtimeMs) this.reload();
    };
    for (const file of [this.files.cert, this.files.key]) watchFile(file, { interval: intervalMs, persistent: false }, onChange);
  }

  /** Asks HTTP/2 clients to stop opening streams here; streams under way finish. */
  goAway(): void {
    for (const session of this.sessions) if (!session.closed) session.close();
  }

  destroyAll(): void {
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  stop(): void {
    if (!this.watching) return;
    this.watching = false;
    unwatchFile(this.files.cert);
    unwatchFile(this.files.key);
  }
}
