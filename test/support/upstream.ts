import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How a test upstream behaves right now. */
export type UpstreamMode = 'ok' | 'hang' | 'error500' | 'reset';

export interface TestUpstream {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Requests this upstream has received (method, url, headers, body). */
  readonly received: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }>;
  mode: UpstreamMode;
  /** Delay before answering in 'ok' and 'error500' modes, in ms (default 0). */
  delayMs: number;
  /** Abrupt death: destroys every open socket and stops listening (connects are then refused). */
  kill(): Promise<void>;
  /** Connections currently open to this upstream. */
  openSockets(): number;
  /** Listens again on the same port after kill(). */
  restore(): Promise<void>;
  close(): Promise<void>;
}

type Handler = (request: IncomingMessage, response: ServerResponse, body: string) => void;

/**
 * A real HTTP server on 127.0.0.1 that answers JSON naming itself. Modes make it hang, answer 500,
 * or reset connections before any response byte.
 */
export async function startUpstream(name: string, options: { port?: number; handler?: Handler } = {}): Promise<TestUpstream> {
  const sockets = new Set<Socket>();
  const received: TestUpstream['received'] = [];
  let server: Server;
  let port = options.port ?? 0;

  const upstream: TestUpstream = {
    name,
    url: '',
    port: 0,
    received,
    mode: 'ok',
    delayMs: 0,
    kill: async () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    openSockets: () => sockets.size,
    restore: async () => {
      await listen();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
  };

  function handle(request: IncomingMessage, response: ServerResponse): void {
    if (upstream.mode === 'reset') {
      request.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      received.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body });
      if (upstream.mode === 'hang') return;
      if (options.handler) return options.handler(request, response, body);
      const status = upstream.mode === 'error500' ? 500 : 200;
      const answer = () => {
        response.writeHead(status, { 'content-type': 'application/json', 'x-upstream': name });
        response.end(JSON.stringify({ instance: name, method: request.method, url: request.url, headers: request.headers, body }));
      };
      if (upstream.delayMs > 0) setTimeout(answer, upstream.delayMs);
      else answer();
    });
  }

  async function listen(): Promise<void> {
    server = createServer(handle);
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
    Object.assign(upstream, { port, url: `http://127.0.0.1:${port}` });
  }

  await listen();
  return upstream;
}

/** A free loopback port with nothing listening on it (connects are refused). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
